#!/usr/bin/env bash
# The test-split tables of a shipped candidate weights file (docs/evaluation.md: run once
# per shipped file, nothing chosen by them): passkey at 5K, 9K and about 32K (40 keys each:
# five depths, eight trials per depth) and 64K (10 keys), and the needle in the held-out
# book at 5K and 9K (40 keys each); FocusLLM beside the truncated window (the floor) and
# full attention (the ceiling, where the input fits the model's 8K positions), on the same
# keys. Exact and lenient scores with 95 % intervals; JSON, tables and heatmaps go to OUT.
# Also the perplexity of the held-out book at 4K and 8K (its last 4 windows, 128 tokens
# scored in each) for the three readings. On two CPU cores it takes many hours: every table
# is written as it completes, a table already written is not measured again, and a table
# stopped partway goes on from its journal (its finished trials, OUT/NAME.trials.jsonl).
# Usage: scripts/test-split.sh WEIGHTS OUT [W]   (W = S, default 512)
set -euo pipefail
cd "$(dirname "$0")/.."
weights=${1:?usage: scripts/test-split.sh WEIGHTS OUT [W]}
out=${2:?usage: scripts/test-split.sh WEIGHTS OUT [W]}
w=${3:-512}
[ -f "$weights" ] || { echo "test-split: $weights not found" >&2; exit 2; }
focus=${FOCUS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/focus-target}/release/focus}
a=${FOCUS_ASSETS:-.assets}
mkdir -p "$out"
common=(--model "$a/SmolLM2-135M-Instruct.Q4_1.gguf" --focus-weights "$weights"
  --local-window "$w" --chunk "$w" --split test)
five=(--depths 0.1,0.3,0.5,0.7,0.9 --trials 8)
# table NAME COMMAND ARGS...: one table, skipped when its JSON exists.
table() {
  local name=$1; shift
  [ -f "$out/$name.json" ] && { echo "test-split: $name done"; return 0; }
  "$focus" -q "$@" "${common[@]}" --json "$out/$name.json" --heatmap "$out/$name.png" \
    --journal "$out/$name.trials.jsonl" | tee "$out/$name.md"
}
table passkey-5k passkey --lengths 5k "${five[@]}"
table passkey-9k passkey --lengths 9k "${five[@]}" --modes focus,truncated
table niah-5k niah --lengths 5k "${five[@]}"
table niah-9k niah --lengths 9k "${five[@]}" --modes focus,truncated
if [ -f "$out/ppl.json" ]; then
  echo "test-split: ppl done"
else
  "$focus" -q ppl "$a/books/alice29.txt" --model "$a/SmolLM2-135M-Instruct.Q4_1.gguf" \
    --focus-weights "$weights" --local-window "$w" --chunk "$w" --length 4k,8k \
    --modes focus,truncated,full --json "$out/ppl.json" | tee "$out/ppl.md"
fi
table passkey-32k passkey --lengths 32k "${five[@]}" --modes focus,truncated
table passkey-64k passkey --lengths 64k --depths 0.1,0.3,0.5,0.7,0.9 --trials 2 \
  --modes focus,truncated
