"""The C++ API (cpp/include/lstm_fast/lstm_fast.hpp) against Python, built against the INSTALLED package.

One CMake configure + build of tests/cpp, which finds lstm_fast through ``python -m lstm_fast --cmakedir``
exactly as a user's project would, and builds the C++ unit tests (tests/cpp/test_model.cpp) and the
streaming example (examples/cpp) with the example's own CMakeLists.txt. Then: the unit tests pass, the
streaming program reproduces ``lstm(x)`` for saved models, Model::forward reproduces a bidirectional
model, and Model::load refuses the bad files Python's ``lf.load`` refuses, with a message.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lstm_fast as lf

ROOT = Path(__file__).resolve().parent.parent
CMAKE = shutil.which("cmake")
CXX = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")

pytestmark = pytest.mark.skipif(CMAKE is None or CXX is None, reason="needs cmake and a C++ compiler")


def _run(args, **kwargs):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    """Paths of the built test_model and stream programs."""
    build = tmp_path_factory.mktemp("cpp-build")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    configure = _run([CMAKE, "-S", ROOT / "tests" / "cpp", "-B", build, *generator,
                      "-DCMAKE_BUILD_TYPE=Release", f"-Dlstm_fast_DIR={lf.get_cmake_dir()}"])
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = _run([CMAKE, "--build", build, "--parallel", "2"])
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return {"test_model": build / "test_model", "stream": build / "examples" / "stream"}


def test_cmakedir_is_printed_and_holds_the_package_config():
    out = _run([sys.executable, "-m", "lstm_fast", "--cmakedir"])
    assert out.returncode == 0, out.stderr
    folder = Path(out.stdout.strip())
    assert folder == Path(lf.get_cmake_dir())
    assert (folder / "lstm_fastConfig.cmake").is_file()
    assert (folder / "lstm_fastTargets.cmake").is_file()


@pytest.mark.parametrize("isa", lf.supported_isas())
def test_cpp_unit_tests_pass(programs, isa):
    # Under every instruction set this CPU runs (the C++ library reads LSTM_FAST_ISA too).
    out = _run([programs["test_model"]], env={**os.environ, "LSTM_FAST_ISA": isa})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all C++ model tests passed" in out.stdout


def _frames(x: np.ndarray) -> str:
    return "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in x)


@pytest.mark.parametrize("kwargs", [
    dict(num_layers=3, proj_size=3, peephole=True, forget_bias=1.0),
    dict(num_layers=2, dtype=np.float64),
    dict(bias=False, batch_first=True),
])
@pytest.mark.parametrize("isa", lf.supported_isas())
def test_streaming_program_reproduces_python(tmp_path, rng, programs, kwargs, isa):
    model = lf.LSTM(5, 8, seed=3, **kwargs)
    path = tmp_path / "model.safetensors"
    model.save(path)
    x = rng.normal(size=(40, 5)).astype(np.float32)  # 40 frames; unbatched (T, I)
    out = _run([programs["stream"], path], input=_frames(x), env={**os.environ, "LSTM_FAST_ISA": isa})
    assert out.returncode == 0, out.stderr
    y_cpp = np.loadtxt(out.stdout.splitlines(), ndmin=2)
    y_python, _ = model(x)
    assert y_cpp.shape == y_python.shape == (40, model.output_size)
    np.testing.assert_allclose(y_cpp, y_python, rtol=1e-5, atol=1e-5)


def test_streaming_program_refuses_a_bidirectional_model(tmp_path, programs):
    path = tmp_path / "model.safetensors"
    lf.LSTM(2, 3, bidirectional=True).save(path)
    out = _run([programs["stream"], path], input="1 2\n")
    assert out.returncode == 1
    assert "bidirectional" in out.stderr


def test_cpp_forward_reproduces_a_bidirectional_model(tmp_path, rng, programs):
    model = lf.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=2, peephole=True, seed=1)
    path = tmp_path / "model.safetensors"
    model.save(path)
    T, B = 7, 3
    x = rng.normal(size=(T, B, 4)).astype(np.float32)
    out = _run([programs["test_model"], "--forward", path, T, B], input=_frames(x.reshape(T * B, 4)))
    assert out.returncode == 0, out.stderr
    y_cpp = np.loadtxt(out.stdout.splitlines()).reshape(T, B, 4)
    y_python, _ = model(x)
    np.testing.assert_allclose(y_cpp, y_python, rtol=1e-5, atol=1e-5)


# ---- bad files: each is made from a good one, and both loaders must refuse it ---------------------------


def _split(data: bytes):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def _join(header: dict, buffer: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + buffer


def _offsets_out_of_range(data):
    header, buffer = _split(data)
    header["weight_hh_l0"]["data_offsets"][1] += 10 ** 6
    return _join(header, buffer)


def _shape_against_config(data):
    header, buffer = _split(data)
    config = json.loads(header["__metadata__"]["config"])
    config["input_size"] += 1
    header["__metadata__"]["config"] = json.dumps(config)
    return _join(header, buffer)


def _overlap(data):
    header, buffer = _split(data)
    header["bias_hh_l0"]["data_offsets"] = header["bias_ih_l0"]["data_offsets"]
    return _join(header, buffer)


BAD_FILES = {
    "truncated": (lambda d: d[: len(d) - 7], "outside the data buffer"),
    "truncated header": (lambda d: d[:40], "exceeds the file"),
    "bad JSON": (lambda d: d[:8] + d[8:].replace(b'"dtype":', b'"dtype" ', 1), "expected ':'"),
    "offsets out of range": (_offsets_out_of_range, "outside the data buffer"),
    "shape against config": (_shape_against_config, "weight_ih_l0 must have shape (16, 4), got (16, 3)"),
    "overlapping tensors": (_overlap, "overlaps"),
    "not a model file": (lambda d: d.replace(b"lstm_fast/1", b"lstm_fast/9"), "not an lstm_fast model file"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_load_refuses_bad_files(tmp_path, programs, case):
    good = tmp_path / "good.safetensors"
    lf.LSTM(3, 4, num_layers=2, peephole=True).save(good)
    assert _run([programs["test_model"], "--load", good]).stdout.startswith("ok 3 4")
    corrupt, message = BAD_FILES[case]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(corrupt(good.read_bytes()))
    out = _run([programs["test_model"], "--load", bad])
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.startswith("error: model file '"), out.stdout
    assert message in out.stdout, out.stdout
    with pytest.raises(ValueError):  # Python refuses the same file
        lf.load(bad)


# ---- the hostile files of tests/fuzz/regressions (tests/test_untrusted_files.py loads them in Python) ----

REGRESSIONS = sorted((ROOT / "tests" / "fuzz" / "regressions").iterdir())


def test_cpp_loader_refuses_every_regression_file(programs):
    # One process per file: a crash, an abort or a non-Error exception fails the file that caused it.
    assert len(REGRESSIONS) >= 40
    failures = []
    for path in REGRESSIONS:
        out = _run([programs["test_model"], "--load", path])
        if out.returncode != 1 or not out.stdout.startswith("error: model file '"):
            failures.append(f"{path.name}: exit {out.returncode}, {out.stdout[:200]!r} {out.stderr[-500:]!r}")
    assert not failures, "\n".join(failures)
