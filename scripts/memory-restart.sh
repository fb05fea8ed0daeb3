#!/usr/bin/env bash
# A document memory across a restart, measured on the default model at W = S = 2048: a
# 32K-token document (the start of a Canterbury book) asked about twice as a chat, each time
# by a new `focus generate` process sharing one --memory-dir; the second conversation has
# another system prompt and another question. Prints the two reads' prefill times, their
# ratio and the share of the second read's chunks found in the store, and writes the two
# JSON reports to OUT.
#   scripts/memory-restart.sh OUT [TOKENS]     (TOKENS: the document's length, default 32768)
# Run it on an otherwise idle machine: it measures time.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: $0 OUT [TOKENS]}
tokens=${2:-32768}
focus=${FOCUS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/focus-target}/release/focus}
a=${FOCUS_ASSETS:-.assets}
mkdir -p "$out"
store="$out/store"
rm -rf "$store"
# About 4.6 characters per token in this book under SmolLM2's tokenizer; the reports give
# the exact counts.
head -c $((tokens * 46 / 10)) "$a/books/lcet10.txt" > "$out/doc.txt"
ask() { # system prompt, question, report
  { cat "$out/doc.txt"; printf '\n\nQuestion: %s' "$2"; } > "$out/prompt.txt"
  "$focus" -q generate --chat --system "$1" --prompt-file "$out/prompt.txt" \
    --focus-weights assets/smollm2-135m-focus-w512-r8.safetensors \
    --local-window 2048 --chunk 2048 --max-new-tokens 4 --memory-dir "$store" \
    --format json > "$3"
}
ask "You are a helpful assistant." "What is this text about?" "$out/first.json"
ask "Answer in one short sentence, please." "Who wrote it?" "$out/second.json"
python3 - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
first, second = (json.load(open(f"{out}/{n}.json")) for n in ("first", "second"))
for name, r in (("first", first), ("second", second)):
    p, s = r["plan"], r["store"]
    print(f"{name}: {p['input_tokens']} tokens, {p['chunks']} chunks, prefill "
          f"{r['timings']['prefill_s']:.1f} s; store hits {s['hits']}, misses {s['misses']}, "
          f"writes {s['writes']}, read for their first rows {s['prefix_hits']} "
          f"({s['prefix_tokens']} rows)")
ratio = first["timings"]["prefill_s"] / second["timings"]["prefill_s"]
s, chunks = second["store"], second["plan"]["chunks"]
# The second read's own system turn is a chunk of its own; the document's last, partial chunk
# ends where the window begins, which moves with the question, and is computed from the
# stored one's first rows.
found = s["hits"] + s["prefix_hits"]
print(f"second read {ratio:.2f}x faster; {found} of its {chunks} chunks "
      f"({100 * found / chunks:.0f} %) from the store ({s['hits']} whole, "
      f"{s['prefix_hits']} from a stored chunk's first rows), "
      f"{s['misses'] - s['prefix_hits']} computed whole")
EOF
