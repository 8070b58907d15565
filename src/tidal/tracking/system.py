"""System metrics of a run, sampled in the background, and what the run cost.

A daemon thread samples this process (and its children) every ``interval`` seconds: CPU
percent, resident memory, and GPU utilisation and memory where NVIDIA's NVML is available.
The samples are logged as ``system/*`` metrics. At the end the run's CPU-seconds, peak memory
and GPU-seconds are priced with the workspace's price table.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    peak_rss_bytes: int
    gpu_seconds: float
    wall_seconds: float

    def cost(self, prices: Mapping[str, float]) -> float:
        """USD: CPU-hours, peak GB held for the run's duration, and GPU-hours, at list price."""
        hours = self.wall_seconds / 3600
        return (self.cpu_seconds / 3600 * prices["cpu_hour"]
                + self.peak_rss_bytes / 1e9 * hours * prices["memory_gb_hour"]
                + self.gpu_seconds / 3600 * prices["gpu_hour"])


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def _tree_rss(process: psutil.Process) -> int:
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total


class _Gpus:
    """NVML handles, or nothing when no NVIDIA driver or nvidia-ml-py is present."""

    def __init__(self) -> None:
        self.handles: list = []
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                            for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # no library, no driver, no device: no GPU metrics
            self.handles = []

    def sample(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for index, handle in enumerate(self.handles):
            try:
                util = self.nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = self.nvml.nvmlDeviceGetMemoryInfo(handle)
            except Exception:
                continue
            values[f"system/gpu{index}_utilization_percent"] = float(util.gpu)
            values[f"system/gpu{index}_memory_mb"] = memory.used / 1e6
        return values


class UsageMonitor:
    """Measures a run from start to stop; samples system metrics when given an interval > 0."""

    def __init__(self, log: Callable[[dict[str, float], int], None], interval: float) -> None:
        self._log = log
        self.interval = interval
        self._process = psutil.Process()
        self._cpu_start = _cpu_seconds(self._process)
        self._wall_start = time.monotonic()
        # Own RSS only here and at stop: walking the process tree scans /proc (milliseconds
        # on a busy host), which the background sampler can afford and run start/end cannot.
        self._peak_rss = self._process.memory_info().rss
        self._gpu_busy_seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gpus: _Gpus | None = None
        self._step = 0
        if interval > 0:
            self._thread = threading.Thread(target=self._loop, name="tidal-system-metrics",
                                            daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        self._gpus = _Gpus()
        self._process.cpu_percent(None)  # prime the counter
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:  # a failed sample must never disturb the run
                pass

    def sample(self) -> None:
        rss = _tree_rss(self._process)
        self._peak_rss = max(self._peak_rss, rss)
        values = {
            "system/cpu_percent": self._process.cpu_percent(None),
            "system/rss_mb": rss / 1e6,
        }
        if self._gpus is not None and self._gpus.handles:
            gpu_values = self._gpus.sample()
            busy = sum(v for k, v in gpu_values.items() if k.endswith("utilization_percent"))
            self._gpu_busy_seconds += busy / 100 * self.interval
            values.update(gpu_values)
        self._log(values, self._step)
        self._step += 1

    def stop(self) -> Usage:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._peak_rss = max(self._peak_rss, self._process.memory_info().rss)
            cpu = _cpu_seconds(self._process) - self._cpu_start
        except psutil.Error:
            cpu = 0.0
        return Usage(cpu_seconds=max(cpu, 0.0), peak_rss_bytes=self._peak_rss,
                     gpu_seconds=self._gpu_busy_seconds,
                     wall_seconds=time.monotonic() - self._wall_start)
