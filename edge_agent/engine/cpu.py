"""Which llama.cpp CPU kernels a process uses, and the one we refuse: AMX.

llama.cpp's AMX "extra buffer type" repacks weights for AMX tiles at load time and segfaults
on the first decode on Sapphire/Emerald/Granite Rapids CPUs (upstream issues #20824, #11115).
The project's own build leaves AMX out (``scripts/install-llama-cpp.sh`` compiles with
``-mno-amx-*``), but a wheel built elsewhere with ``-march=native`` on such a machine has it.
For those, the model is loaded with ``use_extra_bufts = False``, which keeps llama.cpp from
choosing the AMX buffer.

Why not always turn extra buffers off: the same switch also disables the CPU *repack* buffer
(interleaved Q4_0 / Q4_K / IQ4_NL kernels on AVX2, Q8_0 and Q4_0 on ARM NEON, so on Jetson
Orins too), which is where much of llama.cpp's CPU speed for those formats comes from. So it
is off only where the build reports AMX.

``allow_amx`` (edge setting ``allow_amx``, ``PICE_EDGE_ALLOW_AMX=1``) turns the guard off, for a
llama.cpp whose AMX path has been fixed upstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# ``AMX_INT8 = 1`` in llama_print_system_info(): the build's AMX kernels are compiled in.
_FEATURE = re.compile(r"([A-Z][A-Z0-9_]*)\s*=\s*1")


@dataclass(frozen=True)
class KernelChoice:
    """What llama.cpp reports about its build, and whether its extra buffers may be used."""

    features: frozenset[str]
    use_extra_buffers: bool
    reason: str

    @property
    def amx(self) -> bool:
        return any(f.startswith("AMX") for f in self.features)


def system_features(system_info: str) -> frozenset[str]:
    """The CPU features a llama.cpp build reports as enabled (``AVX2 = 1`` -> ``AVX2``)."""
    return frozenset(_FEATURE.findall(system_info))


def choose_kernels(system_info: str, *, allow_amx: bool = False) -> KernelChoice:
    """Decide whether the model may use llama.cpp's extra weight buffers."""
    features = system_features(system_info)
    if "AMX_INT8" in features and not allow_amx:
        return KernelChoice(
            features,
            use_extra_buffers=False,
            reason=(
                "this llama.cpp build has AMX kernels, which crash on the first decode "
                "(llama.cpp #20824): loading without extra weight buffers. Rebuild with "
                "scripts/install-llama-cpp.sh to keep the repacked kernels, or set "
                "PICE_EDGE_ALLOW_AMX=1 once upstream has fixed AMX."
            ),
        )
    return KernelChoice(features, use_extra_buffers=True, reason="extra weight buffers on")


_INTERESTING = re.compile(r"^(avx.*|amx.*|fma|f16c|bmi2|sse4_2|asimd.*|sve.*|i8mm)$")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The SIMD features the CPU itself reports (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(f for f in value.split() if _INTERESTING.match(f))
    return frozenset()
