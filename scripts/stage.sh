# Sourced by .ci/run and scripts/test.sh: `stage NAME CMD...` runs CMD and prints one line
#   == stage NAME: 12 s (total 345 s since CI started)
# on stderr, whether CMD passes or fails (a failing stage then fails the script).
# FOCUS_CI_T0 carries the start time from .ci/run into scripts/test.sh.
export FOCUS_CI_T0="${FOCUS_CI_T0:-$(date +%s)}"
stage() {
  local name="$1" t0 rc=0
  shift
  t0=$(date +%s)
  echo "== stage $name: started" >&2
  "$@" || rc=$?
  local t1
  t1=$(date +%s)
  echo "== stage $name: $((t1 - t0)) s (total $((t1 - FOCUS_CI_T0)) s since CI started)$([ $rc = 0 ] || echo ", FAILED with exit code $rc")" >&2
  return $rc
}
