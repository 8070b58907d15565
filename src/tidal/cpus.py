"""How many CPUs this process may run on."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """The CPUs this process may be scheduled on: its affinity where the system has one (a
    container's or taskset's limit), not every CPU of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
