#!/usr/bin/env bash
# The GPU kit rehearsed without a GPU (docs/backends.md): the same scripts, packing and
# call sequence as a lease, on the CPU device with the tiny model, using the binaries the
# test build already made (no second build). Each "call" runs in a fresh copy of the
# working tree, as the device tool sends it, with the folder that call carries; the
# "machine" keeps gpu-work/ between calls, as a warm one does. Checks that every call
# returns at most 8 plain files, that the tests pass, that the benchmarks and the training
# return their results, and (without --quick) that a call killed at its limit still returns
# what it finished.
#   scripts/gpu-rehearse.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/focus-target}"
FEATURES="${FOCUS_FEATURES:-focus-cli/vulkan,focus-tests/vulkan}"
quick=0
[ "${1:-}" = --quick ] && quick=1
tmp=$(mktemp -d)
[ -n "${GPU_REHEARSE_KEEP:-}" ] || trap 'rm -rf "$tmp"' EXIT
fail() { echo "gpu-rehearse: $*" >&2; exit 1; }

# The build scripts/test.sh made (cargo only prints where it is).
mkdir -p "$tmp/bin"
cp "$CARGO_TARGET_DIR/release/focus" "$tmp/bin/focus"
tests=$(cargo test --release --workspace --features "$FEATURES" --no-run 2>&1 |
  sed -n 's/.*Executable tests\/main.rs (\(.*deps\/integration-[0-9a-f]*\))/\1/p' | sed -n 1p)
[ -x "$tests" ] || fail "the integration test binary was not found"
cp "$tests" "$tmp/bin/integration"

export KIT_REHEARSAL=1 KIT_DEVICES=cpu KIT_XZ=${KIT_XZ:-0}
KIT_PACK_DIR=$tmp/pack scripts/gpu-check.sh prepare --binaries "$tmp/bin" | tail -3

# A machine: the working tree as a call sends it (tracked files and untracked ones git does
# not ignore) with the carried folder; gpu-work/ stays from the call before.
machine=$tmp/machine
mkdir -p "$machine"
call() {
  local carry=$1 limit=$2 n=$3 out=$tmp/out-$3
  shift 3
  { git ls-files -z; git ls-files -z -o --exclude-standard; } |
    tar --null -T - -cf - | tar -C "$machine" -xf -
  cp -r "$tmp/pack/$carry" "$machine/"
  mkdir -p "$out"
  local rc=0 pid
  (cd "$machine" && OUT=$out KIT_LIMIT=$limit exec setsid "$@") > "$tmp/call.log" 2>&1 &
  pid=$!
  if [ -n "${KILL_WHEN:-}" ]; then
    # As the tool stops a command at its limit: SIGKILL to the whole group, no trap runs.
    while kill -0 "$pid" 2>/dev/null && [ ! -e "$machine/$KILL_WHEN" ]; do sleep 0.05; done
    sleep 0.5
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  wait "$pid" || rc=$?
  local files
  files=$(find "$out" -type f | wc -l)
  [ "$files" -le 8 ] || fail "call $n returned $files files (at most 8 come back)"
  find "$out" -type f | grep -v '/[A-Za-z0-9._-]*$' > /dev/null && fail "call $n: a file name that does not come back"
  [ -f "$out/summary.md" ] || { cat "$tmp/call.log" >&2; fail "call $n returned no summary.md"; }
  echo "call $n ($*): exit $rc, $files files: $(cd "$out" && ls | tr '\n' ' ')"
  last_rc=$rc
}
# A file of a call's results (read whole, so that a check's early exit cannot cut the pipe).
results() { tar -xJOf "$tmp/out-$1/results.tar.xz" "results/$2"; }

call gpu-dist 120 1 scripts/gpu-check.sh smoke
grep -q 'smoke-cpu: .* exit 0' <<< "$(results 1 steps.txt)" || fail "the smoke test failed: $(results 1 smoke-cpu.log | tail -3)"
call gpu-model 300 2 env KIT_DTYPES=f32 scripts/gpu-check.sh run
grep -q 'test result: ok. [1-9]' <<< "$(results 2 tests-cpu.log)" || fail "the tests failed on the CPU: $(results 2 tests-cpu.log | tail -5)"
grep -q '"tokens_per_s"' <<< "$(results 2 bench-cpu-f32.json)" || fail "no benchmark rows"
call gpu-train 120 3 scripts/gpu-train.sh
listing=$(tar -tJf "$tmp/out-3/train.tar.xz")
grep -q 'train-out/checkpoint/candidates.safetensors' <<< "$listing" ||
  fail "training returned no checkpoint: $(results 3 train.log | tail -5)"
if [ "$quick" = 0 ]; then
  # Killed at its limit (SIGKILL, no trap runs) while benchmarking: the steps finished before
  # still come back.
  rm -rf "$machine/gpu-work/results"
  KILL_WHEN=gpu-work/results/bench-cpu-f32.log
  call gpu-model 600 4 env KIT_LENS=128,512,64k scripts/gpu-check.sh run
  [ "$last_rc" = 137 ] || fail "call 4 ended (exit $last_rc) before it could be killed"
  grep -q 'tests-cpu: .* exit 0' <<< "$(results 4 steps.txt)" || fail "a killed call lost its finished steps"
fi
cat "$tmp/out-2/summary.md"
echo "gpu-rehearse: passed"
