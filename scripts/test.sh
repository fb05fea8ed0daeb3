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
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --release --workspace --features "$FEATURES" 2>&1 | tee "$log"
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
