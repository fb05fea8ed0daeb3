#!/usr/bin/env bash
# Before/after tables of docs/training.md: passkey retrieval at 2x, 4x, 8x and 16x the
# local window and perplexity on the held-out book, for FocusLLM with copied candidate
# projections, FocusLLM with trained ones, the truncated baseline and full attention.
# Usage: scripts/evaluate-training.sh WEIGHTS [W] [focus binary]
set -euo pipefail
cd "$(dirname "$0")/.."
weights=$1
w=${2:-256}
focus=${3:-target/release/focus}
assets=${FOCUS_ASSETS:-.assets}
out=docs/results
mkdir -p "$out"
lengths=$((2 * w)),$((4 * w)),$((8 * w)),$((16 * w))
common=(--local-window "$w" --chunk "$w" --trials 2 --depths 0,0.5,1 --lengths "$lengths")
"$focus" -q passkey "${common[@]}" --modes focus,truncated,full \
  --json "$out/train-passkey-copied.json" --heatmap "$out/train-passkey-copied.png" \
  | tee "$out/train-passkey-copied.md"
"$focus" -q passkey "${common[@]}" --modes focus --focus-weights "$weights" \
  --json "$out/train-passkey-trained.json" --heatmap "$out/train-passkey-trained.png" \
  | tee "$out/train-passkey-trained.md"
ppl=(--local-window "$w" --chunk "$w" --length "$lengths" --score 32 --windows 2)
"$focus" -q ppl "$assets/books/alice29.txt" "${ppl[@]}" --modes focus,truncated,full \
  --json "$out/train-ppl-copied.json" | tee "$out/train-ppl-copied.md"
"$focus" -q ppl "$assets/books/alice29.txt" "${ppl[@]}" --modes focus --focus-weights "$weights" \
  --json "$out/train-ppl-trained.json" | tee "$out/train-ppl-trained.md"
