#!/usr/bin/env bash
# Install llama-cpp-python into a virtual environment, built for this CPU but never with
# llama.cpp's AMX kernels, and rebuild it whenever the build flags or the CPU change.
#
#   bash scripts/install-llama-cpp.sh [VENV]          (default VENV: .venv)
#
# Why: llama.cpp's AMX path (the "extra buffer type" that repacks weights for AMX tiles)
# segfaults on the first decode on Sapphire/Emerald/Granite Rapids (upstream issues #20824,
# #11115). GGML_NATIVE compiles with -march=native, which turns AMX on wherever the build
# machine has it, and -DGGML_AMX_*=OFF does not stop it. GCC lets an explicit -mno-<isa> win
# over -march, so -mno-amx-* in the compiler flags removes AMX and keeps every other feature
# the machine has (AVX-512, VNNI, AVX2). The edge engine also refuses AMX at load time
# (edge_agent/engine/cpu.py), for wheels built elsewhere.
#
# pip caches a built wheel per sdist, whatever CMAKE_ARGS were, so a wheel built with other
# flags (or on another CPU: -march=native wheels are not portable) would be reused silently.
# Wheels are therefore built with pip's cache off into a wheelhouse keyed by
# (version, flags, CPU features, Python), and the venv records the key it was installed from.
#
# Environment: PICE_LLAMA_CMAKE_ARGS (extra CMake arguments, e.g. -DGGML_CUDA=on on an Orin),
# PICE_WHEELHOUSE (default ~/.cache/pice/wheels), PICE_LLAMA_ALLOW_AMX=1 (build with AMX again,
# once upstream has fixed it).
set -euo pipefail

VENV="${1:-.venv}"
PY="$VENV/bin/python"
VERSION="$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml | head -n 1)"
[[ -n "$VERSION" ]] || { echo "error: no llama-cpp-python pin in pyproject.toml" >&2; exit 1; }

cmake_args="${PICE_LLAMA_CMAKE_ARGS:-}"
if [[ "$(uname -m)" == "x86_64" && "${PICE_LLAMA_ALLOW_AMX:-0}" != "1" ]]; then
    no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    cmake_args="-DCMAKE_C_FLAGS='$no_amx' -DCMAKE_CXX_FLAGS='$no_amx' $cmake_args"
fi

# The CPU features -march=native would pick up; a wheel built for one set is not for another.
cpu_features="$(grep -m1 -o -w -E 'sse4_2|avx|avx2|fma|f16c|bmi2|avx_vnni|avx512[a-z0-9_]*|amx[a-z0-9_]*|asimd[a-z0-9]*|sve[0-9]*|i8mm' /proc/cpuinfo 2>/dev/null | sort -u | tr '\n' ' ' || true)"
[[ -n "$cpu_features" ]] || cpu_features="$(grep -m1 -i -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || uname -m)"
py_tag="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
key="$(printf '%s\n' "$VERSION" "$cmake_args" "$cpu_features" "$py_tag" "$(uname -m)" | sha256sum | cut -c1-16)"
stamp="$VENV/.llama-cpp-build"

if [[ -f "$stamp" && "$(head -n 1 "$stamp")" == "$key" ]] && "$PY" -c 'import llama_cpp' 2>/dev/null; then
    exit 0
fi

wheelhouse="${PICE_WHEELHOUSE:-$HOME/.cache/pice/wheels}/llama-cpp-python-$VERSION-$key"
if ! compgen -G "$wheelhouse/llama_cpp_python-*.whl" >/dev/null; then
    echo "building llama-cpp-python==$VERSION for this CPU (about 6 minutes on 2 cores)"
    echo "  CMAKE_ARGS: $cmake_args"
    rm -rf "$wheelhouse.partial"
    mkdir -p "$wheelhouse.partial"
    CMAKE_ARGS="$cmake_args" "$PY" -m pip wheel --no-deps --no-cache-dir \
        --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -w "$wheelhouse.partial"
    rm -rf "$wheelhouse"
    mv "$wheelhouse.partial" "$wheelhouse"
fi
echo "installing llama-cpp-python==$VERSION from $wheelhouse"
"$PY" -m pip install --quiet --force-reinstall --no-deps "$wheelhouse"/llama_cpp_python-*.whl
"$PY" -m pip install --quiet "$wheelhouse"/llama_cpp_python-*.whl  # its dependencies
printf '%s\nversion=%s\ncmake_args=%s\ncpu=%s\n' "$key" "$VERSION" "$cmake_args" "$cpu_features" >"$stamp"
