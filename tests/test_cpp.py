"""The C++ tests (tests/cpp), built against the INSTALLED package, and the C++ API against Python.

One CMake configure + build of tests/cpp, which finds lstm_fast through ``python -m lstm_fast --cmakedir``
exactly as a user's project would, and builds the GoogleTest programs (test_model: the public API;
test_internal: the internals; test_kernels_<isa>: the kernels compiled once per instruction set),
model_tool and the streaming example (examples/cpp) with the example's own CMakeLists.txt. Then: the
GoogleTest programs pass (the unit tests under every instruction set the library runs on this CPU, the
kernel tests for every set the CPU has; the others are reported as skipped, with the reason, as is
everything CMake could not build, e.g. without libgtest-dev), the streaming program reproduces
``lstm(x)`` for saved models, Model::forward reproduces a bidirectional model, and Model::load
refuses the bad files Python's ``lf.load`` refuses, with a message.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import CMEEL_PREFIXES, CXX, cpu_flags, cpu_model

import lstm_fast as lf

ROOT = Path(__file__).resolve().parent.parent
CMAKE = shutil.which("cmake")
ISAS_CMAKE = ROOT / "cmake" / "isas.cmake"  # the one list of instruction sets, and their flags
# Every set the library and tests/cpp/kernels/kernels.cmake may build for, worst first.
KERNEL_ISAS = re.search(r"^set\(LSTM_FAST_ALL_ISAS ([^)]*)\)", ISAS_CMAKE.read_text(), re.M).group(1).split()
SKIP_RETURN_CODE = 77  # a test_kernels_<isa> on a CPU without <isa> (tests/cpp/kernels/isa_guard.cpp)

pytestmark = pytest.mark.skipif(CMAKE is None or CXX is None, reason="needs cmake and a C++ compiler")


def _run(args, **kwargs):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)


def _configure(build: Path, *options: str) -> dict:
    """Configures tests/cpp in `build`; returns the manifest of what it will build (cpp_tests.json)."""
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    configure = _run(
        [
            CMAKE,
            "-S",
            ROOT / "tests" / "cpp",
            "-B",
            build,
            *generator,
            "-DCMAKE_BUILD_TYPE=Release",
            f"-Dlstm_fast_DIR={lf.get_cmake_dir()}",
            f"-DCMAKE_PREFIX_PATH={';'.join(map(str, CMEEL_PREFIXES))}",
            *options,
        ]
    )
    assert configure.returncode == 0, configure.stdout + configure.stderr
    return json.loads((build / "cpp_tests.json").read_text())


@dataclass
class Build:
    folder: Path
    manifest: dict

    @property
    def kernel_isas(self) -> list[str]:
        return [isa for isa in self.manifest["kernel_isas"].split(";") if isa]

    def require_gtest(self):
        if not self.manifest["gtest"]:
            pytest.skip(self.manifest["gtest_reason"])


@pytest.fixture(scope="module")
def cpp(tmp_path_factory) -> Build:
    build = tmp_path_factory.mktemp("cpp-build")
    manifest = _configure(build)
    compiled = _run([CMAKE, "--build", build, "--parallel", "2"])
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return Build(build, manifest)


@pytest.fixture(scope="module")
def programs(cpp):
    """Paths of the built model_tool and stream programs."""
    return {"model_tool": cpp.folder / "model_tool", "stream": cpp.folder / "examples" / "stream"}


def _gtest_passed(out: subprocess.CompletedProcess) -> int:
    """The number of tests a GoogleTest program ran and passed; fails with its output unless all did."""
    text = f"exit status {out.returncode}\n{out.stdout}\n{out.stderr}"
    assert out.returncode == 0, text[-30000:]
    passed = re.search(r"^\[  PASSED  \] (\d+) tests?\.$", out.stdout, re.M)
    assert passed, text[-30000:]
    assert "[  FAILED  ]" not in out.stdout and "[  SKIPPED ]" not in out.stdout, text[-30000:]
    return int(passed.group(1))


def test_cmakedir_is_printed_and_holds_the_package_config():
    out = _run([sys.executable, "-m", "lstm_fast", "--cmakedir"])
    assert out.returncode == 0, out.stderr
    folder = Path(out.stdout.strip())
    assert folder == Path(lf.get_cmake_dir())
    assert (folder / "lstm_fastConfig.cmake").is_file()
    assert (folder / "lstm_fastTargets.cmake").is_file()


# ---- The GoogleTest programs ----------------------------------------------------------------------------

# At least as many tests as the files held when this was written: a program that lost its tests fails.
UNIT_TESTS = {"test_model": 15, "test_internal": 2}


@pytest.mark.parametrize("program", list(UNIT_TESTS))
@pytest.mark.parametrize("isa", lf.supported_isas())
def test_cpp_unit_tests_pass(cpp, program, isa):
    # Under every instruction set this CPU runs (the C++ library reads LSTM_FAST_ISA too).
    cpp.require_gtest()
    out = _run([cpp.folder / program, "--gtest_color=no"], env={**os.environ, "LSTM_FAST_ISA": isa})
    assert _gtest_passed(out) >= UNIT_TESTS[program]


@pytest.fixture(scope="module")
def kernel_runs(cpp) -> dict:
    """Every test_kernels_<isa> built, run once: isa -> its completed process."""
    return {isa: _run([cpp.folder / f"test_kernels_{isa}", "--gtest_color=no"]) for isa in cpp.kernel_isas}


@pytest.mark.parametrize("isa", KERNEL_ISAS)
def test_cpp_kernel_tests_pass(cpp, kernel_runs, isa, record_property):
    cpp.require_gtest()
    if not cpp.kernel_isas:
        pytest.skip(cpp.manifest["kernel_reason"])
    if isa not in cpp.kernel_isas:
        pytest.skip(f"no {isa} kernel tests on this platform (built for {', '.join(cpp.kernel_isas)})")
    out = kernel_runs[isa]
    if out.returncode == SKIP_RETURN_CODE:
        pytest.skip(out.stdout.strip())
    passed = _gtest_passed(out)
    assert passed >= 48, out.stdout  # the tests of every build (the dot paths' come on top where they run)
    record_property(f"kernel_tests_{isa}", passed)
    print(f"kernel tests for {isa}: {passed} passed")


def test_cpp_kernel_tests_check_the_amx_instructions_where_the_cpu_has_them(cpp, kernel_runs):
    # tests/cpp/kernels registers its AMX checks (the instructions against the emulation) only where the
    # program may run them; on a CPU with AMX they must have run, in the amx build.
    cpp.require_gtest()
    if not {"amx_tile", "amx_int8", "amx_bf16"} <= cpu_flags():
        pytest.skip(f"the AMX instructions are not checked: this CPU ({cpu_model()}) has no AMX")
    assert "amx" in cpp.kernel_isas, "the amx kernel tests were not built (the compiler lacks -mamx-tile?)"
    assert kernel_runs["amx"].returncode == 0, kernel_runs["amx"].stdout[-2000:]
    out = kernel_runs["amx"].stdout
    for test in ("AmxTiles.AgreeWithTheEmulation", "TileProducts.OnTheAmxInstructions"):
        assert f"[       OK ] {test}" in out, f"{test} did not run (the OS refused the tile state?)"


def test_cpp_kernel_tests_ran_for_every_instruction_set_the_library_runs_here(cpp, kernel_runs):
    # The sets the library dispatches to on this CPU are the sets whose kernel tests ran and passed.
    cpp.require_gtest()
    if not cpp.kernel_isas:
        pytest.skip(cpp.manifest["kernel_reason"])
    passed = {isa for isa, out in kernel_runs.items() if out.returncode == 0}
    assert passed == set(lf.supported_isas()), {isa: out.returncode for isa, out in kernel_runs.items()}


def test_cpp_kernel_tests_skip_with_the_reason_on_a_cpu_without_the_set(cpp):
    # isa_guard.cpp exits 77 with the reason before any code built for the set runs (pretended here).
    cpp.require_gtest()
    if not cpp.kernel_isas:
        pytest.skip(cpp.manifest["kernel_reason"])
    isa = cpp.kernel_isas[-1]
    out = _run([cpp.folder / f"test_kernels_{isa}"], env={**os.environ, "LSTM_FAST_TEST_CPU_LACKS": isa})
    assert out.returncode == SKIP_RETURN_CODE, out.stdout + out.stderr
    reason = f"SKIPPED: the kernel tests for {isa} need a CPU with that instruction set; this one lacks it"
    assert out.stdout.startswith(reason), out.stdout


def test_without_googletest_the_cpp_tests_are_reported_as_not_built(tmp_path):
    # The manifest test_cpp_*_pass read their skip reason from, with find_package(GTest) made to fail.
    manifest = _configure(tmp_path, "-DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON")
    assert manifest["gtest"] is False
    assert "libgtest-dev" in manifest["gtest_reason"] and "not built" in manifest["gtest_reason"]
    assert manifest["kernel_isas"] == "" and manifest["kernel_reason"] == manifest["gtest_reason"]


def test_the_instruction_sets_are_listed_once():
    # cmake/isas.cmake is the list: the top-level CMakeLists.txt and kernels.cmake set none of their own,
    # and every set of it has its flags and the CPU features it needs.
    text = ISAS_CMAKE.read_text()
    assert KERNEL_ISAS[0] == "baseline" and len(KERNEL_ISAS) == len(set(KERNEL_ISAS)) >= 3, KERNEL_ISAS
    for isa in KERNEL_ISAS:
        assert re.search(rf"^set\(LSTM_FAST_FLAGS_{isa}[ )]", text, re.M), isa
        assert re.search(rf"^set\(LSTM_FAST_CPU_FEATURES_{isa}[ )]", text, re.M), isa
    for path in [ROOT / "CMakeLists.txt", ROOT / "tests" / "cpp" / "kernels" / "kernels.cmake"]:
        other = re.findall(
            r"set\((LSTM_FAST_(?:ISAS|ALL_ISAS|FLAGS_\w+|CPU_FEATURES_\w+|EIGEN_DEFINITIONS))[ )]", path.read_text()
        )
        assert not other, f"{path.relative_to(ROOT)} sets {other}: the list is cmake/isas.cmake's"


def test_the_installed_package_has_the_list_it_was_built_with():
    # kernels.cmake reads it from the package's CMake folder, against an installed package.
    installed = Path(lf.get_cmake_dir()) / "lstm_fast_isas.cmake"
    assert installed.read_text() == ISAS_CMAKE.read_text()


def test_the_kernel_tests_and_the_dispatch_read_the_same_list(cpp):
    # The C++ list generated from cmake/isas.cmake (LSTM_FAST_FOR_EACH_ISA) for the kernel tests is the
    # sets they were built for, worst first; the library's, generated likewise, gives supported_isas().
    cpp.require_gtest()
    if not cpp.kernel_isas:
        pytest.skip(cpp.manifest["kernel_reason"])
    header = (cpp.folder / "kernels" / "generated" / "cell" / "isas.hpp").read_text()
    assert re.findall(r"^  X\((\w+), ", header, re.M) == cpp.kernel_isas
    if "avx2" in cpp.kernel_isas:  # cpu_has: every feature of the set
        assert 'X(avx2, __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))' in header
    assert lf.supported_isas() == [isa for isa in cpp.kernel_isas if isa in lf.supported_isas()]


# ---- The C++ API against Python -------------------------------------------------------------------------


def _frames(x: np.ndarray) -> str:
    return "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in x)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_layers=3, proj_size=3, peephole=True, forget_bias=1.0),
        dict(num_layers=2, dtype=np.float64),
        dict(bias=False, batch_first=True),
    ],
)
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


def _cpp_forward(programs, model, path, x):
    """model saved at path, then model_tool's Model::forward of x (T, B, I): y as float32 (T, B, O)."""
    model.save(path)
    T, B, I = x.shape
    out = _run([programs["model_tool"], "--forward", path, T, B], input=_frames(x.reshape(T * B, I)))
    assert out.returncode == 0, out.stderr
    return np.loadtxt(out.stdout.splitlines()).astype(np.float32).reshape(T, B, -1)  # %.9g: exact


def test_cpp_forward_reproduces_a_bidirectional_model(tmp_path, rng, programs):
    model = lf.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=2, peephole=True, seed=1)
    x = rng.normal(size=(7, 3, 4)).astype(np.float32)
    y_cpp = _cpp_forward(programs, model, tmp_path / "model.safetensors", x)
    np.testing.assert_allclose(y_cpp, model(x)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_cpp_forward_gives_the_numbers_of_python_for_a_frozen_file(tmp_path, rng, programs, precision):
    model = lf.LSTM(4, 6, num_layers=2, proj_size=2, peephole=True, seed=1).freeze(precision)
    x = rng.normal(size=(7, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(_cpp_forward(programs, model, tmp_path / "model.safetensors", x), model(x)[0])


# ---- bad files: each is made from a good one, and both loaders must refuse it ---------------------------


def _split(data: bytes):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join(header: dict, buffer: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + buffer


def _offsets_out_of_range(data):
    header, buffer = _split(data)
    header["weight_hh_l0"]["data_offsets"][1] += 10**6
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
    assert _run([programs["model_tool"], "--load", good]).stdout.startswith("ok 3 4")
    corrupt, message = BAD_FILES[case]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(corrupt(good.read_bytes()))
    out = _run([programs["model_tool"], "--load", bad])
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
        out = _run([programs["model_tool"], "--load", path])
        if out.returncode != 1 or not out.stdout.startswith("error: model file '"):
            failures.append(f"{path.name}: exit {out.returncode}, {out.stdout[:200]!r} {out.stderr[-500:]!r}")
    assert not failures, "\n".join(failures)
