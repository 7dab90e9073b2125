import contextlib
import os
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import lstm_fast as lf
from lstm_fast import _core
from lstm_fast import reference as ref

# The C++ compiler the tests that build helpers use, and cmeel-eigen's prefixes on this interpreter's path
# (where the package build finds Eigen).
CXX = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
CMEEL_PREFIXES = [Path(p) / "cmeel.prefix" for p in sys.path if (Path(p) / "cmeel.prefix").is_dir()]
EIGEN_INCLUDES = [p / "include" / "eigen3" for p in CMEEL_PREFIXES if (p / "include/eigen3/Eigen/Core").is_file()]

# Tolerances of the C++ core against the float64 reference: float64 runs the same arithmetic in a
# different order; float32 is compared relative to the size of the values.
TOLERANCE = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}


def random_case(
    rng,
    *,
    T,
    B,
    I,
    H,
    num_layers=1,
    bidirectional=False,
    proj_size=0,
    bias=True,
    peephole=False,
    with_lengths=False,
    dtype=np.float64,
    seed=0,
    **kwargs,
):
    """A model and random (x, state, lengths, dy, dstate) in time-major layout."""
    model = lf.LSTM(
        I,
        H,
        num_layers,
        bias=bias,
        bidirectional=bidirectional,
        proj_size=proj_size,
        peephole=peephole,
        dtype=dtype,
        seed=seed,
        **kwargs,
    )
    D, R = model.num_directions, model.output_size
    x = rng.normal(size=(T, B, I))
    state = (rng.normal(size=(num_layers * D, B, R)), rng.normal(size=(num_layers * D, B, H)))
    lengths = None
    if with_lengths:
        lengths = rng.integers(1, T + 1, size=B)
        lengths[rng.integers(B)] = T  # one full-length sequence: T is the padded length
    dy = rng.normal(size=(T, B, D * R))
    dstate = (rng.normal(size=state[0].shape), rng.normal(size=state[1].shape))
    return model, x, state, lengths, dy, dstate


def reference_forward(model, x, state=None, lengths=None, **kwargs):
    """reference.forward (float64) on the model's parameters and configuration: (y, (h_n, c_n), cache).
    kwargs: dropout_masks, precision."""
    return ref.forward(
        x,
        model.state_dict(),
        num_layers=model.num_layers,
        bidirectional=model.bidirectional,
        proj_size=model.proj_size,
        peephole=model.peephole,
        cell_clip=model.cell_clip,
        coupled_gates=model.coupled_gates,
        zoneout=model.zoneout,
        layer_norm=model.layer_norm,
        state=state,
        lengths=lengths,
        **kwargs,
    )


def reference_run(
    model, x, state, lengths, dy, dstate, dropout_masks=None, recurrent_masks=None, zoneout_masks=None, precision="fp64"
):
    """The oracle's outputs and gradients for the model's parameters, in float64 (recurrent_masks:
    those of a model with recurrent dropout, (L*D, B, R); zoneout_masks: a model's with zoneout, the
    pair (L*D, T, B, R), (L*D, T, B, H); precision "bf16": bf16 training's rounded operands)."""
    y, (h_n, c_n), cache = reference_forward(
        model,
        x,
        state,
        lengths,
        dropout_masks=dropout_masks,
        recurrent_masks=None if recurrent_masks is None else list(recurrent_masks),
        zoneout_masks=None if zoneout_masks is None else list(zip(*zoneout_masks)),
        precision=precision,
    )
    dx, (dh0, dc0), grads = ref.backward(dy, cache, dstate)
    return dict(y=y, h_n=h_n, c_n=c_n, dx=dx, dh0=dh0, dc0=dc0), grads


def finite_difference(loss, array, eps=1e-6):
    """Central differences of loss() w.r.t. every entry of array, which loss() reads in place."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + eps
        up = loss()
        array[index] = saved - eps
        down = loss()
        array[index] = saved
        grad[index] = (up - down) / (2 * eps)
    return grad


# Layer norm (assert_close's `scaled`): its backward divides each row by its std, so an element that is
# a small difference of large terms carries their rounding, and float32 rounding of the inputs alone
# moves the results of small random models by up to 3e-5 of their scale (measured: the float64 kernels
# on inputs and parameters perturbed by 6e-8, relative): float32 is held to 5e-5 of the array's scale.
TOLERANCE_LAYER_NORM = {np.float64: 1e-12, np.float32: 5e-5}


def assert_close(name, actual, expected, dtype, scaled=False):
    """actual within TOLERANCE of expected, element by element; `scaled` (layer norm): within
    TOLERANCE_LAYER_NORM times the array's largest magnitude (if above 1) instead."""
    tol = dict(TOLERANCE[np.dtype(dtype).type])
    if scaled:
        tol["atol"] = TOLERANCE_LAYER_NORM[np.dtype(dtype).type] * max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, err_msg=name, **tol)


@contextlib.contextmanager
def num_threads(threads):
    """lf.set_num_threads(threads) for the block, the previous count restored after."""
    before = lf.get_num_threads()
    lf.set_num_threads(threads)
    try:
        yield
    finally:
        lf.set_num_threads(before)


@contextlib.contextmanager
def no_dot_instructions():
    """The block planned without vdpbf16ps and vpdpbusd (the float and AVX2 paths of the products), on a
    CPU that has them too; the CPU's own restored after."""
    _core._allow_dot_instructions(False)
    try:
        assert _core._dot_instructions() == {"bf16": False, "int8": False, "tiles": "none"}
        yield
    finally:
        _core._allow_dot_instructions(True)


@contextlib.contextmanager
def emulated_tiles():
    """The block planned with the frozen bf16 and int8 products that would run on the AMX tiles on their
    emulation instead (kernels/tiles.hpp's EmulatedTiles), on any CPU; the CPU's own restored after."""
    _core._emulate_tiles(True)
    try:
        assert _core._dot_instructions()["tiles"] == "emulated"
        yield
    finally:
        _core._emulate_tiles(False)


@pytest.fixture
def rng(request):
    # A distinct stream per test, the same in every run (str hash() is salted per process; crc32 is not).
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(params=lf.supported_isas())
def isa(request):
    """Each instruction set this CPU runs, in turn (the previous one restored after)."""
    before = lf.isa()
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(before)


def _cpuinfo() -> dict:
    """The fields of this CPU's first block of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            block = f.read().split("\n\n")[0]
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in block.splitlines() if ":" in line)}


def cpu_model() -> str:
    """This CPU as /proc/cpuinfo names it, with its family and model numbers (which tell Intel's apart)."""
    get = _cpuinfo().get
    if get("model name") is None:
        import platform

        return platform.processor() or platform.machine()
    return f"{get('model name', '?')} (family {get('cpu family', '?')}, model {get('model', '?')})"


def cpu_flags() -> set:
    """This CPU's feature flags as /proc/cpuinfo lists them (empty where there is none)."""
    return set(_cpuinfo().get("flags", "").split())


def pytest_report_header(config):
    # Where the suite ran, so that a failure on an unfamiliar machine can be read.
    return [
        f"cpu: {cpu_model()}",
        f"lstm_fast {lf.__version__}: isa {lf.isa()}, supported {lf.supported_isas()}, {lf.get_num_threads()} threads",
    ]
