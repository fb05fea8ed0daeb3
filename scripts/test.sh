#!/usr/bin/env bash
# The project's test command: formatting, lints and every test, in release, with the
# feature set CI uses (CPU `flex` plus the `vulkan`/`wgpu` GPU backends compiled in).
# Needs the assets: run scripts/fetch-assets.sh first. Each stage prints its elapsed time.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/stage.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/focus-target}"
FEATURES="${FOCUS_FEATURES:-focus-cli/vulkan,focus-tests/vulkan}"

stage fmt cargo fmt --all -- --check
stage clippy cargo clippy --release --workspace --all-targets --features "$FEATURES" -- -D warnings
# The plain `wgpu` feature set (WGSL kernels, no CPU backend) must keep compiling too.
stage clippy-wgpu cargo clippy --release -p focus-cli -p focus-tests --all-targets \
  --no-default-features --features focus-cli/wgpu,focus-tests/wgpu -- -D warnings
stage build cargo test --release --workspace --features "$FEATURES" --no-run

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# Each output line stamped with the seconds since the stage began, so a slow test shows.
stamp() { local t0=$SECONDS l; while IFS= read -r l; do printf '[%4d s] %s\n' $((SECONDS - t0)) "$l"; done; }
# One closing line for the whole run (cargo prints one per test binary).
count() {
  awk '/test result:/ { sub(/.*test result: [a-zA-Z]+\. /, ""); p += $1; f += $3 }
       END { printf "%d passed, %d failed\n", p, f }' "$1"
}
cpu_tests() {
  local rc=0
  cargo test --release --workspace --features "$FEATURES" 2>&1 | stamp | tee "$log" || rc=$?
  echo "tests: $(count "$log")"
  return "$rc"
}
stage test-cpu cpu_tests

# The GPU-backend pass: the tiny-model parity, FocusLLM fidelity and precision tests again on
# each device named in FOCUS_TEST_BACKENDS (e.g. "wgpu"; .ci/run sets it when it has installed
# a software driver). One test at a time (one GL context); minimal autotuning, which changes
# which kernels run, not what they compute. A time limit keeps a slow software driver from
# eating the CI budget: past it the stage fails and says so.
gpu_limit="${FOCUS_GPU_STAGE_LIMIT:-1200}"
gpu_tests() {
  local backend="$1" rc=0
  : > "$log"
  FOCUS_TEST_DEVICE="$backend" CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}" \
    timeout --signal=KILL "$gpu_limit" \
    cargo test --release --workspace --features "$FEATURES" --test integration -- \
    parity_tiny focus_fidelity precision --test-threads 1 2>&1 | stamp | tee "$log" || rc=$?
  echo "tests on $backend: $(count "$log")"
  if [ "$rc" = 137 ] || [ "$rc" = 124 ]; then
    echo "test.sh: the $backend pass ran past its limit of $gpu_limit s (FOCUS_GPU_STAGE_LIMIT);" \
      "kernel compilation on a cold software driver is the usual cause (docs/ci.md)" >&2
  fi
  return "$rc"
}
for backend in ${FOCUS_TEST_BACKENDS:-}; do
  stage "test-$backend" gpu_tests "$backend"
done
