#!/usr/bin/env bash
# The W = 512 training run of docs/training.md: SmolLM2-135M-Instruct, rank-8 updates of the
# candidate projections.
#   first stage (default): mostly retrieval documents with a curriculum on the number of
#     chunks, plus text with both objectives;
#   --text (second stage, started with --init from the first stage's weights): longer text
#     with the continuation objective and the window anchor, 40 % retrieval documents;
#   --long (third stage, started with --init from the second stage's weights): text of 9 to 17
#     chunks, as many as the 8K perplexity windows hold, and the anchor at twice the weight;
#   --anneal (fourth stage, started with --init from the third stage's weights): the third
#     stage's mix on new draws, 12 steps with the learning rate falling linearly from 5e-4
#     to a tenth of it;
#   --anchor8 (started with --init from the third stage's weights): the same 12 steps from
#     1e-3, with the anchor at four times the third stage's weight;
#   --distill (started with --init from the --anchor8 weights, the asset of d64e4e3): 8 steps
#     from 1e-3 with the full-attention distillation at weight 8 in place of the window
#     anchor, and no held-out evaluation or probe (the 8K perplexity judges it);
#   --anchor16 (started with --init from the --anchor8 weights, the asset of d64e4e3): the
#     --anchor8 steps on new draws with the anchor at twice its weight, and no held-out
#     evaluation or probe;
#   --anchor32 (started with --init from the --anchor16 weights, the asset): the same on new
#     draws with the anchor doubled again;
#   --decoded (started with --init from the --anchor16 weights, the asset): the --anchor16
#     steps on new draws with each text example's targets after up to 124 decoded tokens,
#     the decoding steps the 128 scored tokens of the perplexity protocol reach;
#   --stop (started with --init from the --anchor16 weights, the asset): answers that end,
#     the retrieval documents supervising the full stop after each value, 60 % of the
#     sequences retrieval documents, the anchor at 16 on the text; a constant rate for as
#     many steps as the sittings allow (checkpoints every 2 steps, continued with --resume),
#     judged by the validation split's exact rate (`focus passkey`), not by its loss.
#   --straddle (started with --init from the --stop stage's step 138, the asset): the --stop
#     stage on new draws with 30 % of the pooled retrieval documents' statements cut
#     between two chunks, as a real input's chunking cuts a sentence wherever it falls.
#   --straddle128 (started with --init from the --straddle stage's step 22): the same on new
#     draws with the dynamic prompt capped at 128 tokens (`--prompt-cap 128`), the setting
#     the weights are then meant for (docs/training.md has the validation that chose it).
# Usage: scripts/train-w512.sh [--text|--long|--anneal|--anchor8|--distill|--anchor16|
#        --anchor32|--decoded|--stop|--straddle|--straddle128] RUN_DIR [extra focus train options, e.g.
#        --resume or --init F]
# The run folder belongs outside the clone; --resume continues it exactly, --init FILE starts
# a new run (fresh optimizer) from the weights an earlier one wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=(--chunk-sizes 128,256,512 --targets 4 --retrieval 0.75
  --curriculum 0:1,30:2,60:4,100:8,160:16 --max-span 192 --chunk-cache 200000 --eval-every 40
  --save-every 10)
# The later stages share everything but the seed, the anchor, the text lengths, the held-out
# evaluation, the checkpoint interval and the schedule; the 12-step stages differ only in the
# seed, the anchor, the peak rate and the held-out evaluation.
text=(--chunk-sizes 512 --objective continuation --spans 2 --targets 4 --retrieval 0.4
  --curriculum 0:16 --chunk-cache 100000)
long=(--min-len 5120 --max-len 9216 --eval-every 0)
sched=(--lr 1e-3 --warmup 10 --schedule constant --steps 3000)
short=(--warmup 2 --schedule linear --steps 12)
held_out=(--eval-sequences 4 --probe-lengths 2k,4k)
none=(--eval-sequences 0 --probe-lengths none)
# The anchor stages: the later stages' mix, 12 steps from 1e-3, the anchor at $1, the seed $2
# (and, for --stop, the share of retrieval documents $3 in place of 0.4 and a checkpoint every
# $4 steps in place of 4).
anchored() {
  stage=("${text[@]}" "${long[@]}" --anchor "$1" --seed "$2" --save-every "${4:-4}")
  [ -n "${3:-}" ] && stage=("${stage[@]/#0.4/$3}")
  sched=(--lr 1e-3 "${short[@]}")
}
case "${1:-}" in
  --text) shift; stage=("${text[@]}" --seed 43 --anchor 1 --min-len 1536 --max-len 4608
    --eval-every 20 --save-every 5) ;;
  --long) shift; stage=("${text[@]}" "${long[@]}" --anchor 2 --seed 44 --save-every 5) ;;
  --anneal) shift; stage=("${text[@]}" "${long[@]}" --anchor 2 --seed 45 --save-every 4)
    sched=(--lr 5e-4 "${short[@]}") ;;
  --anchor8) shift; anchored 8 46 ;;
  --distill) shift; stage=("${text[@]}" "${long[@]}" --anchor 0 --distill 8 --seed 47
    --save-every 4)
    sched=(--lr 1e-3 --warmup 2 --schedule linear --steps 8)
    held_out=("${none[@]}") ;;
  --anchor16) shift; anchored 16 48; held_out=("${none[@]}") ;;
  --anchor32) shift; anchored 32 49; held_out=("${none[@]}") ;;
  --decoded) shift; anchored 16 50; stage+=(--decoded 124); held_out=("${none[@]}") ;;
  --stop) shift; anchored 16 51 0.6 2
    sched=(--lr 1e-3 --warmup 2 --schedule constant --steps 400); held_out=("${none[@]}") ;;
  --straddle) shift; anchored 16 52 0.6 2; stage+=(--straddle 0.3)
    sched=(--lr 1e-3 --warmup 2 --schedule constant --steps 400); held_out=("${none[@]}") ;;
  --straddle128) shift; anchored 16 53 0.6 2; stage+=(--straddle 0.3 --prompt-cap 128)
    sched=(--lr 1e-3 --warmup 2 --schedule constant --steps 400); held_out=("${none[@]}") ;;
esac
run=$1
shift
focus=${FOCUS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/focus-target}/release/focus}
a=${FOCUS_ASSETS:-.assets}
exec "$focus" train --model "$a/SmolLM2-135M-Instruct.Q4_1.gguf" \
  --data "$a/books/lcet10.txt" "$a/books/plrabn12.txt" "$a/books/asyoulik.txt" "$a/essays" \
  --eval-data "$a/books/alice29.txt" --out "$run" \
  --local-window 512 --rank 8 "${sched[@]}" \
  --batch 3 --pool 64 "${held_out[@]}" "${stage[@]}" "$@"
