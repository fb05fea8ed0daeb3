#!/usr/bin/env bash
# Runs .ci/run as a new machine would: a fresh clone of HEAD, an empty cargo home (crates
# downloaded again), an empty target directory, empty pip, Mesa-shader and cubecl caches.
# Prints the time of each stage at the end; the full log is kept beside the summary.
#
#   scripts/ci-cold.sh [WORKDIR]     (default: a new directory under /tmp)
#
# FOCUS_CI_WARM=1 runs the same clone a second time with the caches it left (the warm
# figure). FOCUS_CI_CARGO_HOME keeps that cargo home (its downloaded crates) instead of an
# empty one; FOCUS_CI_TARGET names the (empty) target directory; FOCUS_CI_HOME_CACHES=1
# leaves the Mesa, cubecl and pip caches at their usual places under ~/.cache (which must
# then be empty for a cold figure), so that the machine's later CI runs start warm. The
# software-GPU packages, once installed by apt, stay installed: on a machine that already
# has them the software-gpu stage measures only the check.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d /tmp/focus-ci-cold.XXXXXX)}"
mkdir -p "$work"
[ -z "$(ls -A "$work")" ] || { echo "ci-cold: $work is not empty" >&2; exit 2; }

git clone -q "$root" "$work/clone"
mkdir -p "$work/cargo-home" "$work/cache"
# Keep the toolchain (rustup's proxies and binaries), drop the registry and git caches.
[ -d "$HOME/.cargo/bin" ] && ln -s "$HOME/.cargo/bin" "$work/cargo-home/bin"
cargo_home="${FOCUS_CI_CARGO_HOME:-$work/cargo-home}"
target="${FOCUS_CI_TARGET:-$work/target}"
if [ -d "$target" ] && [ -n "$(ls -A "$target")" ]; then
  echo "ci-cold: target directory $target is not empty" >&2
  exit 2
fi

run() { # label
  local label="$1" t0 rc=0
  t0=$(date +%s)
  (
    cd "$work/clone"
    export CARGO_HOME="$cargo_home" CARGO_TARGET_DIR="$target"
    if [ "${FOCUS_CI_HOME_CACHES:-0}" != 1 ]; then
      export XDG_CACHE_HOME="$work/cache" PIP_CACHE_DIR="$work/cache/pip" \
        MESA_SHADER_CACHE_DIR="$work/cache/mesa"
    fi
    bash .ci/run
  ) > "$work/$label.log" 2>&1 || rc=$?
  {
    echo "ci-cold: $label run of $(git -C "$work/clone" rev-parse --short HEAD), exit code $rc," \
      "$(( $(date +%s) - t0 )) s in all"
    grep -E '^== stage .*: [0-9]+ s' "$work/$label.log" || true
    grep -E '^tests( on [a-z]+)?: ' "$work/$label.log" || true
  } | tee "$work/$label.summary"
  return "$rc"
}
run cold
[ "${FOCUS_CI_WARM:-0}" = 1 ] && run warm
echo "ci-cold: logs in $work" >&2
