"""Resident memory of a training run: the peak of each phase, and the budget that bounds the data.

The run's peak is the kernel's high-water mark of resident memory (``VmHWM`` in
``/proc/self/status``; ``ru_maxrss`` of ``getrusage(2)`` elsewhere): what
``/usr/bin/time -v`` reports as "Maximum resident set size". It is never reset,
so that figure stays the whole run's. A phase that raises it reports the new
mark, exactly; any other phase reports the largest resident size sampled every
``SAMPLE_SECONDS`` while it ran, which can miss a spike shorter than that.
"""

import contextlib
import ctypes
import ctypes.util
import os
import resource
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

GB = 1e9
_STATUS = Path("/proc/self/status")
SAMPLE_SECONDS = 0.05
# The default memory budget of the data (memory_budget_gb: 0): an eighth of the machine's memory, at least 0.5 GB
# and at most 1 GB (an 8 GB laptop's eighth): feature passes of 10 photos at 380 + 300 + 224 px or more, no slower
# per photo on a CPU than larger batches, and files cached on the disk are read from the page cache anyway.
DEFAULT_BUDGET_SHARE = 1 / 8
DEFAULT_BUDGET_RANGE = (0.5 * GB, 1 * GB)


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes, or ``None`` where there is no such file."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def resident_bytes() -> int:
    """The process's resident memory now, in bytes (its peak so far where the current value is unknown)."""
    current = _status_bytes("VmRSS")
    return current if current is not None else peak_bytes()


def peak_bytes() -> int:
    """The process's peak resident memory so far, in bytes."""
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    # ru_maxrss: bytes on macOS, kilobytes on Linux (getrusage(2)).
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def machine_bytes() -> int:
    """The machine's physical memory in bytes (``sysconf``; 8 GB where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return int(8 * GB)


def budget_bytes(budget_gb: float) -> int:
    """The memory budget of the data in bytes: ``budget_gb``, or with 0 ``DEFAULT_BUDGET_SHARE``
    of the machine's memory within ``DEFAULT_BUDGET_RANGE``."""
    if budget_gb > 0:
        return int(budget_gb * GB)
    low, high = DEFAULT_BUDGET_RANGE
    return int(min(high, max(low, machine_bytes() * DEFAULT_BUDGET_SHARE)))


def release_free_memory() -> None:
    """Give the C heap's free memory back to the system (glibc's ``malloc_trim(0)``; elsewhere nothing).

    glibc keeps what a phase freed for later allocations, so the next phase's peak stacks on it:
    after the LiteRT conversion of the shipped model, 1.37 GB resident fell to 0.88 GB when trimmed.
    """
    library = ctypes.util.find_library("c")
    if library:
        trim = getattr(ctypes.CDLL(library), "malloc_trim", None)
        if trim is not None:
            trim(0)


class MemoryLog:
    """Peak resident memory per phase of a run, printed as each phase ends.

    Example::

        memory = MemoryLog()
        with memory.phase("feature pass"):
            ...
        memory.summary()  # {"peak_gb": ..., "phases": {"feature pass": {"peak_gb": ..., "seconds": ...}}}
    """

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Measure the block as phase ``name`` (a repeated name keeps the larger peak and adds the seconds),
        then give the memory it freed back (``release_free_memory``)."""
        mark, sampled, done = peak_bytes(), [resident_bytes()], threading.Event()

        def sample() -> None:
            while not done.wait(SAMPLE_SECONDS):
                sampled[0] = max(sampled[0], resident_bytes())

        sampler = threading.Thread(target=sample, name=f"memory: {name}", daemon=True)
        sampler.start()
        started = time.perf_counter()
        try:
            yield
        finally:
            done.set()
            sampler.join()
            release_free_memory()
            seconds, new_mark = time.perf_counter() - started, peak_bytes()
            peak = (new_mark if new_mark > mark else max(sampled[0], resident_bytes())) / GB
            before = self.phases.get(name, {"peak_gb": 0.0, "seconds": 0.0})
            self.phases[name] = {"peak_gb": round(max(peak, before["peak_gb"]), 2),
                                 "seconds": round(seconds + before["seconds"], 1)}
            print(f"Memory: {name}: peak {peak:.2f} GB resident, {seconds:.0f} s", flush=True)

    def summary(self) -> dict[str, object]:
        """``{"peak_gb": the largest phase peak, "phases": {name: {"peak_gb", "seconds"}}}``, in GB (10^9 bytes)."""
        peak = max((phase["peak_gb"] for phase in self.phases.values()), default=round(peak_bytes() / GB, 2))
        return {"peak_gb": peak, "phases": dict(self.phases)}


# Activation bytes a feature pass (inference, graph mode) holds per input pixel of each scale: measured
# 140 for EfficientNet-Lite0 in TensorFlow 2.21 (benchmarks/training_memory.py --feature-pass: batches of
# 8 and 32 at 380 + 300 + 224 px); rounded up. It is the widest pair of consecutive activations, block
# 2's expansion to 96 channels at half the side: 24 float32 per input pixel each.
ACTIVATION_BYTES_PER_PIXEL = 160
# Past this, a larger batch no longer speeds a pass up on a CPU; a smaller one is taken where memory is short.
MAX_FEATURE_BATCH = 64


def feature_batch_size(budget: int, sides: Sequence[int]) -> int:
    """Images per batch of a feature pass whose activations fit ``budget`` bytes.

    Args:
        budget: bytes (e.g. half of ``budget_bytes``).
        sides: the input side in pixels of every scale the backbone sees (``[380, 300, 224]`` multi-scale).

    Returns:
        an ``int`` in ``[1, MAX_FEATURE_BATCH]``.
    """
    per_image = ACTIVATION_BYTES_PER_PIXEL * sum(side * side for side in sides)
    return max(1, min(MAX_FEATURE_BATCH, budget // per_image))
