#!/usr/bin/env bash
# The GPU kit: one lease of a GPU machine (no network, no Rust, 64 MiB a call, 8 files back)
# returns CUDA and Vulkan parity, warm figures and trained weights. docs/backends.md gives
# the exact sequence of calls.
#
#   scripts/gpu-check.sh prepare [--binaries DIR]
#       here: builds `focus` and the integration tests with both `cuda` and `vulkan` (no CPU
#       backend; its own target folder, ~/.cache/focus-gpu-target, so CI's cache is left
#       alone) and packs three folders, one for each call: gpu-dist/ (the binaries and the
#       Vulkan loader), gpu-model/ (the first part of the compressed default model) and
#       gpu-train/ (the rest of the model, its checksum and the texts training reads).
#       --binaries DIR packs DIR/focus and DIR/integration instead of building.
#   scripts/gpu-check.sh smoke      there, call 1 (carry gpu-dist): each backend in seconds
#   scripts/gpu-check.sh run        there, call 2 (carry gpu-model): parity and fidelity tests
#                                   and the training gradient check per backend, then the
#                                   benchmarks (random weights in the default model's shape:
#                                   throughput does not depend on the values), one process
#                                   per backend and dtype
#   scripts/gpu-train.sh            there, call 3 (carry gpu-train): training
#
# Every step has a time limit within KIT_LIMIT; results come back under $OUT in at most 8
# files, packed after each step (scripts/gpu-kit.sh). KIT_REHEARSAL=1 KIT_DEVICES=cpu runs
# the same on a machine without a GPU (scripts/gpu-rehearse.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/gpu-kit.sh
model_file=.assets/SmolLM2-135M-Instruct.Q4_1.gguf
mib=1048576

# Bytes of what every call carries anyway: the tracked files and the untracked ones git
# does not ignore.
tree_bytes() {
  { git ls-files -z; git ls-files -z -o --exclude-standard; } | xargs -0 -r stat -c %s -- \
    2>/dev/null | awk '{s += $1} END {print s + 0}'
}

prepare() {
  local bin=
  if [ "${1:-}" = --binaries ]; then
    bin=${2:?--binaries DIR}
  else
    export CARGO_TARGET_DIR="${FOCUS_GPU_TARGET:-$HOME/.cache/focus-gpu-target}"
    # cudarc's bindings for the CUDA the lent driver has (580: CUDA 13.0); newer bindings
    # ask the driver for functions it lacks.
    export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
    local features=focus-cli/cuda,focus-cli/vulkan,focus-tests/cuda,focus-tests/vulkan
    local build=(--profile dist -p focus-cli --bin focus -p focus-tests --test integration
      --no-default-features --features "$features")
    cargo build "${build[@]}"
    bin=$(mktemp -d)
    cp "$CARGO_TARGET_DIR/dist/focus" "$bin/focus"
    local tests
    tests=$(cargo test "${build[@]}" --no-run 2>&1 |
      sed -n 's/.*Executable tests\/main.rs (\(.*\))/\1/p')
    [ -x "$tests" ] || { echo "prepare: the integration test binary was not found" >&2; exit 2; }
    cp "$tests" "$bin/integration"
  fi
  [ -x "$bin/focus" ] && [ -x "$bin/integration" ] ||
    { echo "prepare: $bin must hold focus and integration" >&2; exit 2; }
  [ -f "$model_file" ] || { echo "prepare: $model_file missing: run scripts/fetch-assets.sh" >&2; exit 2; }
  # KIT_PACK_DIR: where the three folders go (the rehearsal packs apart from a real kit).
  local root=${KIT_PACK_DIR:-.}
  mkdir -p "$root"
  root=$(cd "$root" && pwd)
  cd "$root"
  rm -rf gpu-dist gpu-model gpu-train
  mkdir -p gpu-dist gpu-model gpu-train
  cd "$OLDPWD"
  # The two binaries share most of their code: one xz stream with a dictionary larger than
  # either finds it twice. KIT_XZ sets xz's preset (the rehearsal packs fast).
  local stage
  stage=$(mktemp -d)
  strip -o "$stage/focus" "$bin/focus"
  strip -o "$stage/integration" "$bin/integration"
  tar -C "$stage" -cf - focus integration |
    xz -T1 --lzma2=preset="${KIT_XZ:-9e}",dict=192MiB > "$root"/gpu-dist/bin.tar.xz
  rm -rf "$stage"
  local lib
  lib=$(ldconfig -p | awk '/libvulkan\.so\.1 / && !n++ {print $NF}')
  if [ -n "$lib" ]; then cp -L "$lib" "$root"/gpu-dist/libvulkan.so.1; else echo "prepare: no libvulkan.so.1 here; the machine's own is used" >&2; fi
  # The model (90 MB compressed) is read only by training: it comes in calls 2 and 3, cut
  # so that call 2 carries as much as one call can beside the working tree.
  tar -C .assets -cf - books essays | xz -T1 -9 > "$root"/gpu-train/texts.tar.xz
  local packed="$root"/gpu-model/model.xz tree first
  xz -T1 -"${KIT_XZ:-9e}" -c "$model_file" > "$packed"
  sha256sum "$model_file" | sed 's/ .*//' > "$root"/gpu-train/model.sha256
  tree=$(tree_bytes)
  first=$((64 * mib - tree - 256 * 1024))
  head -c "$first" "$packed" > "$root"/gpu-model/model.1
  tail -c +$((first + 1)) "$packed" > "$root"/gpu-train/model.2
  rm -f "$packed"
  local call n bytes over=0
  for call in 1:gpu-dist 2:gpu-model 3:gpu-train; do
    n=${call%%:*}
    bytes=$(( $(du -cb "$root/${call#*:}" | tail -1 | cut -f1) + tree ))
    echo "call $n (carry ${call#*:}): $((bytes / 1024)) KiB with the working tree's $((tree / 1024)) KiB"
    [ "$bytes" -le $((64 * mib)) ] || over=1
  done
  (cd "$root" && ls -l gpu-dist gpu-model gpu-train)
  [ "$over" = 0 ] || { echo "prepare: a call would carry more than 64 MiB" >&2; exit 2; }
}

# The device's ceilings for the roofline column (`focus bench --roofline`), per dtype:
# datasheet matrix rates (f32 runs as tf32 on the tensor cores), the copy bandwidth
# measured on such machines (KINDS.md of the device notes).
roofline() {
  local tf32 half gbps
  case "$KIT_GPU" in
    h200) tf32=494.7 half=989.4 gbps=4300 ;;
    h100) tf32=494.7 half=989.4 gbps=3000 ;;
    *) return 0 ;;
  esac
  if [ "$1" = f32 ]; then echo "--roofline $tf32,$gbps"; else echo "--roofline $half,$gbps"; fi
}

smoke() {
  kit_init
  kit_unpack
  kit_env
  local d
  for d in $KIT_DEVICES; do
    kit_step "smoke-$d" 120 focus -q bench --device "$d" --random smollm2-135m --prefill 128 \
      --decode none --modes full
  done
}

run() {
  kit_init
  kit_unpack
  kit_env
  local model=(--random smollm2-135m) shape=(--local-window 2048 --chunk 2048)
  local lens=512,2k,8k,32k,128k decode=8k,32k,128k repeat=4 tests=90 bench=90
  if [ "$KIT_REHEARSAL" = 1 ]; then
    model=(--model tests/fixtures/tiny-llama) shape=(--local-window 64 --chunk 64)
    lens=128,512 decode=256 repeat=2
  fi
  lens=${KIT_LENS:-$lens}
  # The tests first, each backend's f32 figures next, reduced precision last.
  local d t plan=()
  for d in $KIT_DEVICES; do plan+=("tests $d"); done
  for t in ${KIT_DTYPES:-f32 f16 bf16}; do
    for d in $KIT_DEVICES; do
      [ "$d" = vulkan ] && [ "$t" = bf16 ] && continue # the Vulkan device refuses bf16
      plan+=("bench $d $t")
    done
  done
  local step
  for step in "${plan[@]}"; do
    set -- $step
    if [ "$1" = tests ]; then
      local filters=(parity_tiny focus_fidelity precision training::gradients_equal)
      [ "$KIT_REHEARSAL" = 1 ] && filters=(parity_tiny::logits_match training::gradients_equal)
      kit_step "tests-$2" "$tests" env FOCUS_TEST_DEVICE="$2" CARGO_MANIFEST_DIR="$PWD/tests" \
        integration "${filters[@]}" --test-threads 1
    else
      # One process per backend and dtype: the first run of each shape (compilation and
      # autotuning) is reported apart, the warm figure is the median of the rest.
      kit_step "bench-$2-$3" "$bench" focus -q bench --device "$2" --dtype "$3" "${model[@]}" \
        "${shape[@]}" --prefill "$lens" --full-max 8k --decode "$decode" --decode-tokens 16 \
        --modes full,focus --batches 1,64 --repeat "$repeat" $(roofline "$3") \
        --json "$res/bench-$2-$3.json"
    fi
  done
}

case "${1:-}" in
  prepare) shift; prepare "$@" ;;
  smoke) smoke ;;
  run) run ;;
  *) echo "usage: $0 prepare [--binaries DIR] | smoke | run" >&2; exit 2 ;;
esac
