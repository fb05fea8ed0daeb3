#!/usr/bin/env bash
# The GPU kit's training call (docs/backends.md): continues the shipped candidate weights
# with the `--stop` stage of scripts/train-w512.sh on the GPU, for as many steps as fit in
# KIT_LIMIT seconds, a checkpoint every 2 steps; the run folder (the last checkpoint's
# weights, the optimizer state, the log) comes back as train.tar.xz in $OUT, also when the
# limit stops the run. A run folder left by an earlier call on the same machine is resumed.
#   scripts/gpu-train.sh            (call 3, carry gpu-train; after scripts/gpu-check.sh smoke
#                                   and run on the same machine)
# KIT_REHEARSAL=1 KIT_DEVICES=cpu trains the tiny model a few steps instead.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/gpu-kit.sh
kit_init
kit_unpack
kit_env
device=${KIT_DEVICES%% *}
[ -n "$device" ] || { echo "gpu-train: no usable device (env.txt)" >&2; exit 2; }
run=$work/train-out
resume=()
[ -f "$run/checkpoint/state.json" ] && resume=(--resume)
if [ "$KIT_REHEARSAL" = 1 ]; then
  [ ${#resume[@]} = 0 ] && resume=(--init tests/fixtures/tiny-focus-candidates.safetensors)
  kit_step train "$(kit_left)" focus -q train --device "$device" --model tests/fixtures/tiny-llama \
    --data "$work/assets/books/lcet10.txt" --out "$run" --local-window 64 --chunk-sizes 32 \
    --prompt-cap 32 --min-len 200 --max-len 400 --batch 1 --steps 3 --save-every 1 \
    --eval-every 0 "${resume[@]}"
else
  [ -n "$KIT_MODEL" ] || { echo "gpu-train: no model: call 2 carries gpu-model, this call gpu-train" >&2; exit 2; }
  [ ${#resume[@]} = 0 ] && resume=(--init assets/smollm2-135m-focus-w512-r8.safetensors)
  kit_step train "$(kit_left)" env FOCUS_BIN="$work/bin/focus" FOCUS_ASSETS="$work/assets" \
    scripts/train-w512.sh --stop "$run" --device "$device" "${resume[@]}"
fi
