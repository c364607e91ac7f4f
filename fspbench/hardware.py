"""What the device a run trains on does fast: detected once per process, recorded with every result.

On a CPU: torch's CPU capability (the instruction set its own kernels dispatch to: DEFAULT, AVX2,
AVX512; ``ATEN_CPU_CAPABILITY`` lowers it) and whether bf16 is native, i.e. the CPU has bf16
dot-product instructions (AVX512-BF16 or AMX-BF16) and the kernels may use them (torch's capability
is AVX512 and oneDNN's ISA is not capped below them by ``ONEDNN_MAX_CPU_ISA``). Without them bf16
autocast is emulated: measured 12x slower than fp32 for ResNet-8 training on an AVX2 AMD EPYC, where
it is 1.2x faster than fp32 on an AVX512-BF16 one (docs/PERFORMANCE.md).

On a GPU: its name and compute capability; bf16 is native from compute capability 8.0 (Ampere).

Bitwise reproducibility of CPU runs holds between machines with the same ``cpu_capability``,
thread count and library versions: the kernels, and so the float rounding, follow the instruction set.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fspbench.errors import BadInput

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below which it has no bf16 dot-product kernels
_ONEDNN_BELOW_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Hardware:
    """One device as fspbench sees it. ``key()`` names it for caches and records."""

    device: str  # "cpu" | "cuda"
    name: str  # CPU model name or GPU name
    cpu_capability: str  # torch.backends.cpu.get_cpu_capability(): DEFAULT | AVX2 | AVX512 | ...
    native_bf16: bool
    bf16_source: str  # why native_bf16 is what it is, in words
    compute_capability: str = ""  # GPUs: "9.0"; empty on a CPU
    onednn_max_isa: str = ""  # ONEDNN_MAX_CPU_ISA when set

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        """What must match for two machines to train at the same speed and give the same CPU bits."""
        parts = [self.device, self.name, self.cpu_capability, self.compute_capability, self.onednn_max_isa,
                 "bf16" if self.native_bf16 else "no-bf16"]
        return "|".join(p for p in parts if p)

    def describe(self) -> str:
        if self.device == "cuda":
            return f"{self.name} (compute capability {self.compute_capability})"
        isa = f", oneDNN capped at {self.onednn_max_isa}" if self.onednn_max_isa else ""
        return f"{self.name} (torch CPU capability {self.cpu_capability}{isa})"


def cpu_flags_and_name() -> tuple[set[str], str]:
    """The CPU's feature flags and model name (/proc/cpuinfo; no flags and the platform's name elsewhere)."""
    flags: set[str] = set()
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name") and not name:
                name = line.split(":", 1)[1].strip()
    except OSError:  # not Linux: no flags to read, so bf16 counts as not native
        pass
    import platform

    return flags, name or platform.processor() or "unknown"


@functools.lru_cache(maxsize=4)
def detect(device: str = "cpu") -> Hardware:
    """The hardware of ``device`` ("cpu" or "cuda"), detected once per process."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if device == "cuda":
        major, minor = torch.cuda.get_device_capability()
        native = major >= 8
        return Hardware("cuda", torch.cuda.get_device_name(), capability, native,
                        f"compute capability {major}.{minor} {'>=' if native else '<'} 8.0",
                        compute_capability=f"{major}.{minor}")
    flags, name = cpu_flags_and_name()
    isa = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    has = sorted(f for f in _BF16_FLAGS if f in flags)
    if not has:
        native, why = False, "the CPU has no AVX512-BF16 or AMX-BF16 instructions"
    elif not capability.startswith("AVX512"):
        native, why = False, f"torch's CPU kernels are limited to {capability} (ATEN_CPU_CAPABILITY)"
    elif isa in _ONEDNN_BELOW_BF16:
        native, why = False, f"oneDNN is capped at {isa} (ONEDNN_MAX_CPU_ISA)"
    else:
        native, why = True, f"the CPU has {' and '.join(has)}"
    return Hardware("cpu", name, capability, native, why, onednn_max_isa=isa)


def check_precision(precision: str, force_bf16: bool, hw: Hardware) -> None:
    """BadInput for bf16 on hardware without native bf16, unless the user forced it."""
    if precision != "bf16" or hw.native_bf16 or force_bf16:
        return
    raise BadInput(
        f"precision: bf16 asked for, but {hw.describe()} has no native bf16 ({hw.bf16_source}); bf16 autocast "
        "is emulated there and trains about 12x slower than fp32. Use precision=fp32, or set force_bf16=true "
        "to run it anyway"
    )
