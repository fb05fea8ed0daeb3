#!/usr/bin/env bash
# The project's test command: formatting, lints and every test, in release, with the
# feature set CI uses (CPU `flex` plus the `vulkan`/`wgpu` GPU backends compiled in).
# Needs the assets: run scripts/fetch-assets.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/focus-target}"
FEATURES="${FOCUS_FEATURES:-focus-cli/vulkan,focus-tests/vulkan}"

cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets --features "$FEATURES" -- -D warnings
# The plain `wgpu` feature set (WGSL kernels, no CPU backend) must keep compiling too.
cargo clippy --release -p focus-cli -p focus-tests --all-targets --no-default-features \
  --features focus-cli/wgpu,focus-tests/wgpu -- -D warnings
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --release --workspace --features "$FEATURES" 2>&1 | tee "$log"
# One closing line for the whole run (cargo prints one per test binary).
count() { awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$1"; }
echo "tests: $(count "$log")"

# The GPU-backend pass: the tiny-model parity, FocusLLM fidelity and precision tests again on
# each device named in FOCUS_TEST_BACKENDS (e.g. "wgpu"; .ci/run sets it when it has installed
# a software driver). One test at a time (one GL context); minimal autotuning, which changes
# which kernels run, not what they compute.
for backend in ${FOCUS_TEST_BACKENDS:-}; do
  : > "$log"
  FOCUS_TEST_DEVICE="$backend" CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}" \
    cargo test --release --workspace --features "$FEATURES" --test integration -- \
    parity_tiny focus_fidelity precision --test-threads 1 2>&1 | tee "$log"
  echo "tests on $backend: $(count "$log")"
done
