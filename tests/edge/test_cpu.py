"""The AMX guard: which llama.cpp builds may use extra weight buffers (pure, no model)."""

from __future__ import annotations

from edge_agent.engine.cpu import choose_kernels, cpu_flags, system_features

# What llama_print_system_info() printed on the machines this project has run on.
AVX2_ONLY = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)
SAPPHIRE_RAPIDS = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | "
    "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)
AVX512_NO_AMX = SAPPHIRE_RAPIDS.replace("AMX_INT8 = 1 | ", "")


def test_features_are_read_from_the_system_info_line() -> None:
    features = system_features(SAPPHIRE_RAPIDS)
    assert {"AVX2", "AVX512", "AVX512_VNNI", "AMX_INT8", "REPACK"} <= features
    assert "SSE3" in features
    assert system_features("CPU : AVX = 0 | AVX2 = 1 |") == {"AVX2"}


def test_a_build_with_amx_loads_without_extra_buffers() -> None:
    choice = choose_kernels(SAPPHIRE_RAPIDS)
    assert choice.amx
    assert not choice.use_extra_buffers
    assert "AMX" in choice.reason
    assert "PICE_EDGE_ALLOW_AMX" in choice.reason


def test_builds_without_amx_keep_the_repacked_kernels() -> None:
    for info in (AVX2_ONLY, AVX512_NO_AMX):
        choice = choose_kernels(info)
        assert choice.use_extra_buffers, info
        assert not choice.amx


def test_allow_amx_turns_the_guard_off() -> None:
    assert choose_kernels(SAPPHIRE_RAPIDS, allow_amx=True).use_extra_buffers


def test_cpu_flags_keep_only_simd_features() -> None:
    cpuinfo = (
        "processor\t: 0\nflags\t\t: fpu vme avx avx2 fma avx512f avx512_vnni amx_tile "
        "amx_int8 sse4_2 ht\n\nprocessor\t: 1\nflags\t\t: fpu\n"
    )
    assert cpu_flags(cpuinfo) == {
        "avx",
        "avx2",
        "fma",
        "avx512f",
        "avx512_vnni",
        "amx_tile",
        "amx_int8",
        "sse4_2",
    }
    arm = cpu_flags("Features\t: fp asimd asimddp sve i8mm\n")
    assert arm == {"asimd", "asimddp", "sve", "i8mm"}
    assert cpu_flags("nothing here") == frozenset()
