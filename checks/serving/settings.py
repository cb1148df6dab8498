"""What a serving process is started with: its threads, compute precision and oneDNN switch (no TensorFlow here)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Setting:
    """Threads (None = TensorFlow's default), compute precision and oneDNN of one serving process."""

    intra: int | None = None
    inter: int | None = None
    precision: str = "float32"
    onednn: str | None = None  # TF_ENABLE_ONEDNN_OPTS for a fresh interpreter; None = this process's

    @property
    def default(self) -> bool:
        return self == Setting()

    @property
    def kind(self) -> str:
        """Which finding a gain of this setting is: serving/threads, serving/precision or serving/onednn."""
        return "precision" if self.precision != "float32" else "onednn" if self.onednn is not None else "threads"

    def label(self) -> str:
        parts = []
        if self.intra is not None or self.inter is not None:
            parts.append(f"intra {self.intra or 'default'}, inter {self.inter or 'default'}")
        if self.precision != "float32":
            parts.append(f"{self.precision} compute")
        if self.onednn is not None:
            parts.append(f"oneDNN {'on' if self.onednn == '1' else 'off'}")
        return ", ".join(parts) or "defaults"

    def measured(self) -> dict[str, Any]:
        return asdict(self)


def thread_settings(cores: int) -> list[Setting]:
    """Intra-op 1, half and all cores × inter-op 1 and 2; never all cores for both, which are TensorFlow's defaults
    (each pool sized to the schedulable CPUs): timing it against the defaults would time the defaults against themselves."""
    intra = sorted({1, max(1, cores // 2), cores})
    return [Setting(a, b) for a in intra for b in sorted({1, 2}) if (a, b) != (cores, cores)]


def bf16_cpu_support(cpuinfo: str = "/proc/cpuinfo") -> tuple[bool, str]:
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False, "cannot read the CPU flags (/proc/cpuinfo)"
    found = [flag for flag in BF16_CPU_FLAGS if flag in flags]
    if found:
        return True, f"the CPU has {', '.join(found)}"
    return False, f"the CPU has none of {', '.join(BF16_CPU_FLAGS)}: bfloat16 would be emulated, slower than float32"
