"""Process-wide settings of the compiled core: threads and the instruction set of the kernels."""

from __future__ import annotations

from typing import List

from . import _core
from ._checks import int_arg


def set_num_threads(num_threads: int) -> None:
    """Threads lstm_fast may use at once (process-wide), at most _core.MAX_THREADS (1024). When a time
    step has enough work, a team of threads shares it; a bidirectional layer runs its two directions
    side by side. 1 keeps every call on the caller's thread. The default is the number of hardware
    threads. The helper threads are a pool started on first use and kept (named lstm_fast): between
    calls they spin for 200 us, then sleep."""
    num_threads = int_arg("num_threads", num_threads, 1)
    if num_threads > _core.MAX_THREADS:  # checked here so that 10**20 is no overflow error
        raise ValueError(f"num_threads must be <= {_core.MAX_THREADS}, got {num_threads}")
    _core.set_num_threads(num_threads)


def get_num_threads() -> int:
    """The thread count set by set_num_threads (default: the hardware threads)."""
    return _core.get_num_threads()


def isa() -> str:
    """The instruction set the kernels run with: "baseline" (SSE2 on x86-64), "avx2" (AVX2 + FMA),
    "avx512", or "amx" (AVX-512 and the AMX tile unit, for the frozen bf16 and int8 products, where the
    CPU has it and the OS grants it). The best one this build and CPU support is chosen at import; the
    environment variable LSTM_FAST_ISA, set before the import, forces another."""
    return _core.isa()


def supported_isas() -> List[str]:
    """The instruction sets this build has kernels for and this CPU runs, worst first."""
    return list(_core.supported_isas())
