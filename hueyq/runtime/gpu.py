"""GPU lanes: torch settings for the workers of a queue with ``gpu = true``.

torch is imported lazily, right before the first task of the process that
runs the tasks (a thread consumer, or a process worker after it was forked),
so CUDA is never initialised in a process that later forks and an idle lane
costs no torch memory. Without torch or without CUDA the lane runs its tasks
on the CPU and says so once.
"""

import logging
import threading

logger = logging.getLogger("hueyq.gpu")


class GpuLane:
    """Per-process GPU housekeeping for one worker process."""

    def __init__(self, memory_fraction: float = 0.0,
                 threads: int = 0) -> None:
        self.memory_fraction = memory_fraction
        self.threads = threads
        self.torch = None
        self.device = "cpu"
        self.started = False
        self._lock = threading.Lock()

    def ensure_started(self) -> str:
        """Start the lane once (before this process's first task)."""
        if not self.started:
            with self._lock:
                if not self.started:
                    self.start()
                    self.started = True
        return self.device

    def start(self) -> str:
        """Import torch, cap this process's GPU memory; returns the device."""
        try:
            import torch
        except ImportError:
            logger.warning("gpu lane: torch is not installed; tasks run on "
                           "the CPU (pip install 'hueyq[gpu]')")
            return self.device
        self.torch = torch
        if self.threads:
            # Several workers each using every core fight over them.
            torch.set_num_threads(self.threads)
        if not torch.cuda.is_available():
            logger.info("gpu lane: no CUDA device; tasks run on the CPU")
            return self.device
        if self.memory_fraction:
            torch.cuda.set_per_process_memory_fraction(self.memory_fraction)
        self.device = "cuda:%d" % torch.cuda.current_device()
        logger.info("gpu lane: %s (%s), memory fraction %s", self.device,
                    torch.cuda.get_device_name(), self.memory_fraction or "all")
        return self.device

    @property
    def cuda(self) -> bool:
        """Whether this lane runs on a CUDA device."""
        return self.device != "cpu"

    def after_task(self) -> "dict | None":
        """Release cached blocks; return this process's GPU memory figures."""
        if not self.cuda:
            return None
        torch = self.torch
        stats = {"allocated": torch.cuda.memory_allocated(),
                 "reserved": torch.cuda.memory_reserved(),
                 "peak": torch.cuda.max_memory_allocated(),
                 "device": self.device}
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return stats
