"""lf.Model, the frozen inference model, in fp32, bf16 and int8: against the reference of its precision
(lstm_fast.reference.forward(..., precision=...)), against lf.LSTM, step against sequence, files,
instruction sets and threads, and bad input."""

import itertools
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from conftest import cpu_flags, no_dot_instructions, num_threads, reference_forward

import lstm_fast as lf

PRECISIONS = ("fp32", "bf16", "int8")

# The contract against the reference of the same precision (float64 arithmetic on the same rounded or
# quantized operands): the float32 kernels differ by float32 rounding (1e-5), except where an operand
# lies within that rounding of a bf16 or int8 rounding boundary and rounds the other way: then by one
# step of that operand through its weights (measured up to 3.4e-4 here), in that row from that step on.
# So: 90% of the outputs within 1e-5, and all within FLIP.
CONTRACT = 1e-5
FLIP = 2e-3

CONFIGS = [
    dict(num_layers=layers, bidirectional=bidir, proj_size=proj, peephole=peep, bias=bias)
    for layers, bidir, proj, peep, bias in itertools.product(
        (1, 2), (False, True), (0, 5), (False, True), (True, False)
    )
]


def _name(c):
    return "-".join(f"{k}={int(v)}" for k, v in c.items())


def _reference(lstm, x, precision, state=None, lengths=None):
    y, (h, c), _ = reference_forward(lstm, x, state, lengths, precision="fp64" if precision == "fp32" else precision)
    return y, h, c


@pytest.mark.parametrize("config", CONFIGS, ids=_name)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_model_matches_the_reference_of_its_precision(rng, config, precision):
    lstm = lf.LSTM(6, 16, seed=7, **config)
    T, B = 7, 3
    x = rng.normal(size=(T, B, 6)).astype(np.float32)
    state = tuple(s + rng.normal(size=s.shape).astype(np.float32) * 0.5 for s in lstm.initial_state(B))
    lengths = [7, 2, 5]
    model = lstm.freeze(precision)
    y, (h, c) = model(x, state, lengths)
    y_ref, h_ref, c_ref = _reference(lstm, x, precision, state, lengths)
    for got, want in ((y, y_ref), (h, h_ref), (c, c_ref)):
        assert got.dtype == np.float32
        _assert_within_contract(got, want, precision)


def _assert_within_contract(got, want, precision):
    if precision == "fp32":
        np.testing.assert_allclose(got, want, rtol=0, atol=CONTRACT)
    else:
        error = np.abs(got - want)
        assert (error <= CONTRACT).mean() >= 0.9 and error.max() <= FLIP, error.max()


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("threads", (1, 2))
@pytest.mark.parametrize("batch", (1, 3, 6, 20))
@pytest.mark.parametrize("hidden", (16, 75, 160))
def test_every_tile_and_split_matches_the_reference(rng, precision, threads, batch, hidden):
    # 1, 5 (the last partial) and 10 blocks of 16 units a gate, 1 to 20 rows, some of them ending early:
    # the products run every tile (1-4 rows x 1-4 blocks, one row x 8 blocks), alone, split by units
    # and split by rows; and the B = 1 step.
    lstm = lf.LSTM(24, hidden, seed=hidden)
    x = rng.normal(size=(6, batch, 24)).astype(np.float32)
    lengths = [6] + [int(n) for n in rng.integers(1, 7, size=batch - 1)]
    with num_threads(threads):
        _assert_sequence_and_steps_within_contract(lstm, x, lengths, precision, steps=batch == 1)


def _assert_sequence_and_steps_within_contract(lstm, x, lengths, precision, steps):
    """lstm's frozen model on x (T, B, I) with lengths against the reference of its precision; with
    `steps`, also its step through x (the whole batch, no lengths)."""
    model = lstm.freeze(precision)
    y, (h, c) = model(x, lengths=lengths)
    y_ref, h_ref, c_ref = _reference(lstm, x, precision, lengths=lengths)
    for got, want in ((y, y_ref), (h, h_ref), (c, c_ref)):
        _assert_within_contract(got, want, precision)
    if steps:
        y_ref = _reference(lstm, x, precision)[0]
        state = model.initial_state(x.shape[1])
        for t in range(x.shape[0]):
            y_t, state = model.step(x[t], state)
            _assert_within_contract(y_t, y_ref[t], precision)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("threads", (1, 2))
@pytest.mark.parametrize("hidden, proj_size", [(16, 0), (256, 0), (256, 20)])
def test_big_batches_in_row_groups_match_the_reference(rng, precision, threads, hidden, proj_size):
    # 200 rows, steps ending at every count down to 1: a big step goes in groups of rows (plan.hpp's
    # kFrozenRowGroup), the last one partial, split by units (H 256: weights past the row split's
    # bound in fp32 and bf16; and with a projection) and by rows (H 16, int8), alone or in a team; and
    # the step of 200 rows.
    lstm = lf.LSTM(24, hidden, seed=hidden, proj_size=proj_size)
    x = rng.normal(size=(4, 200, 24)).astype(np.float32)
    lengths = [4] * 130 + [3] * 30 + [2] * 25 + [1] * 15
    with num_threads(threads):  # (the step: the frozen kernels in fp32 too; fp32 sequences run lf.LSTM's)
        _assert_sequence_and_steps_within_contract(lstm, x, lengths, precision, steps=True)


@pytest.mark.parametrize("precision", ("bf16", "int8"))
def test_reduced_precision_differs_from_fp32_by_its_rounding(rng, precision):
    # The test above could pass with fp32 kernels run in place of the reduced ones: these must differ.
    lstm = lf.LSTM(32, 64, seed=1)
    x = rng.normal(size=(20, 4, 32)).astype(np.float32)
    error = np.abs(lstm.freeze(precision)(x)[0] - lstm(x)[0]).max()
    assert 1e-4 < error < 2e-2


@pytest.mark.parametrize("config", CONFIGS[::3], ids=_name)
def test_fp32_model_equals_the_lstm(rng, config):
    lstm = lf.LSTM(6, 16, seed=2, batch_first=True, dtype=np.float64, **config)
    x = rng.normal(size=(3, 7, 6))
    y, (h, c) = lstm.freeze()(x, lengths=[7, 4, 1])
    y64, (h64, c64) = lstm(x, lengths=[7, 4, 1])
    for got, want in ((y, y64), (h, h64), (c, c64)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # unbatched (T, I), the batch_first model reading (T, I) as torch does
    np.testing.assert_allclose(lstm.freeze()(x[0])[0], lstm(x[0])[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("config", [dict(), dict(num_layers=3, proj_size=4, peephole=True)], ids=_name)
def test_step_equals_the_sequence(rng, precision, config):
    model = lf.LSTM(5, 24, seed=4, **config).freeze(precision)
    x = rng.normal(size=(12, 3, 5)).astype(np.float32)
    y, (h, c) = model(x)
    state, steps = None, []
    for x_t in x:
        y_t, state = model.step(x_t, state)
        steps.append(y_t)
    if precision == "fp32":  # step reads the weights as matrix-vector products: the same to rounding
        np.testing.assert_allclose(np.stack(steps), y, rtol=1e-6, atol=1e-6)
    else:  # the same kernels on the same rows: bit for bit
        np.testing.assert_array_equal(np.stack(steps), y)
        np.testing.assert_array_equal(state[0], h)
        np.testing.assert_array_equal(state[1], c)
    y_t, (h1, c1) = model.step(x[0, 0])  # unbatched
    assert y_t.shape == (model.output_size,) and h1.shape == (model.num_layers, model.output_size)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_save_and_load_round_trip_bit_for_bit(tmp_path, rng, precision):
    lstm = lf.LSTM(5, 20, num_layers=2, bidirectional=True, proj_size=6, peephole=True, seed=5)
    model = lstm.freeze(precision)
    path = tmp_path / f"{precision}.safetensors"
    model.save(path)
    again = lf.load_model(path)
    assert again.precision == precision and again.config() == model.config()
    x = rng.normal(size=(6, 2, 5)).astype(np.float32)
    np.testing.assert_array_equal(again(x)[0], model(x)[0])
    # saved again, the same bytes: nothing is lost or re-rounded
    model.save(tmp_path / "again.safetensors")
    again.save(tmp_path / "twice.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == (tmp_path / "twice.safetensors").read_bytes()
    metadata = _header(path.read_bytes())["__metadata__"]
    assert metadata["precision"] == precision and metadata["format"] == "lstm_fast/1"


def test_load_model_converts_on_load(tmp_path, rng):
    lstm = lf.LSTM(4, 12, seed=6)
    lstm.save(tmp_path / "float.safetensors")
    x = rng.normal(size=(5, 2, 4)).astype(np.float32)
    for precision in PRECISIONS:
        loaded = lf.load_model(tmp_path / "float.safetensors", precision)
        assert loaded.precision == precision
        np.testing.assert_array_equal(loaded(x)[0], lstm.freeze(precision)(x)[0])
    assert lf.load_model(tmp_path / "float.safetensors").precision == "fp32"
    lstm.freeze("int8").save(tmp_path / "int8.safetensors")
    widened = lf.load_model(tmp_path / "int8.safetensors", "fp32")  # q * s in float32
    np.testing.assert_allclose(widened(x)[0], lstm.freeze("int8")(x)[0], atol=5e-3)


_ISA_SCRIPT = """
import sys, numpy as np, lstm_fast as lf
lf.set_num_threads(int(sys.argv[2]))
model = lf.load_model(sys.argv[1])
lengths = [int(n) for n in sys.argv[3].split(",")]
x = np.random.default_rng(0).normal(size=(max(lengths), len(lengths), model.input_size)).astype(np.float32)
y, (h, c) = model(x, lengths=lengths)
sys.stdout.buffer.write(np.concatenate([y.ravel(), h.ravel(), c.ravel()]).tobytes())
"""


def _runs(path):
    """(name, environment, threads) of every instruction set this CPU runs, and AVX-512 without its
    dot-product instructions (vpdpbusd, vdpbf16ps), at one and two threads."""
    runs = [(isa, {"LSTM_FAST_ISA": isa}) for isa in lf.supported_isas()]
    if "avx512" in lf.supported_isas():
        runs.append(("avx512-no-dot", {"LSTM_FAST_ISA": "avx512", "LSTM_FAST_NO_DOT_INSTRUCTIONS": "1"}))
    return [(name, env, threads) for name, env in runs for threads in (1, 2)]


_LENGTHS = "40,3,17,40,1,22,40,8,30"


@pytest.mark.parametrize(
    ("hidden", "config", "lengths"),
    [
        (70, dict(num_layers=2, proj_size=17, peephole=True), _LENGTHS),  # two threads split units
        (70, dict(num_layers=2, peephole=True), ",".join([_LENGTHS] * 3)),  # 27 rows: split rows
        (160, dict(), "5,1"),  # one row, 10 blocks a gate: tiles of 8 blocks
        (70, dict(), ",".join([_LENGTHS] * 20)),  # 180 rows: in groups of rows
        (40, dict(peephole=True, cell_clip=0.9, coupled_gates=True), _LENGTHS),  # the variants' gates
    ],
    ids=["units", "rows", "wide", "groups", "variants"],
)
def test_int8_is_bitwise_the_same_on_every_instruction_set_and_thread_count(tmp_path, hidden, config, lengths):
    path = tmp_path / "int8.safetensors"
    lf.LSTM(33, hidden, seed=8, **config).freeze("int8").save(path)
    outputs = {}
    for name, env, threads in _runs(path):
        out = subprocess.run(
            [sys.executable, "-c", _ISA_SCRIPT, str(path), str(threads), lengths],
            env={**os.environ, **env},
            capture_output=True,
            check=True,
        )
        outputs[name, threads] = np.frombuffer(out.stdout, np.float32)
    first = next(iter(outputs.values()))
    assert len(outputs) >= 2 and first.size > 0
    for key, y in outputs.items():
        np.testing.assert_array_equal(y, first, err_msg=str(key))


def test_bf16_is_close_on_every_instruction_set(tmp_path):
    path = tmp_path / "bf16.safetensors"
    lf.LSTM(33, 70, num_layers=2, seed=8).freeze("bf16").save(path)
    outputs = [
        np.frombuffer(
            subprocess.run(
                [sys.executable, "-c", _ISA_SCRIPT, str(path), "1", _LENGTHS],
                env={**os.environ, **env},
                capture_output=True,
                check=True,
            ).stdout,
            np.float32,
        )
        for _, env, threads in _runs(path)
        if threads == 1
    ]
    for y in outputs[1:]:
        np.testing.assert_allclose(y, outputs[0], rtol=0, atol=1e-5)


def test_the_dot_instructions_are_the_cpus_and_switch_off_in_process(rng):
    # The plan hands the products vdpbf16ps and vpdpbusd where the AVX-512 build runs on a CPU with them;
    # switched off in the same process, int8 gives the same bits on the other path (its promise) and
    # bf16 stays within float rounding of it.
    from lstm_fast import _core

    avx512 = lf.isa() in ("avx512", "amx") and sys.platform == "linux"
    flags = cpu_flags()
    before = _core._dot_instructions()
    tiles = "amx" if lf.isa() == "amx" else "none"
    if avx512:
        assert before == {"bf16": "avx512_bf16" in flags, "int8": "avx512_vnni" in flags, "tiles": tiles}
    else:
        assert before == {"bf16": False, "int8": False, "tiles": "none"}
    lstm = lf.LSTM(33, 70, num_layers=2, seed=8)
    x = rng.normal(size=(9, 5, 33)).astype(np.float32)
    int8, bf16 = lstm.freeze("int8"), lstm.freeze("bf16")
    with_dot = int8(x)[0], bf16(x)[0]
    with no_dot_instructions():
        without = int8(x)[0], bf16(x)[0]
    np.testing.assert_array_equal(without[0], with_dot[0])
    np.testing.assert_allclose(without[1], with_dot[1], rtol=0, atol=1e-5)
    if avx512 and "avx512_bf16" in flags:
        assert not np.array_equal(without[1], with_dot[1])  # (another path: vdpbf16ps sums pairs)
    assert _core._dot_instructions() == before


def test_dot_peaks_are_measured_for_every_precision():
    from lstm_fast import _core

    for precision in PRECISIONS:
        assert _core.dot_peak_gops(precision, 0.01, 1) > 0
    with pytest.raises(ValueError, match="precision"):
        _core.dot_peak_gops("fp16", 0.01, 1)
    with pytest.raises(ValueError, match="seconds"):
        _core.dot_peak_gops("int8", 0.0, 1)


def test_model_attributes_and_immutability():
    model = lf.LSTM(3, 8, num_layers=2, bidirectional=True, proj_size=2, batch_first=True).freeze("int8")
    assert (model.precision, model.input_size, model.hidden_size, model.output_size) == ("int8", 3, 8, 2)
    assert model.config()["batch_first"] is True and model.num_directions == 2
    assert "precision='int8'" in repr(model)
    with pytest.raises(AttributeError):
        model.hidden_size = 4
    h, c = model.initial_state(5)
    assert h.shape == (4, 5, 2) and c.shape == (4, 5, 8) and h.dtype == np.float32


@pytest.mark.parametrize("precision", ["fp16", "INT8", "", None, 8])
def test_a_bad_precision_is_refused(precision, tmp_path):
    lstm = lf.LSTM(2, 3)
    with pytest.raises(ValueError, match="precision"):
        lstm.freeze(precision)
    lstm.save(tmp_path / "m.safetensors")
    if precision is not None:
        with pytest.raises(ValueError, match="precision"):
            lf.load_model(tmp_path / "m.safetensors", precision)


def test_model_refuses_bad_input():
    model = lf.LSTM(3, 4, bidirectional=True).freeze("int8")
    with pytest.raises(ValueError, match="x"):
        model(np.zeros((5, 2, 4)))
    with pytest.raises(ValueError, match="lengths"):
        model(np.zeros((5, 2, 3)), lengths=[6, 1])
    with pytest.raises(ValueError, match="h0"):
        model(np.zeros((5, 2, 3)), (np.zeros((2, 3, 4)), np.zeros((2, 2, 4))))
    with pytest.raises(ValueError, match="bidirectional"):
        model.step(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="x_t"):
        lf.LSTM(3, 4).freeze("bf16").step(np.zeros((1, 2)))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_nan_input_propagates(precision):
    model = lf.LSTM(20, 32, seed=0).freeze(precision)
    x = np.zeros((3, 2, 20), np.float32)
    x[1, 0, 5] = np.nan  # sequence 0, step 1
    y, _ = model(x)
    assert np.isnan(y[1:, 0]).all() and np.isfinite(y[:1]).all() and np.isfinite(y[:, 1]).all()


def test_an_infinite_input_is_nan_in_int8():
    # int8 cannot quantize a row holding an infinity (its scale would be infinite): NaN, not a silent number
    x = np.zeros((2, 1, 20), np.float32)
    x[1, 0, 7] = np.inf
    y, _ = lf.LSTM(20, 32, seed=0).freeze("int8")(x)
    assert np.isfinite(y[0]).all() and np.isnan(y[1]).all()


def test_int8_refuses_non_finite_weights_and_names_the_tensor():
    lstm = lf.LSTM(4, 8)
    state = lstm.state_dict()
    state["weight_hh_l0"][3, 2] = np.nan
    lstm.load_state_dict(state)
    with pytest.raises(ValueError, match="weight_hh_l0.*finite"):
        lstm.freeze("int8")
    assert np.isnan(lstm.freeze("bf16")(np.ones((2, 1, 4), np.float32))[0][-1]).all()  # bf16 keeps NaN


def test_lf_load_refuses_a_frozen_file_and_names_load_model(tmp_path):
    lf.LSTM(2, 3).freeze("bf16").save(tmp_path / "bf16.safetensors")
    with pytest.raises(ValueError, match="load_model"):
        lf.load(tmp_path / "bf16.safetensors")
    with pytest.raises(FileNotFoundError):
        lf.load_model(tmp_path / "missing.safetensors")


# ---- malformed quantized files ---------------------------------------------------------------------------


def _header(data: bytes) -> dict:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n])


def _rewrite(data: bytes, edit) -> bytes:
    """The file with its header edited by edit(header, buffer) -> buffer."""
    (n,) = struct.unpack("<Q", data[:8])
    header, buffer = json.loads(data[8 : 8 + n]), bytearray(data[8 + n :])
    buffer = edit(header, buffer)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + bytes(buffer)


def _set_scale(value):
    def edit(header, buffer):
        begin = header["weight_hh_l0_scale"]["data_offsets"][0]
        buffer[begin : begin + 4] = struct.pack("<f", value)
        return buffer

    return edit


def _drop(name):
    def edit(header, buffer):
        begin, end = header.pop(name)["data_offsets"]
        for entry in header.values():
            if "data_offsets" in entry and entry["data_offsets"][0] >= end:
                entry["data_offsets"] = [o - (end - begin) for o in entry["data_offsets"]]
        return buffer[:begin] + buffer[end:]

    return edit


def _meta(key, value):
    def edit(header, buffer):
        header["__metadata__"][key] = value
        return buffer

    return edit


def _dtype(name, dtype):
    def edit(header, buffer):
        header[name]["dtype"] = dtype
        return buffer

    return edit


BAD_FILES = {
    "zero scale": (_set_scale(0.0), "scales > 0"),
    "NaN scale": (_set_scale(float("nan")), "scales > 0"),
    "infinite scale": (_set_scale(float("inf")), "scales > 0"),
    "missing scale": (_drop("weight_ih_l0_scale"), "missing tensor weight_ih_l0_scale"),
    "unknown precision": (_meta("precision", "int4"), "precision"),
    "int8 file named fp32": (_meta("precision", "fp32"), "unexpected tensor"),
    "weights as U8": (_dtype("weight_hh_l0", "U8"), "U8"),
    "scale as I8": (_dtype("weight_hh_l0_scale", "I32"), "I32"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_malformed_int8_files_are_refused_with_a_message(tmp_path, case):
    edit, message = BAD_FILES[case]
    good = tmp_path / "good.safetensors"
    lf.LSTM(2, 3).freeze("int8").save(good)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(_rewrite(good.read_bytes(), edit))
    with pytest.raises(ValueError, match=message):
        lf.load_model(bad)
    with pytest.raises(ValueError):
        lf.load(bad)


def test_a_bf16_file_with_float_weights_is_refused(tmp_path):
    good = tmp_path / "good.safetensors"
    lf.LSTM(2, 3).save(good)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(_rewrite(good.read_bytes(), _meta("precision", "bf16")))
    with pytest.raises(ValueError, match="BF16"):
        lf.load_model(bad)
