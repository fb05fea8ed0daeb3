#!/usr/bin/env bash
# Reference perplexities from llama.cpp for tests/fixtures/llama-cpp-ppl.json.
#
# Builds llama.cpp's `llama-perplexity` and `llama-quantize` from the sources vendored in
# the llama-cpp-python 0.3.36 sdist (CPU only), converts the default model to F32 (the
# same values this project computes with, since it dequantizes GGUF weights at load),
# and scores the first 8 chunks of 512 tokens of alice29.txt on both files.
# Usage: tests/scripts/llama_cpp_ppl.sh [WORKDIR]   (needs cmake, a C++ compiler, pip)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
assets=${FOCUS_ASSETS:-$root/.assets}
work=${1:-/tmp/llama-cpp-ref}
mkdir -p "$work" && cd "$work"
[ -f llama_cpp_python-0.3.36.tar.gz ] || pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d .
[ -d llama_cpp_python-0.3.36 ] || tar xzf llama_cpp_python-0.3.36.tar.gz
src=llama_cpp_python-0.3.36/vendor/llama.cpp
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DGGML_OPENMP=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
cmake --build "$src/build" -j2 --target llama-perplexity llama-quantize >/dev/null
bin=$src/build/bin
export LD_LIBRARY_PATH=$bin
q41=$assets/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f smollm2-f32.gguf ] || "$bin/llama-quantize" --allow-requantize "$q41" smollm2-f32.gguf F32 >/dev/null
for m in smollm2-f32.gguf "$q41"; do
  echo "== $m"
  "$bin/llama-perplexity" -m "$m" -f "$assets/books/alice29.txt" -c 512 -b 512 --chunks 8 -t 2 2>&1 \
    | grep -E '^\[1\]|Final estimate'
done
