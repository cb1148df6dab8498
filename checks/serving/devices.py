"""The devices the serving check sweeps, and what a GPU did while a sweep point ran."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tfaudit.api import SkipCheck, resource_sampler


@dataclass(frozen=True)
class Device:
    name: str  # "CPU", "GPU:0"
    tf_name: str  # what tf.device() takes
    nvml_index: int | None = None
    compute_capability: tuple[int, int] | None = None


def visible_devices(tf) -> list[Device]:
    """The CPU and every GPU TensorFlow sees (with NVML's index and the compute capability)."""
    devices = [Device("CPU", "/CPU:0")]
    for index, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        try:
            details = tf.config.experimental.get_device_details(gpu)
        except Exception:  # noqa: BLE001 - details are optional
            details = {}
        devices.append(Device(f"GPU:{index}", f"/GPU:{index}", index, details.get("compute_capability")))
    return devices


def chosen_devices(ctx, tf) -> tuple[list[Device], str]:
    """The devices ``--device`` names (all by default), and a note when no GPU is visible."""
    wanted = (ctx.options.get("device") or "all").upper()
    found = visible_devices(tf)
    note = "" if len(found) > 1 else "no GPU visible to TensorFlow: CPU only"
    if wanted == "ALL":
        return found, note
    chosen = [d for d in found if d.name == wanted]
    if not chosen:
        raise SkipCheck(f"--device {wanted}: not visible here (visible: {', '.join(d.name for d in found)})")
    return chosen, note


class GpuMonitor:
    """While a sweep point runs on a GPU: NVML utilisation and this process's memory there (a resource sampler), and the TF allocator's peak."""

    def __init__(self, device: Device, tf, nvml=None, interval_s: float = 0.05):
        self.device, self.tf, self.nvml, self.interval_s = device, tf, nvml, interval_s

    def measure(self, work) -> dict[str, Any]:
        """Run ``work()`` and return what the GPU did meanwhile ({} on the CPU)."""
        index = self.device.nvml_index
        if index is None:
            work()
            return {}
        tf_name = self.device.tf_name.strip("/")
        try:
            self.tf.config.experimental.reset_memory_stats(tf_name)
            with_allocator = True
        except Exception:  # noqa: BLE001 - allocator numbers are optional
            with_allocator = False
        with resource_sampler(self.interval_s, nvml=self.nvml) as sampler:
            work()
        result = self.nvml_readings(sampler.points, index)
        if with_allocator:
            try:
                result["tf_allocator_peak_mb"] = round(self.tf.config.experimental.get_memory_info(tf_name)["peak"] / 1e6, 1)
            except Exception:  # noqa: BLE001
                pass
        return result

    @staticmethod
    def nvml_readings(points, index: int) -> dict[str, Any]:
        utilization = [p.gpu_utilization_by_index[index] for p in points if p.gpu_utilization_by_index and index in p.gpu_utilization_by_index]
        memory = [p.gpu_bytes_by_index[index] for p in points if p.gpu_bytes_by_index and index in p.gpu_bytes_by_index]
        result: dict[str, Any] = {}
        if utilization:
            result["gpu_utilization_pct"] = round(float(np.median(utilization)), 1)
        if memory:
            result["gpu_memory_mb"] = round(max(memory) / 1e6, 1)
        return result
