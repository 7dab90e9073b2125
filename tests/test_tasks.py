import numpy as np
import pytest

from lstm_fast import tasks


def marked_steps(x):
    """(B, 2) sorted time steps whose marker is 1.0, checking there are exactly two per sequence."""
    batch, steps = np.nonzero(x[:, :, 1].T == 1.0)  # row-major, so steps come sorted per sequence
    counts = np.bincount(batch, minlength=x.shape[1])
    assert np.all(counts == 2), f"every sequence must have exactly two markers, got {counts}"
    return steps.reshape(-1, 2)


@pytest.mark.parametrize("seq_len", [10, 11, 50, 101])
def test_adding_problem_shapes_markers_and_targets(seq_len):
    batch = 2000
    x, target = tasks.adding_problem(seq_len, batch, np.random.default_rng(0))
    assert x.shape == (seq_len, batch, 2) and x.dtype == np.float32
    assert target.shape == (batch, 1) and target.dtype == np.float32
    values, markers = x[..., 0], x[..., 1]
    assert np.all((values >= -1.0) & (values <= 1.0))
    assert set(np.unique(markers)) == {0.0, 1.0}
    steps = marked_steps(x)
    second_window = seq_len // 2 - 1
    # One marker is X1 (in the first 10 steps), the other X2 (in the first T/2 - 1 steps); the
    # generator does not say which is which, so check that some assignment fits.
    assert np.all(steps[:, 0] < steps[:, 1])
    in_first_ten = steps < 10
    in_second = steps < second_window
    assert np.all((in_first_ten[:, 0] & in_second[:, 1]) | (in_first_ten[:, 1] & in_second[:, 0]))
    columns = np.arange(batch)
    x1, x2 = values[steps[:, 0], columns], values[steps[:, 1], columns]
    expected = 0.5 + (x1.astype(np.float64) + x2) / 4.0
    np.testing.assert_allclose(target[:, 0], expected, rtol=0, atol=1e-7)
    assert np.all((target >= 0.0) & (target <= 1.0))


def test_adding_problem_positions_cover_the_windows_uniformly():
    seq_len, batch = 100, 40000
    x, _ = tasks.adding_problem(seq_len, batch, np.random.default_rng(1))
    markers = x[..., 1]
    per_step = markers.sum(axis=1)
    # Nothing is marked past the second window (T/2 - 1 = 49 steps).
    assert per_step[49:].sum() == 0
    assert per_step[:49].min() > 0
    # t1 is uniform over 10 steps and t2 over the 48 steps of the window other than t1, so a step
    # s < 10 is marked 40000 * (1/10 + 9/10 * 1/48) = 4750 times on average and a step in 10..48
    # 40000/48 ~ 833 times.
    assert 4400 < per_step[:10].mean() < 5200
    assert 700 < per_step[10:49].mean() < 950


def test_adding_problem_is_reproducible_from_a_seed_and_differs_across_seeds():
    a = tasks.adding_problem(30, 8, np.random.default_rng(7))
    b = tasks.adding_problem(30, 8, 7)
    c = tasks.adding_problem(30, 8, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    rng = np.random.default_rng(7)
    first = tasks.adding_problem(30, 8, rng)
    second = tasks.adding_problem(30, 8, rng)
    assert not np.array_equal(first[0], second[0])  # a shared generator moves on


def test_adding_problem_rejects_bad_arguments():
    with pytest.raises(ValueError, match="seq_len must be an integer >= 10, got 9"):
        tasks.adding_problem(9, 4, 0)
    with pytest.raises(ValueError, match="batch_size"):
        tasks.adding_problem(20, 0, 0)
    with pytest.raises(TypeError, match="rng"):
        tasks.adding_problem(20, 4, rng="seed")


def test_adding_correct_uses_the_papers_tolerance():
    target = np.array([[0.5], [0.5], [0.5], [0.5]])
    pred = np.array([[0.5], [0.539], [0.461], [0.541]])
    np.testing.assert_array_equal(tasks.adding_correct(pred, target), [True, True, True, False])
    assert tasks.ADDING_TOLERANCE == 0.04
    with pytest.raises(ValueError, match="shape"):
        tasks.adding_correct(np.zeros(3), target)


def test_temporal_order_structure_and_labels():
    batch = 3000
    x, labels, lengths = tasks.temporal_order(batch, np.random.default_rng(0))
    symbols = tasks.TEMPORAL_ORDER_SYMBOLS
    assert x.dtype == np.float32 and x.shape == (lengths.max(), batch, len(symbols))
    assert labels.shape == lengths.shape == (batch,)
    assert lengths.min() == 100 and lengths.max() == 110  # both ends are reached with 3000 draws
    steps = np.arange(x.shape[0])[:, None]
    valid = steps < lengths[None, :]
    np.testing.assert_array_equal(x.sum(axis=-1), valid.astype(np.float32))  # one-hot, zero padding
    ids = x.argmax(axis=-1)
    name = {s: i for i, s in enumerate(symbols)}
    assert np.all(ids[0] == name["B"])
    columns = np.arange(batch)
    assert np.all(ids[lengths - 1, columns] == name["E"])
    relevant = valid & ((ids == name["X"]) | (ids == name["Y"]))
    assert np.all(relevant.sum(axis=0) == 2)
    t_steps = np.nonzero(relevant.T)[1].reshape(batch, 2)
    assert np.all((t_steps[:, 0] >= 10) & (t_steps[:, 0] <= 20))
    assert np.all((t_steps[:, 1] >= 50) & (t_steps[:, 1] <= 60))
    assert set(np.unique(t_steps[:, 0])) == set(range(10, 21))
    # Everything else inside the sequence is a distractor a..d.
    others = valid & ~relevant
    others[0] = False
    others[lengths - 1, columns] = False
    assert np.all(ids[others] <= name["d"])
    first_y = ids[t_steps[:, 0], columns] == name["Y"]
    second_y = ids[t_steps[:, 1], columns] == name["Y"]
    np.testing.assert_array_equal(labels, 2 * first_y + second_y)
    assert tasks.TEMPORAL_ORDER_CLASSES[2] == "YX"
    counts = np.bincount(labels, minlength=4)
    assert counts.min() > 600  # the four classes are equally likely (750 each)


def test_temporal_order_is_reproducible_and_checks_ranges():
    a = tasks.temporal_order(5, np.random.default_rng(3))
    b = tasks.temporal_order(5, 3)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    x, labels, lengths = tasks.temporal_order(4, 0, min_len=12, max_len=12, t1_range=(2, 3), t2_range=(6, 8))
    assert x.shape == (12, 4, 8) and np.all(lengths == 12)
    with pytest.raises(ValueError, match="t1_range"):
        tasks.temporal_order(4, 0, t1_range=(50, 55))
    with pytest.raises(ValueError, match="max_len"):
        tasks.temporal_order(4, 0, min_len=100, max_len=90)


def test_adding_problem_paper_lengths_end_markers_and_targets():
    T, batch = 100, 4000
    x, target, lengths = tasks.adding_problem_paper(T, batch, np.random.default_rng(0))
    assert x.dtype == np.float32 and x.shape == (lengths.max(), batch, 2)
    assert lengths.min() == T and lengths.max() == T + T // 10  # both ends reached
    columns = np.arange(batch)
    markers, values = x[..., 1], x[..., 0]
    steps = np.arange(x.shape[0])[:, None]
    assert np.all(x[steps >= lengths[None, :]] == 0.0)
    assert np.all((markers[0] == -1.0) | (markers[0] == 1.0))
    assert np.all(markers[lengths - 1, columns] == -1.0)
    ones = markers == 1.0
    assert np.all(ones.sum(axis=0) == 2)
    t = np.nonzero(ones.T)[1].reshape(batch, 2)
    assert np.all(t[:, 1] < T // 2 - 1) and np.all(t[:, 0] < 10)
    minus = (markers == -1.0).sum(axis=0)
    np.testing.assert_array_equal(minus, np.where(t[:, 0] == 0, 1, 2))
    # X1 on the first step is set to zero; the target is 0.5 + (X1 + X2) / 4.
    assert np.all(values[0, t[:, 0] == 0] == 0.0) and np.any(t[:, 0] == 0)
    expected = 0.5 + (values[t[:, 0], columns].astype(np.float64) + values[t[:, 1], columns]) / 4
    np.testing.assert_allclose(target[:, 0], expected, atol=1e-7)
    again = tasks.adding_problem_paper(T, batch, 0)
    for u, v in zip((x, target, lengths), again):
        np.testing.assert_array_equal(u, v)


def test_temporal_order_3_follows_experiment_6b():
    batch = 4000
    x, labels, lengths = tasks.temporal_order_3(batch, np.random.default_rng(0))
    name = {s: i for i, s in enumerate(tasks.TEMPORAL_ORDER_SYMBOLS)}
    assert x.shape == (lengths.max(), batch, 8) and lengths.min() == 100 and lengths.max() == 110
    ids = x.argmax(axis=-1)
    valid = np.arange(x.shape[0])[:, None] < lengths[None, :]
    relevant = valid & ((ids == name["X"]) | (ids == name["Y"]))
    assert np.all(relevant.sum(axis=0) == 3)
    t = np.nonzero(relevant.T)[1].reshape(batch, 3)
    for k, (lo, hi) in enumerate([(10, 20), (33, 43), (66, 76)]):
        assert set(np.unique(t[:, k])) == set(range(lo, hi + 1))
    columns = np.arange(batch)
    is_y = [ids[t[:, k], columns] == name["Y"] for k in range(3)]
    np.testing.assert_array_equal(labels, 4 * is_y[0] + 2 * is_y[1] + is_y[2])
    assert tasks.TEMPORAL_ORDER_CLASSES_3[labels[0]] == "".join("Y" if y[0] else "X" for y in is_y)
    assert np.bincount(labels, minlength=8).min() > 400  # eight equally likely classes (500 each)
    assert np.all(ids[0] == name["B"]) and np.all(ids[lengths - 1, columns] == name["E"])
    for u, v in zip(tasks.temporal_order_3(6, 5), tasks.temporal_order_3(6, np.random.default_rng(5))):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="t3_range"):
        tasks.temporal_order_3(4, 0, t3_range=(40, 50))


def test_temporal_order_correct_is_the_papers_0_3_rule():
    probs = np.array([[0.75, 0.1, 0.1, 0.05], [0.69, 0.31, 0.0, 0.0], [0.2, 0.8, 0.0, 0.0]])
    np.testing.assert_array_equal(tasks.temporal_order_correct(probs, np.array([0, 0, 0])), [True, False, False])


def test_reber_strings_follow_the_embedded_grammar():
    strings = tasks.reber_strings(2000, np.random.default_rng(0))
    assert strings == tasks.reber_strings(2000, 0)
    assert "BTBTXSETE" in strings and "BPBPVVEPE" in strings  # the shortest ones are common
    assert {s[1] for s in strings} == {"T", "P"}
    for s in strings:
        assert s[0] == "B" and s[-1] == "E" and s[1] == s[-2] and s[2] == "B" and s[-3] == "E"
        sets = tasks.reber_next_symbols(s)
        assert len(sets) == len(s) - 1
        assert all(s[t + 1] in sets[t] for t in range(len(s) - 1))
        assert sets[-2] == s[1]  # the long-lag prediction: only the remembered branch is possible
    # Known strings of the inner grammar and their possible continuations.
    assert tasks.reber_next_symbols("BTSSXXTVVE", embedded=False) == [
        "TP",
        "SX",
        "SX",
        "SX",
        "SX",
        "TV",
        "TV",
        "PV",
        "E",
    ]
    assert tasks.reber_next_symbols("BPVVE", embedded=False) == ["TP", "TV", "PV", "E"]
    assert tasks.reber_next_symbols("BPBPVVEPE") == ["TP", "B", "TP", "TV", "PV", "E", "P", "E"]
    for bad in ("BTBPVVEPE", "BTBPVSETE", "BTBPVVE", "XTBPVVETE", "BTBPVVEETE"):
        with pytest.raises(ValueError, match="Reber"):
            tasks.reber_next_symbols(bad)
    inner = tasks.reber_strings(500, 1, embedded=False)
    assert all(s[0] == "B" and s[-1] == "E" for s in inner)
    assert 0.4 < np.mean([s[1] == "T" for s in inner]) < 0.6


def test_reber_batch_encoding_and_criterion():
    strings = ["BPBPVVEPE", "BTBTSSXSETE"]
    x, targets, possible, lengths = tasks.reber_batch(strings)
    sym = {s: i for i, s in enumerate(tasks.REBER_SYMBOLS)}
    np.testing.assert_array_equal(lengths, [8, 10])
    assert x.shape == (10, 2, 7) and targets.shape == (10, 2) and possible.shape == (10, 2, 7)
    assert np.all(x[:8, 0].argmax(-1) == [sym[c] for c in strings[0][:-1]])
    assert np.all(x[8:, 0] == 0.0) and not possible[8:, 0].any()
    np.testing.assert_array_equal(targets[:10, 1], [sym[c] for c in strings[1][1:]])
    assert possible[0, 0, sym["T"]] and possible[0, 0, sym["P"]] and possible[0, 0].sum() == 2
    # Outputs that put exactly the possible symbols on top are correct; a miss at one step is not.
    outputs = np.where(possible, 1.0, 0.0) + 0.01 * np.random.default_rng(0).random(possible.shape)
    np.testing.assert_array_equal(tasks.reber_correct(outputs, possible, lengths), [True, True])
    outputs[6, 0, sym["T"]] = 5.0  # after the inner E, T is wrong: the branch was P
    np.testing.assert_array_equal(tasks.reber_correct(outputs, possible, lengths), [False, True])
    outputs[9, 0, :] = 100.0  # padding is ignored
    np.testing.assert_array_equal(tasks.reber_correct(outputs, possible, lengths), [False, True])
