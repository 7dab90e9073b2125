"""The same bits on every x86-64 machine: the golden cases (tests/test_golden.py) rerun in a process that
sees other cache sizes, as an Intel Xeon, a Zen 4 and a small laptop core report them, and must still give
the saved bits. The other caches come from tests/any_machine/cpuid_caches.c, which makes CPUID report
them to the whole process (the library, and Eigen's query of the caches that would block its products)."""

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CXX, EIGEN_INCLUDES

HERE = Path(__file__).parent
SHIM = HERE / "any_machine" / "cpuid_caches.c"
PROBE = HERE / "any_machine" / "eigen_caches.cpp"
CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
NO_FAULTING = "cannot make CPUID fault"

# L1d, L2, L3 in KiB, as each CPU reports them.
MACHINES = {
    "zen4": (32, 1024, 32768),  # AMD EPYC Zen 4, where tests/golden was made
    "emerald_rapids": (48, 2048, 327680),  # Intel Xeon family 6 model 207
    "small": (16, 256, 8192),  # an older laptop core
}

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64") or CC is None,
    reason="CPUID is made to fault through Linux's arch_prctl on x86-64, with a C compiler",
)


def _as_on(shim, machine) -> dict:
    """The environment of a process that sees the caches of `machine`."""
    env = dict(os.environ, LSTM_FAST_FAKE_CACHES=",".join(map(str, MACHINES[machine])))
    # After what is preloaded already (a sanitizer's runtime must come first); no PYTHONFAULTHANDLER, whose
    # handler would take SIGSEGV, which the shim needs, for its own.
    env["LD_PRELOAD"] = " ".join(filter(None, [os.environ.get("LD_PRELOAD"), str(shim)]))
    env.pop("PYTHONFAULTHANDLER", None)
    return env


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    out = tmp_path_factory.mktemp("cpuid") / "cpuid_caches.so"
    built = subprocess.run([CC, "-O2", "-shared", "-fPIC", "-o", out, SHIM], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return out


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """Eigen's own cache query, built without the library's EIGEN_NO_CPUID."""
    if CXX is None or not EIGEN_INCLUDES:
        pytest.skip("needs a C++ compiler and Eigen (cmeel-eigen, in the test extra)")
    out = tmp_path_factory.mktemp("probe") / "eigen_caches"
    built = subprocess.run([CXX, "-O1", f"-I{EIGEN_INCLUDES[0]}", "-o", out, PROBE], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return out


def _eigen_caches(shim, probe, machine) -> list:
    """The cache sizes Eigen reads in a process faked as `machine`, in bytes; skips where CPUID cannot fault."""
    ran = subprocess.run([probe], env=_as_on(shim, machine), capture_output=True, text=True, timeout=60)
    if NO_FAULTING in ran.stderr:
        pytest.skip(f"this CPU or hypervisor has no CPUID faulting (cpuid_fault): {ran.stderr.strip()}")
    assert ran.returncode == 0, ran.stderr
    return [int(v) for v in ran.stdout.split()]


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_eigen_sees_the_caches_of_the_other_machine(shim, probe, machine):
    assert _eigen_caches(shim, probe, machine) == [1024 * kib for kib in MACHINES[machine]]


@pytest.fixture(params=sorted(MACHINES))
def machine(request, shim, probe):
    """A machine whose caches Eigen is shown to see, so that a pass below is not one on this machine's caches."""
    assert _eigen_caches(shim, probe, request.param) == [1024 * kib for kib in MACHINES[request.param]]
    return request.param


def test_golden_bits_hold_on_a_machine_with_other_caches(shim, machine):
    # No faulthandler plugin in the child either, for the same reason.
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:faulthandler", "-p", "no:cacheprovider"]
    env = _as_on(shim, machine)
    ran = subprocess.run([*args, str(HERE / "test_golden.py")], env=env, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, f"as on {machine} {MACHINES[machine]} KiB:\n{ran.stdout[-4000:]}{ran.stderr[-2000:]}"
    assert " passed" in ran.stdout and " failed" not in ran.stdout, ran.stdout[-2000:]
