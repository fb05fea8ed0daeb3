#!/usr/bin/env bash
# Builds llama.cpp tools (CPU only) from the sources vendored in the llama-cpp-python 0.3.36
# sdist, and converts the default model to F32 (the values this project computes with: it
# dequantizes GGUF weights at load). Prints two lines: the folder of the built tools and the
# F32 model's path. Used by tests/scripts/llama_cpp_ppl.sh and scripts/bench-cpu.sh.
# Usage: tests/scripts/llama_cpp_build.sh WORKDIR TARGET...
# Needs cmake (Debian: apt-get install cmake), a C++ compiler and pip.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
assets=${FOCUS_ASSETS:-$root/.assets}
work=${1:?usage: llama_cpp_build.sh WORKDIR TARGET...}
shift
mkdir -p "$work" && cd "$work"
[ -f llama_cpp_python-0.3.36.tar.gz ] ||
  pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d . >&2
[ -d llama_cpp_python-0.3.36 ] || tar xzf llama_cpp_python-0.3.36.tar.gz
src=llama_cpp_python-0.3.36/vendor/llama.cpp
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DGGML_OPENMP=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
cmake --build "$src/build" -j2 --target llama-quantize "$@" >/dev/null
bin=$(pwd)/$src/build/bin
[ -f smollm2-f32.gguf ] || LD_LIBRARY_PATH=$bin "$bin/llama-quantize" --allow-requantize \
  "$assets/SmolLM2-135M-Instruct.Q4_1.gguf" smollm2-f32.gguf F32 >/dev/null
echo "$bin"
echo "$(pwd)/smollm2-f32.gguf"
