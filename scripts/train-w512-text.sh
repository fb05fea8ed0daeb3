#!/usr/bin/env bash
# The second stage of the W = 512 run of docs/training.md: from the first stage's weights
# (scripts/train-w512.sh), longer text with the continuation objective and the window anchor
# (the memory must not disturb ordinary text), retrieval documents still 40 % of the mix.
# Usage: scripts/train-w512-text.sh RUN_DIR --init FIRST_STAGE_WEIGHTS   (a new run)
#        scripts/train-w512-text.sh RUN_DIR --resume                     (continue it exactly)
# The run folder belongs outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
run=$1
shift
focus=${FOCUS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/focus-target}/release/focus}
a=${FOCUS_ASSETS:-.assets}
exec "$focus" train --model "$a/SmolLM2-135M-Instruct.Q4_1.gguf" \
  --data "$a/books/lcet10.txt" "$a/books/plrabn12.txt" "$a/books/asyoulik.txt" "$a/essays" \
  --eval-data "$a/books/alice29.txt" --out "$run" \
  --local-window 512 --chunk-sizes 512 --rank 8 --lr 1e-3 --warmup 10 \
  --schedule constant --steps 3000 --batch 3 --seed 43 \
  --objective continuation --spans 2 --targets 4 --anchor 1 --min-len 1536 --max-len 4608 \
  --retrieval 0.4 --curriculum 0:16 --pool 64 --chunk-cache 100000 \
  --eval-every 20 --save-every 5 --eval-sequences 4 --probe-lengths 2k,4k "$@"
