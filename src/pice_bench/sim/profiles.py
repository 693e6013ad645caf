"""Simulated edges: device speed profiles (rate vs batch size) and link profiles.

Speeds are anchored on this repo's measured CPU edge (docs/benchmarks-edge.md, the 2-core
machine, Qwen2.5-Coder-0.5B Q8_0, bare ``llama_decode``): one sequence 22.4 tok/s, 8 sequences
54.1 tok/s aggregate (2.41×), which the gateway's rate model
(:mod:`pice_gateway.placement.rate`) describes with r1 = 22.4 and α = 1/3. Jetson Orin devices
are scaled from it by published figures (NVIDIA's Jetson Orin module data sheets):

=============  ==========  ===========  ===========  ===========  =====  ==============
device          INT8 TOPS   memory GB/s  r1 (×Nano)   ceiling       α     max sequences
=============  ==========  ===========  ===========  ===========  =====  ==============
Orin Nano 8GB       40          68          1.0          ×1.0      0.333        8
Orin NX 16GB       100         102.4        1.5          ×2.5      0.200       16
AGX Orin 64GB      275         204.8        3.0          ×6.9      0.145       32
=============  ==========  ===========  ===========  ===========  =====  ==============

- Decoding one sequence is memory-bound (every weight read per token), so r1 follows memory
  bandwidth: 1 : 1.5 : 3.0.
- A large batch is compute-bound, so the aggregate ceiling r1/α follows TOPS: 1 : 2.5 : 6.9;
  hence α = (1/3) · (r1 ratio) / (TOPS ratio).
- The Nano is given the CPU edge's measured rates (conservative: its GPU would decode the 0.5B
  model faster; only the ratios matter for comparing policies). Max sequences follow memory.
- Each device varies ±10% around its class (thermals, clocks, other work), seeded.

Links: a wired LAN, Wi-Fi and a cellular uplink, each a fixed round trip plus uniform jitter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pice_gateway.placement.rate import RateCurve

CPU_SINGLE_RATE = 22.4  # tok/s, one sequence, bare llama_decode (docs/benchmarks-edge.md)
CPU_ALPHA = 1.0 / 3.0  # 8 sequences = 2.41× one


@dataclass(frozen=True)
class DeviceClass:
    name: str
    rate_ratio: float  # r1 relative to the Nano (memory bandwidth)
    ceiling_ratio: float  # r1/α relative to the Nano (TOPS)
    max_sequences: int

    def curve(self, scale: float = 1.0) -> RateCurve:
        alpha = CPU_ALPHA * self.rate_ratio / self.ceiling_ratio
        return RateCurve(single=CPU_SINGLE_RATE * self.rate_ratio * scale, alpha=alpha)


ORIN_NANO = DeviceClass("orin-nano", 1.0, 1.0, 8)
ORIN_NX = DeviceClass("orin-nx", 102.4 / 68.0, 100.0 / 40.0, 16)
AGX_ORIN = DeviceClass("agx-orin", 204.8 / 68.0, 275.0 / 40.0, 32)
DEVICES = {d.name: d for d in (ORIN_NANO, ORIN_NX, AGX_ORIN)}


@dataclass(frozen=True)
class Link:
    name: str
    rtt: float  # seconds, fixed part of the round trip
    jitter: float  # seconds, uniform [0, jitter) added to each round trip

    def round_trip(self, rng: random.Random) -> float:
        return self.rtt + rng.random() * self.jitter


LAN = Link("lan", 0.002, 0.002)
WIFI = Link("wifi", 0.02, 0.02)
CELLULAR = Link("cellular", 0.08, 0.06)
LINKS = {link.name: link for link in (LAN, WIFI, CELLULAR)}


@dataclass(frozen=True)
class EdgeProfile:
    name: str
    device: str
    curve: RateCurve
    max_sequences: int
    link: Link

    def capacity(self) -> float:
        """Tokens/s with every slot decoding: the edge's saturated throughput."""
        return self.curve.aggregate(self.max_sequences)


# Fleet mixes: device class shares, link shares.
HETEROGENEOUS = {"orin-nano": 0.5, "orin-nx": 0.3, "agx-orin": 0.2}
HOMOGENEOUS = {"orin-nx": 1.0}
LINK_MIX = {"lan": 0.4, "wifi": 0.4, "cellular": 0.2}


def _apportion(n: int, shares: dict[str, float]) -> list[str]:
    """``n`` names in the given shares (largest remainders), in a fixed order."""
    counts = {name: int(n * share) for name, share in shares.items()}
    by_remainder = sorted(shares, key=lambda name: n * shares[name] - counts[name], reverse=True)
    for name in by_remainder[: n - sum(counts.values())]:
        counts[name] += 1
    return [name for name in shares for _ in range(counts[name])]


def fleet(
    n: int,
    mix: dict[str, float],
    *,
    seed: int,
    links: dict[str, float] | None = None,
    slots: int | None = None,
) -> list[EdgeProfile]:
    """``n`` edges of the device ``mix`` (shares), ±10% speed each, links from ``links``;
    ``slots`` gives every edge that many sequences instead of its class's (the agent's own
    default, ``max_sequences: 16``, is what an edge runs unless its operator sizes it)."""
    rng = random.Random(seed)
    devices = _apportion(n, mix)
    link_names = _apportion(n, links or LINK_MIX)
    rng.shuffle(devices)
    rng.shuffle(link_names)
    profiles = []
    for i, (device, link) in enumerate(zip(devices, link_names, strict=True)):
        kind = DEVICES[device]
        scale = 1.0 + rng.uniform(-0.1, 0.1) if len(set(mix)) > 1 else 1.0
        max_sequences = slots or kind.max_sequences
        curve = kind.curve(scale)
        name = f"{device}-{i:03d}"
        profiles.append(EdgeProfile(name, device, curve, max_sequences, LINKS[link]))
    return profiles
