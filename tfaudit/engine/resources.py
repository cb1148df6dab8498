"""Host and GPU resource sampling: anonymous memory from /proc, RSS via psutil, GPU memory via NVML.

Memory is judged on anonymous resident memory (``RssAnon`` in /proc/PID/status: what the
process allocated), not RSS: a worker forked from the zygote counts TensorFlow's shared library
pages in its RSS only once it touches them, so its RSS grows by ~90 MB more than a fresh
interpreter's for the same model load, while the anonymous memory grows alike in both. Peaks
between samples come from the kernel's high-water mark (``VmHWM``, reset by writing 5 to
/proc/self/clear_refs) minus the file-backed and shared pages. Off Linux, RSS stands in.

TensorFlow is never imported here; psutil and pynvml are imported lazily so
that importing this module costs nothing. Every NVML call is optional: a
machine without a GPU (or without the NVML library) yields ``None`` for GPU
numbers and a sentence saying why, never an exception.
"""
from __future__ import annotations

import os
import platform
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_total_bytes: int
    driver: str


@dataclass(frozen=True)
class GpuStatus:
    gpus: tuple[GpuInfo, ...]
    reason: str  # "" when GPUs were found, else why there are none


def _text(value: Any) -> str:
    # Older pynvml releases return bytes for names and versions.
    return value.decode() if isinstance(value, bytes) else str(value)


def _load_nvml(nvml: Any) -> tuple[Any, str]:
    """(module, "") or (None, reason)."""
    if nvml is not None:
        return nvml, ""
    try:
        import pynvml
    except Exception as exc:  # ImportError, or a broken install
        return None, f"no GPU: pynvml is not importable ({exc})"
    return pynvml, ""


def _init(nvml: Any) -> str:
    """Initialise NVML; "" on success, else the reason there is no GPU."""
    try:
        nvml.nvmlInit()
    except Exception as exc:
        if "LibraryNotFound" in type(exc).__name__:
            return f"no GPU: NVML library not found (pynvml: {exc})"
        return f"no GPU: NVML failed to initialise ({type(exc).__name__}: {exc})"
    return ""


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass


def gpu_status(nvml: Any = None) -> GpuStatus:
    """The NVIDIA GPUs NVML can see, or an empty tuple and the reason. Never raises."""
    nvml, reason = _load_nvml(nvml)
    if nvml is None:
        return GpuStatus((), reason)
    reason = _init(nvml)
    if reason:
        return GpuStatus((), reason)
    try:
        count = nvml.nvmlDeviceGetCount()
        if count == 0:
            return GpuStatus((), "no GPU: NVML reports 0 devices")
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        gpus = []
        for index in range(count):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append(
                GpuInfo(
                    index=index,
                    name=_text(nvml.nvmlDeviceGetName(handle)),
                    memory_total_bytes=int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
                    driver=driver,
                )
            )
        return GpuStatus(tuple(gpus), "")
    except Exception as exc:
        return GpuStatus((), f"no GPU: NVML query failed ({type(exc).__name__}: {exc})")
    finally:
        _shutdown(nvml)


def _process_memory_per_gpu(nvml: Any, pid: int) -> dict[int, int] | None:
    """Bytes used by ``pid`` on each GPU; NVML must already be initialised."""
    try:
        count = nvml.nvmlDeviceGetCount()
        if count == 0:
            return None
        usage = {}
        for index in range(count):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            processes = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            # usedGpuMemory is None where the driver cannot attribute memory (e.g. WDDM).
            usage[index] = sum(int(p.usedGpuMemory or 0) for p in processes if p.pid == pid)
        return usage
    except Exception:
        return None


def _utilization_per_gpu(nvml: Any) -> dict[int, float] | None:
    """Each GPU's utilisation in %, over NVML's last sample period; NVML must already be initialised."""
    try:
        return {index: float(nvml.nvmlDeviceGetUtilizationRates(nvml.nvmlDeviceGetHandleByIndex(index)).gpu)
                for index in range(nvml.nvmlDeviceGetCount())}
    except Exception:
        return None


def gpu_process_memory(pid: int, nvml: Any = None) -> dict[int, int] | None:
    """GPU memory used by ``pid``, in bytes per GPU index; None when there is no GPU."""
    nvml, _ = _load_nvml(nvml)
    if nvml is None or _init(nvml):
        return None
    try:
        return _process_memory_per_gpu(nvml, pid)
    finally:
        _shutdown(nvml)


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """The memory lines of /proc/PID/status in bytes (VmRSS, VmHWM, RssAnon, RssFile, RssShmem …); {} off Linux."""
    values = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name.startswith(("Vm", "Rss")) and rest.strip().endswith("kB"):
                    values[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError):
        return {}
    return values


def process_memory_bytes() -> int:
    """What memory checks judge for this process now: anonymous memory, or RSS where /proc does not tell."""
    anonymous = proc_status().get("RssAnon")
    if anonymous is None:
        import psutil

        return int(psutil.Process().memory_info().rss)
    return anonymous


def reset_peak() -> bool:
    """Reset this process's resident high-water mark (VmHWM) to its current RSS; False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def peak_anonymous_bytes() -> int | None:
    """Anonymous memory at this process's high-water mark since ``reset_peak()``: VmHWM minus file and shared pages now."""
    status = proc_status()
    if "VmHWM" not in status or "RssFile" not in status:
        return None
    return status["VmHWM"] - status["RssFile"] - status.get("RssShmem", 0)


@dataclass(frozen=True)
class ResourcePoint:
    t: float  # seconds since the sampler started
    rss_bytes: int
    gpu_bytes: int | None  # None when there is no GPU; never 0 for "absent"
    anon_bytes: int | None = None  # RssAnon; None off Linux
    gpu_bytes_by_index: dict[int, int] | None = None  # this process's memory on each GPU
    gpu_utilization_by_index: dict[int, float] | None = None  # each GPU's utilisation (%, all processes)

    @property
    def memory_bytes(self) -> int:
        """What memory checks judge: anonymous memory, or RSS where it is not known."""
        return self.rss_bytes if self.anon_bytes is None else self.anon_bytes


class ResourceSampler:
    """Samples RSS and GPU memory (and GPU utilisation) of a process every ``interval_s`` on a background thread.

    Use as a context manager, or call ``start()`` and ``stop()``. ``start()``
    takes the first (baseline) point synchronously and ``stop()`` a last one,
    so even a run shorter than one interval has a baseline and an end point.
    """

    def __init__(self, interval_s: float = 0.05, pid: int | None = None, nvml: Any = None):
        self.interval_s = interval_s
        self.pid = os.getpid() if pid is None else pid
        self.points: list[ResourcePoint] = []
        self.gpu_reason = ""
        self._nvml_arg = nvml
        self._nvml: Any = None  # initialised NVML module while sampling with a GPU
        self._process: Any = None
        self._started_at = 0.0
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> "ResourceSampler":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def start(self) -> "ResourceSampler":
        if self._thread is not None:
            raise RuntimeError("ResourceSampler already started")
        self._attach()
        status = gpu_status(self._nvml_arg)
        self.gpu_reason = status.reason
        if status.gpus:
            nvml, _ = _load_nvml(self._nvml_arg)
            # Held open for the whole run so each sample is a cheap query, not an init.
            if not _init(nvml):
                self._nvml = nvml
        self._started_at = time.perf_counter()
        self.sample_now()
        self._thread = threading.Thread(target=self._run, name="tfaudit-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[ResourcePoint]:
        if self._thread is not None and self._thread.is_alive():
            self._stop_event.set()
            self._thread.join()
            self._safe_sample()
        if self._nvml is not None:
            _shutdown(self._nvml)
            self._nvml = None
        with self._lock:
            return list(self.points)

    def _attach(self) -> None:
        import psutil

        self._process = psutil.Process(self.pid)

    def sample_now(self) -> ResourcePoint:
        """Take one point immediately and add it to ``points`` (works before ``start()`` too)."""
        if self._process is None:
            self._attach()
            self._started_at = time.perf_counter()
        status = proc_status(self.pid)
        rss = status.get("VmRSS") or int(self._process.memory_info().rss)
        gpu_bytes = per_gpu = utilization = None
        if self._nvml is not None:
            per_gpu = _process_memory_per_gpu(self._nvml, self.pid)
            gpu_bytes = None if per_gpu is None else sum(per_gpu.values())
            utilization = _utilization_per_gpu(self._nvml)
        point = ResourcePoint(time.perf_counter() - self._started_at, rss, gpu_bytes, status.get("RssAnon"), per_gpu, utilization)
        with self._lock:
            self.points.append(point)
        return point

    def _safe_sample(self) -> bool:
        try:
            self.sample_now()
            return True
        except Exception:  # the process exited (psutil.NoSuchProcess) or similar
            return False

    def _run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            if not self._safe_sample():
                return

    @property
    def baseline_rss_bytes(self) -> int:
        with self._lock:
            return self.points[0].rss_bytes if self.points else 0

    @property
    def peak_rss_bytes(self) -> int:
        with self._lock:
            return max((p.rss_bytes for p in self.points), default=0)

    @property
    def peak_gpu_bytes(self) -> int | None:
        with self._lock:
            values = [p.gpu_bytes for p in self.points if p.gpu_bytes is not None]
        return max(values) if values else None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_environment(nvml: Any = None) -> dict[str, Any]:
    """What the report says about the machine (TensorFlow's version is added elsewhere)."""
    import psutil

    status = gpu_status(nvml)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores_logical": psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        "cores_physical": psutil.cpu_count(logical=False),
        "memory_bytes": int(psutil.virtual_memory().total),
        "gpus": [asdict(gpu) for gpu in status.gpus],
        "gpu_status": status.reason or "ok",
    }
