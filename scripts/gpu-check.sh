#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU, no network and no Rust registry.
#
#   scripts/gpu-check.sh prepare      # here: build `focus` and the integration-test binary with
#                                     # Vulkan, strip and compress them, bundle the Vulkan loader
#                                     # into gpu-dist/ (about 45 MB, under the 64 MiB limit)
#   scripts/gpu-check.sh run [OUT]    # there: parity tests on the GPU, then benchmarks;
#                                     # text, JSON and Markdown under OUT (default ./gpu-out)
#
# The model itself does not travel: the benchmarks use randomly initialised weights in the
# SmolLM2-135M and a 1B-class Llama shape (throughput does not depend on the values), and the
# tests use the tiny fixtures of tests/fixtures (against the transformers and Python
# references, f32, f16 and bf16 where the device has them). Every step has a time limit; all
# of them together stay under 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
dist=gpu-dist

case "${1:-}" in
prepare)
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/focus-target}"
  # The same command line as scripts/test.sh, so the build is shared with the tests.
  features=focus-cli/vulkan,focus-tests/vulkan
  cargo build --release --workspace --features "$features"
  tests=$(cargo test --release --workspace --features "$features" --test integration --no-run 2>&1 |
    sed -n 's/.*Executable tests\/main.rs (\(.*\))/\1/p')
  [ -x "$tests" ] || { echo "integration test binary not found" >&2; exit 2; }
  mkdir -p "$dist"
  rm -f "$dist"/focus* "$dist"/integration*
  strip -o "$dist/focus" "$CARGO_TARGET_DIR/release/focus"
  strip -o "$dist/integration" "$tests"
  xz -T2 -6 -f "$dist/focus" "$dist/integration"
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
  # What a `--features cuda` binary needs at run time (docs/backends.md): say what is missing.
  for lib in libcuda.so.1 libnvrtc.so; do
    where=$(ldconfig -p | awk -v l="$lib" '$1 ~ "^"l {print $NF; exit}')
    [ -z "$where" ] && where=$(ls /usr/local/cuda*/lib64/$lib* 2>/dev/null | head -1)
    echo "cuda: $lib ${where:-MISSING}" | tee -a "$out/env.txt"
  done
  hdr=$(ls /usr/local/cuda*/include/cuda_fp16.h /usr/include/cuda_fp16.h 2>/dev/null | head -1)
  echo "cuda: cuda_fp16.h ${hdr:-MISSING}" | tee -a "$out/env.txt"
  for b in focus integration; do
    [ -x "$dist/$b" ] || { xz -dc "$dist/$b.xz" > "$dist/$b" && chmod +x "$dist/$b"; }
  done
  : > "$out/failures.txt"
  device="${GPU_CHECK_DEVICE:-vulkan}" # another device only to try the script itself
  # Every new tensor shape is compiled and autotuned on its first run; minimal autotuning keeps
  # that within the time budget (it may pick slower kernels than a full search would).
  export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"
  echo "CUBECL_AUTOTUNE_LEVEL=$CUBECL_AUTOTUNE_LEVEL" >> "$out/env.txt"
  # cubecl's environment database (autotune results, and compiled kernels with the cache on)
  # lives in the output folder, named after the GPU so that no other device's tuning is
  # served here, and starts from the copy a previous run brought back (gpu-cache/, in the
  # repository). It comes back with the results; commit it to start the next run warm.
  # Compiled kernels are keyed by the executable's build id and only help the same binary.
  mkdir -p "$out/cubecl"
  [ -f gpu-cache/h200.db ] && cp gpu-cache/h200.db "$out/cubecl/"
  printf '[environment]\nname = "h200"\npath = { directory = "%s" }\n\n[compilation]\ncache = true\n' \
    "$(cd "$out/cubecl" && pwd)" > cubecl.toml
  echo "cubecl environment: $out/cubecl/h200.db" >> "$out/env.txt"
  started=$SECONDS

  # 1. The tiny-model parity tests on the GPU: plain decoder and FocusLLM against the
  #    references (f32), and f16/bf16 against their bounds (skipped where unsupported).
  echo "== tests" >&2
  CARGO_MANIFEST_DIR="$PWD/tests" FOCUS_TEST_DEVICE="$device" timeout 90 "$dist/integration" \
      parity_tiny focus_fidelity precision --test-threads 1 > "$out/tests.txt" 2>&1 ||
    echo "tests failed or timed out ($?)" >> "$out/failures.txt"

  # 2. Benchmarks, each in its own process with a limit. `--repeat 2`: the first run compiles
  #    and autotunes every new shape, the second measures throughput.
  bench() {
    local name="$1" limit="$2"; shift 2
    echo "== $name" >&2
    timeout "$limit" "$dist/focus" bench --device "$device" --repeat 2 "$@" --json "$out/$name.json" \
        > "$out/$name.md" 2> "$out/$name.err" || echo "$name failed or timed out ($?)" >> "$out/failures.txt"
  }
  w=(--local-window 2048 --chunk 2048)
  # Batched against chunk by chunk first: the comparison the memory design rests on.
  bench smollm2-batching 80 --random smollm2-135m "${w[@]}" --prefill 8k,32k --decode none \
      --modes focus --batches 1,16
  bench smollm2-f32 110 --random smollm2-135m "${w[@]}" --prefill 2k,8k,32k --decode 8k \
      --decode-tokens 4 --modes full,focus --full-max 32k
  bench smollm2-f32-128k 50 --random smollm2-135m "${w[@]}" --prefill 128k --decode none \
      --modes focus --batches 64
  bench llama1b-f32 60 --random llama-1b "${w[@]}" --prefill 8k,32k --decode none \
      --modes full,focus --full-max 32k
  bench smollm2-f16 40 --random smollm2-135m --dtype f16 "${w[@]}" --prefill 8k,32k \
      --decode none --modes full,focus --full-max 32k
  bench smollm2-bf16 15 --random smollm2-135m --dtype bf16 "${w[@]}" --prefill 8k \
      --decode none --modes full,focus

  {
    echo "# GPU check ($(date -u +%F), $((SECONDS - started)) s)"
    echo; cat "$out/env.txt"
    echo; echo '## Tests'; echo; echo '```'; grep -E '^test |test result' "$out/tests.txt" || true; echo '```'
    for f in "$out"/*.md; do
      [ "$(basename "$f")" = summary.md ] && continue
      echo; echo "## $(basename "$f" .md)"; echo; cat "$f"
      if [ ! -s "$f" ]; then
        # Stopped by its limit: the rows it finished, as `focus bench` logged them.
        echo "Stopped before its table; rows measured:"; echo
        grep '^row ' "${f%.md}.err" | sed 's/^row /    /' || echo "    none"
      fi
    done
    echo; echo '## Failures'; echo; cat "$out/failures.txt"
  } > "$out/summary.md"
  cat "$out/summary.md"
  ;;
*)
  echo "usage: $0 prepare | run [OUT]" >&2; exit 2 ;;
esac
