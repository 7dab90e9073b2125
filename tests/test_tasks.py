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
    x, labels, lengths = tasks.temporal_order(4, 0, min_len=12, max_len=12, t1_range=(2, 3),
                                              t2_range=(6, 8))
    assert x.shape == (12, 4, 8) and np.all(lengths == 12)
    with pytest.raises(ValueError, match="t1_range"):
        tasks.temporal_order(4, 0, t1_range=(50, 55))
    with pytest.raises(ValueError, match="max_len"):
        tasks.temporal_order(4, 0, min_len=100, max_len=90)
