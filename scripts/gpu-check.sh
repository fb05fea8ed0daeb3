#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU, no network and no Rust registry.
#
#   scripts/gpu-check.sh prepare      # here: build `focus` with Vulkan, strip it, bundle the
#                                     # Vulkan loader into gpu-dist/ (under 64 MiB)
#   scripts/gpu-check.sh run [OUT]    # there: benchmarks and a CPU-vs-GPU agreement check,
#                                     # JSON and Markdown under OUT (default ./gpu-out)
#
# The model itself does not travel: the benchmarks use randomly initialised weights in the
# SmolLM2-135M and a 1B-class Llama shape (throughput does not depend on the values), and the
# agreement check uses the tiny fixture model from tests/fixtures. Budget: under 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
dist=gpu-dist

case "${1:-}" in
prepare)
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/focus-target}"
  cargo build --release -p focus-cli --features vulkan
  mkdir -p "$dist"
  # The stripped binary is about 100 MB; compressed it travels within the 64 MiB limit.
  rm -f "$dist/focus" "$dist/focus.xz"
  strip -o "$dist/focus" "$CARGO_TARGET_DIR/release/focus"
  xz -T2 -6 -f "$dist/focus"
  lib=$(ldconfig -p | awk '/libvulkan.so.1 / {print $NF; exit}')
  [ -n "$lib" ] || { echo "libvulkan.so.1 not found: apt-get install libvulkan1" >&2; exit 2; }
  cp -L "$lib" "$dist/libvulkan.so.1"
  du -sh "$dist"
  ;;
run)
  out="${2:-${OUT:-gpu-out}}"
  mkdir -p "$out"
  export LD_LIBRARY_PATH="$PWD/$dist${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # Headless containers: the GLX-based manifest the driver installs refuses to create an
  # instance without a display, so point the loader at the EGL library instead.
  if [ -z "${VK_ICD_FILENAMES:-}" ]; then
    drv=$(ldconfig -p | awk '/libEGL_nvidia.so.0 / {print $NF; exit}')
    if [ -n "$drv" ]; then
      printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3"}}\n' "$drv" > "$out/nvidia_egl_icd.json"
      export VK_ICD_FILENAMES="$out/nvidia_egl_icd.json"
    fi
  fi
  echo "VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-unset}" | tee "$out/env.txt"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >> "$out/env.txt" 2>&1 || true
  f="$dist/focus"
  [ -x "$f" ] || { xz -dc "$dist/focus.xz" > "$f" && chmod +x "$f"; }
  run() { local name="$1" limit="$2"; shift 2; echo "== $name" >&2; timeout "$limit" "$f" bench "$@" --json "$out/$name.json" > "$out/$name.md" 2> "$out/$name.err" || echo "$name failed ($?)" >> "$out/failures.txt"; }
  timeout 40 "$f" -q generate --device vulkan --model tests/fixtures/tiny-llama --prompt-ids tests/fixtures/agree-ids.json \
      --local-window 32 --chunk 16 --max-new-tokens 8 --format json > "$out/agree-vulkan.json" 2> "$out/agree-vulkan.err" || true
  timeout 40 "$f" -q generate --device cpu --model tests/fixtures/tiny-llama --prompt-ids tests/fixtures/agree-ids.json \
      --local-window 32 --chunk 16 --max-new-tokens 8 --format json > "$out/agree-cpu.json" 2> "$out/agree-cpu.err" || true
  run smollm2-f32 200 --device vulkan --random smollm2-135m --local-window 2048 --chunk 2048 \
      --prefill 2k,8k,32k --decode 8k --decode-tokens 8 --full-max 32k
  run smollm2-f32-128k 60 --device vulkan --random smollm2-135m --local-window 2048 --chunk 2048 \
      --prefill 128k --decode none --modes focus
  run batch1 50 --device vulkan --random smollm2-135m --local-window 2048 --chunk 2048 --batch 1 \
      --prefill 32k --decode none --modes focus
  run llama1b-f32 80 --device vulkan --random llama-1b --local-window 2048 --chunk 2048 \
      --prefill 8k,32k --decode none --full-max 32k
  run smollm2-bf16 50 --device vulkan --dtype bf16 --random smollm2-135m --local-window 2048 --chunk 2048 \
      --prefill 8k,32k --decode none --full-max 32k
  ls -la "$out"
  ;;
*)
  echo "usage: $0 prepare | run [OUT]" >&2; exit 2 ;;
esac
