#!/usr/bin/env bash
# The project's test command: formatting, lints, API docs and every test, in release, with the
# feature set CI uses (CPU `flex` plus the `vulkan`/`wgpu` GPU backends compiled in).
# Needs the assets: run scripts/fetch-assets.sh first. Each stage prints its elapsed time.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/stage.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/focus-target}"
FEATURES="${FOCUS_FEATURES:-focus-cli/vulkan,focus-tests/vulkan}"

# The pinned Python packages of the client tests (the `openai` package); without network the
# tests that need them are skipped with a note (in CI they fail instead).
stage python-env bash scripts/python-env.sh || echo "no Python client environment" >&2
stage fmt cargo fmt --all -- --check
stage clippy cargo clippy --release --workspace --all-targets --features "$FEATURES" -- -D warnings
# The plain `wgpu` feature set (WGSL kernels, no CPU backend) must keep compiling too.
stage clippy-wgpu cargo clippy --release -p focus-cli -p focus-tests --all-targets \
  --no-default-features --features focus-cli/wgpu,focus-tests/wgpu -- -D warnings
# API docs of the workspace's crates, with broken links and the like as errors.
stage doc env RUSTDOCFLAGS="-D warnings" cargo doc --release --workspace --no-deps --features "$FEATURES"
# CUDA (NVRTC, no LLVM; docs/backends.md) must keep compiling, though no GPU runs it here.
stage clippy-cuda cargo clippy --release -p focus-cli -p focus-tests --all-targets \
  --features focus-cli/cuda,focus-tests/cuda -- -D warnings
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

# The GPU kit (scripts/gpu-check.sh, docs/backends.md) rehearsed on the CPU with the tiny
# model and the binaries built above, so that the scripts a lease depends on cannot rot.
if [ -f .assets/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
  stage gpu-kit bash scripts/gpu-rehearse.sh --quick
elif [ "${FOCUS_REQUIRE_ASSETS:-0}" = 1 ]; then
  echo "test.sh: the GPU kit needs the fetched model (scripts/fetch-assets.sh)" >&2
  exit 1
else
  echo "test.sh: GPU kit rehearsal skipped: no fetched model" >&2
fi

# The GPU-backend pass: the tiny-model parity, FocusLLM fidelity and precision tests again on
# each device named in FOCUS_TEST_BACKENDS (e.g. "wgpu"; .ci/run sets it when it has installed
# a software driver), one test per process in the order below (most kernel paths first), with
# minimal autotuning (which changes which kernels run, not what they compute). Compiled
# shaders and autotune results persist outside the clone, so later tests and later runs skip
# what was compiled once. A cold software driver compiles slowly (docs/ci.md): the pass stops
# at FOCUS_GPU_STAGE_LIMIT seconds, or earlier when CI's own deadline comes
# (FOCUS_CI_DEADLINE seconds after CI started, so that a slow build elsewhere cannot push the
# whole run past its budget), says which tests it did not reach, and fails only on a failed
# test (or, with FOCUS_GPU_STRICT=1, also on a test not reached).
GPU_TESTS=(
  parity_tiny::logits_match
  focus_fidelity::logits_and_greedy_tokens_match_the_reference
  focus_fidelity::batched_and_one_by_one_decoding_agree
  parity_tiny::kv_cache_decoding_equals_full_recomputation
  focus_fidelity::input_within_the_window_is_the_plain_decoder
  focus_fidelity::chunk_caches_equal_a_fresh_forward_after_each_step
  parity_tiny::hidden_states_match_layer_by_layer
  parity_tiny::greedy_tokens_match
  parity_tiny::bf16_sharded_checkpoint_matches
  focus_fidelity::candidate_weights_round_trip_and_bad_files_are_errors
  precision::f16_logits_and_greedy_tokens
  precision::bf16_logits_and_greedy_tokens
)
gpu_tests() {
  local backend="$1" t0=$SECONDS passed=0 failed=0 rc name left
  local -a missed=()
  local gpu_limit="${FOCUS_GPU_STAGE_LIMIT:-720}"
  local until_deadline=$(( ${FOCUS_CI_DEADLINE:-2940} - ($(date +%s) - FOCUS_CI_T0) ))
  [ "$until_deadline" -lt "$gpu_limit" ] && gpu_limit=$(( until_deadline > 0 ? until_deadline : 0 ))
  for name in "${GPU_TESTS[@]}"; do
    left=$((gpu_limit - (SECONDS - t0)))
    if [ "$left" -lt 5 ]; then
      missed+=("$name")
      continue
    fi
    rc=0
    FOCUS_TEST_DEVICE="$backend" CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}" \
      timeout --signal=KILL "$left" \
      cargo test -q --release --workspace --features "$FEATURES" --test integration -- \
      --exact "$name" --test-threads 1 > "$log" 2>&1 || rc=$?
    if [ "$rc" = 0 ] && grep -q "1 passed" "$log"; then
      passed=$((passed + 1))
      echo "[$((SECONDS - t0)) s] $backend: $name ok"
    elif [ "$rc" = 137 ]; then
      missed+=("$name")
      echo "[$((SECONDS - t0)) s] $backend: $name stopped at the stage limit"
    else
      failed=$((failed + 1))
      cat "$log"
      echo "[$((SECONDS - t0)) s] $backend: $name FAILED"
    fi
  done
  echo "tests on $backend: $passed passed, $failed failed, ${#missed[@]} not reached"
  if [ "${#missed[@]}" -gt 0 ]; then
    echo "test.sh: the $backend pass reached its limit of $gpu_limit s (FOCUS_GPU_STAGE_LIMIT, FOCUS_CI_DEADLINE)" \
      "before: ${missed[*]}. A cold software driver compiles each kernel slowly; the shader" \
      "cache keeps what it compiled, so the next run gets further (docs/ci.md)." >&2
  fi
  [ "$failed" = 0 ] && { [ "${FOCUS_GPU_STRICT:-0}" = 0 ] || [ "${#missed[@]}" = 0 ]; }
}
for backend in ${FOCUS_TEST_BACKENDS:-}; do
  stage "test-$backend" gpu_tests "$backend"
done
