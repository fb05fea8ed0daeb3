#!/usr/bin/env bash
# Reference perplexities from llama.cpp for tests/fixtures/llama-cpp-ppl.json.
#
# Builds llama.cpp's `llama-perplexity` (tests/scripts/llama_cpp_build.sh: the llama-cpp-python
# 0.3.36 sdist, CPU only, the default model converted to F32) and scores the first 8 chunks
# of 512 tokens of alice29.txt on the F32 and the Q4_1 file.
# Usage: tests/scripts/llama_cpp_ppl.sh [WORKDIR]   (needs cmake, a C++ compiler, pip)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
assets=${FOCUS_ASSETS:-$here/../../.assets}
{ read -r bin; read -r f32; } < <("$here/llama_cpp_build.sh" "${1:-/tmp/llama-cpp-ref}" llama-perplexity)
export LD_LIBRARY_PATH=$bin
for m in "$f32" "$assets/SmolLM2-135M-Instruct.Q4_1.gguf"; do
  echo "== $m"
  "$bin/llama-perplexity" -m "$m" -f "$assets/books/alice29.txt" -c 512 -b 512 --chunks 8 -t 2 2>&1 \
    | grep -E '^\[1\]|Final estimate'
done
