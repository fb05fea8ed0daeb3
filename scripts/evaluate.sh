#!/usr/bin/env bash
# The measurements behind docs/evaluation.md: perplexity on the Canterbury books and
# passkey retrieval on the default model, FocusLLM (copied candidate projections) versus
# the truncated-context baseline and full attention. Results go to docs/results/.
# Usage: scripts/evaluate.sh [focus binary]   (about an hour on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
focus=${1:-target/release/focus}
assets=${FOCUS_ASSETS:-.assets}
out=docs/results
mkdir -p "$out"
w=512
"$focus" -q ppl "$assets/books/lcet10.txt" "$assets/books/plrabn12.txt" \
  --local-window $w --chunk $w --length 2k,8k,32k --score 64 --windows 1 \
  --json "$out/ppl-books-w$w.json" | tee "$out/ppl-books-w$w.md"
"$focus" -q passkey --local-window $w --chunk $w --lengths 1k,2k,4k,8k,16k \
  --depths 0,0.5,1 --trials 1 --json "$out/passkey-w$w.json" \
  --heatmap "$out/passkey-w$w.png" | tee "$out/passkey-w$w.md"
"$focus" -q passkey --local-window $w --chunk $w --lengths 32k --depths 0.5 \
  --modes focus,truncated --json "$out/passkey-32k-w$w.json" | tee "$out/passkey-32k-w$w.md"
