import os
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np

from tfaudit.engine import resources
from tfaudit.engine.resources import GpuInfo, ResourceSampler, gpu_process_memory, gpu_status, host_environment

GIB = 1024**3
MB = 1024**2
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeNVMLError(Exception):
    pass


class FakeNVML:
    """Just enough of pynvml's API, with GPUs and processes we choose."""

    NVMLError = FakeNVMLError

    def __init__(self, gpus=(), processes=None, init_error=None, utilization=None):
        self.gpus = list(gpus)  # (name, total bytes)
        self.processes = processes or {}  # gpu index -> [(pid, used bytes)]
        self.utilization = utilization or {}  # gpu index -> % (a GPU without one raises, as NVML can)
        self.init_error = init_error
        self.initialised = 0

    def nvmlInit(self):
        if self.init_error:
            raise self.init_error
        self.initialised += 1

    def nvmlShutdown(self):
        self.initialised -= 1

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetName(self, handle):
        return self.gpus[handle][0].encode()  # old pynvml returns bytes

    def nvmlDeviceGetMemoryInfo(self, handle):
        total = self.gpus[handle][1]
        return SimpleNamespace(total=total, used=0, free=total)

    def nvmlSystemGetDriverVersion(self):
        return "550.54.15"

    def nvmlDeviceGetUtilizationRates(self, handle):
        if handle not in self.utilization:
            raise FakeNVMLError("Not Supported")
        return SimpleNamespace(gpu=self.utilization[handle], memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.processes.get(handle, [])]


class LibraryNotFound(FakeNVMLError):
    pass


def two_gpus(pid, used=300 * MB):
    return FakeNVML(
        gpus=[("Fake A100", 40 * GIB), ("Fake T4", 16 * GIB)],
        processes={0: [(pid, used), (pid + 1, 999)], 1: [(pid + 2, 123)]},
    )


def test_gpu_status_when_nvml_cannot_initialise():
    fake = FakeNVML(init_error=LibraryNotFound("NVML Shared Library Not Found"))
    status = gpu_status(fake)
    assert status.gpus == ()
    assert status.reason.startswith("no GPU: NVML library not found")
    assert "NVML Shared Library Not Found" in status.reason


def test_gpu_status_with_zero_devices():
    fake = FakeNVML()
    status = gpu_status(fake)
    assert status == resources.GpuStatus((), "no GPU: NVML reports 0 devices")
    assert fake.initialised == 0  # shut down again


def test_gpu_status_lists_gpus():
    fake = two_gpus(pid=1234)
    status = gpu_status(fake)
    assert status.reason == ""
    assert status.gpus == (
        GpuInfo(0, "Fake A100", 40 * GIB, "550.54.15"),
        GpuInfo(1, "Fake T4", 16 * GIB, "550.54.15"),
    )
    assert fake.initialised == 0


def test_gpu_status_never_raises_when_a_query_fails():
    fake = two_gpus(pid=1)
    fake.nvmlDeviceGetMemoryInfo = lambda handle: (_ for _ in ()).throw(FakeNVMLError("GPU is lost"))
    status = gpu_status(fake)
    assert status.gpus == () and "GPU is lost" in status.reason


def test_gpu_process_memory_counts_only_this_pid():
    assert gpu_process_memory(1234, two_gpus(pid=1234)) == {0: 300 * MB, 1: 0}
    assert gpu_process_memory(1234, FakeNVML()) is None
    assert gpu_process_memory(1234, FakeNVML(init_error=FakeNVMLError("boom"))) is None


def test_sampler_reports_none_for_gpu_without_gpu():
    with ResourceSampler(interval_s=0.01, nvml=FakeNVML()) as sampler:
        time.sleep(0.05)
    assert len(sampler.points) >= 3
    assert all(p.gpu_bytes is None for p in sampler.points)
    assert sampler.gpu_reason == "no GPU: NVML reports 0 devices"
    assert sampler.peak_gpu_bytes is None


def test_sampler_reports_fake_gpu_bytes():
    fake = two_gpus(pid=os.getpid(), used=300 * MB)
    with ResourceSampler(interval_s=0.01, nvml=fake) as sampler:
        time.sleep(0.05)
    assert sampler.gpu_reason == ""
    assert [p.gpu_bytes for p in sampler.points] == [300 * MB] * len(sampler.points)
    assert fake.initialised == 0  # NVML released on stop


def test_sampler_sees_a_real_allocation():
    sampler = ResourceSampler(interval_s=0.01, nvml=FakeNVML())
    sampler.start()
    time.sleep(0.05)
    block = np.ones(200 * MB, dtype=np.uint8)  # ones() touches every page, so it is resident
    time.sleep(0.1)
    points = sampler.stop()
    del block
    assert points == sampler.points
    assert sampler.baseline_rss_bytes == points[0].rss_bytes
    assert sampler.peak_rss_bytes - sampler.baseline_rss_bytes >= 150 * MB
    assert [p.t for p in points] == sorted(p.t for p in points)


def test_the_real_machine_lists_its_gpus_or_says_why_it_has_none():
    status = gpu_status()  # the real NVML: this host's GPUs, whichever host runs the suite
    if status.gpus:
        assert status.reason == "" and all(g.name and g.memory_total_bytes > 0 for g in status.gpus)
        assert set(gpu_process_memory(os.getpid())) == {g.index for g in status.gpus}
    else:
        assert status.reason.startswith("no GPU:")
        assert gpu_process_memory(os.getpid()) is None


def test_host_environment():
    env = host_environment(nvml=FakeNVML())
    assert env["python"] == "%d.%d.%d" % sys.version_info[:3]
    assert env["cpu"] and env["platform"]
    assert env["cores_logical"] >= 1
    assert env["memory_bytes"] > 0
    assert env["gpus"] == [] and env["gpu_status"] == "no GPU: NVML reports 0 devices"
    assert host_environment(nvml=two_gpus(pid=1))["gpu_status"] == "ok"


def test_resources_never_imports_tensorflow():
    code = (
        "import sys, tfaudit.engine.resources as r; r.host_environment(); "
        "r.ResourceSampler().start().stop(); assert 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": REPO_ROOT})
