"""What tools/leak_check.py and tools/long_run.py measure: the process's resident memory."""

from __future__ import annotations

import os


def rss_mib() -> float:
    """Resident set size now (not the peak), from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
