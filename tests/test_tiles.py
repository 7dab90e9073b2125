"""The frozen bf16 and int8 models on the AMX tile products, run on any CPU through the tiles' emulation
(kernels/tiles.hpp's EmulatedTiles, switched on in-process by conftest.emulated_tiles): the whole path
the amx build takes on an AMX CPU (the plan's choice, the packing, the 16-row tiles and their tails, the
epilogue), with the instructions' documented semantics. int8 must give the bits of every other path; bf16
keeps its contract against the reference. On an AMX CPU tests/cpp/kernels checks the instructions
themselves against the emulation."""

import numpy as np
import pytest
from conftest import emulated_tiles, num_threads
from test_model import _assert_within_contract, _reference

import lstm_fast as lf
from lstm_fast import _core

# (I, H, B, T, config): depths not multiples of 64 bytes, H not of 16 (96, 100, 1000), rows below,
# at and past a tile (4, 17, 256), projections, both directions, two layers, peepholes, layer norm.
SHAPES = [
    (33, 100, 17, 5, {}),
    (20, 96, 4, 6, dict(proj_size=30)),
    (16, 1000, 5, 2, {}),
    (24, 32, 256, 3, {}),
    (12, 40, 18, 4, dict(num_layers=2, bidirectional=True, peephole=True)),
    (10, 48, 6, 4, dict(layer_norm=True)),
]


def _name(shape):
    I, H, B, T, config = shape
    return f"I{I}-H{H}-B{B}-T{T}" + "".join(f"-{k}" for k in config)


def _inputs(rng, shape):
    I, H, B, T, config = shape
    lstm = lf.LSTM(I, H, seed=H + B, **config)
    x = rng.normal(size=(T, B, I)).astype(np.float32)
    lengths = [T] + [int(n) for n in rng.integers(1, T + 1, size=B - 1)]
    return lstm, x, sorted(lengths, reverse=True)


def test_the_emulation_switches_on_and_off_in_process():
    before = _core._dot_instructions()
    with emulated_tiles():
        assert _core._dot_instructions()["tiles"] == "emulated"
    assert _core._dot_instructions() == before


@pytest.mark.parametrize("threads", (1, 2))
@pytest.mark.parametrize("shape", SHAPES, ids=_name)
def test_int8_on_the_tiles_is_bitwise_the_other_paths(rng, shape, threads):
    # TDPBSSD's sums are exact int32 and the epilogue is the other paths': the same bits.
    lstm, x, lengths = _inputs(rng, shape)
    model = lstm.freeze("int8")
    with num_threads(threads):
        y, (h, c) = model(x, lengths=lengths)
        with emulated_tiles():
            y_t, (h_t, c_t) = model(x, lengths=lengths)
    for got, want in ((y_t, y), (h_t, h), (c_t, c)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", SHAPES, ids=_name)
def test_bf16_on_the_tiles_keeps_the_contract(rng, shape):
    # The tile unit sums each pair in its own order: the bits differ from the AVX512_BF16 path's (which
    # shows that the tiles ran), the error against the reference stays within bf16's contract. Without
    # vdpbf16ps the widening path sums the pairs in the tiles' order, and the bits may agree.
    lstm, x, lengths = _inputs(rng, shape)
    model = lstm.freeze("bf16")
    with emulated_tiles():
        y_t, (h_t, c_t) = model(x, lengths=lengths)
    y, _ = model(x, lengths=lengths)
    assert not _core._dot_instructions()["bf16"] or not np.array_equal(y_t, y)
    y_ref, h_ref, c_ref = _reference(lstm, x, "bf16", lengths=lengths)
    for got, want in ((y_t, y_ref), (h_t, h_ref), (c_t, c_ref)):
        _assert_within_contract(got, want, "bf16")


@pytest.mark.parametrize("precision", ("int8", "bf16"))
def test_steps_and_streams_use_the_tiles_from_the_plans_rows(rng, precision):
    # A step of 17 rows runs on the tiles (bf16: other bits than the AVX-512 path's), one of 3 stays on
    # the dot instructions (the same bits): plan.hpp's kTileMinRows. Streams step as the model does.
    lstm = lf.LSTM(20, 64, num_layers=2, seed=3)
    model = lstm.freeze(precision)
    for rows, tiles in ((17, True), (3, False)):
        x = rng.normal(size=(rows, 20)).astype(np.float32)
        y, _ = model.step(x, model.initial_state(rows))
        with emulated_tiles():
            y_t, _ = model.step(x, model.initial_state(rows))
            streams = lf.Streams(model)
            ids = [streams.open() for _ in range(rows)]
            y_s = streams.step(ids, x)
        np.testing.assert_array_equal(y_s, y_t)
        if precision == "int8" or not tiles:
            np.testing.assert_array_equal(y_t, y)
        else:  # (the same bits are possible without vdpbf16ps: see the test above)
            assert not _core._dot_instructions()["bf16"] or not np.array_equal(y_t, y)
            np.testing.assert_allclose(y_t, y, rtol=0, atol=1e-5)
