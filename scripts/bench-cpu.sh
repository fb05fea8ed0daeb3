#!/usr/bin/env bash
# This project's decoder against llama.cpp on the CPU, side by side in one run: prefill of
# 512 and 2,048 tokens and decoding 32 tokens after 512, F32 weights (the default model, which
# this project dequantizes at load; llama.cpp reads it converted to F32), the same number of
# threads. llama.cpp's `llama-bench` is built from the llama-cpp-python 0.3.36 sdist
# (tests/scripts/llama_cpp_build.sh). Each figure is the median of REPS timed runs after a
# warm-up; the two programs alternate ROUNDS times, so a slow spell of the machine hits both.
# The machine must be idle: the script measures the CPU's idle share first and refuses below
# 90 % (FOCUS_BENCH_FORCE=1 runs anyway and says so in the result).
# Writes OUT/{llama-bench-N.json, focus-bench-N.json, summary.json, table.md}.
# Usage: scripts/bench-cpu.sh OUT [THREADS]   (defaults: THREADS 2, REPS 3, ROUNDS 2)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/bench-cpu.sh OUT [THREADS]}
threads=${2:-2}
reps=${REPS:-3}
rounds=${ROUNDS:-2}
focus=${FOCUS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/focus-target}/release/focus}
a=${FOCUS_ASSETS:-.assets}
mkdir -p "$out"
out=$(cd "$out" && pwd)
{ read -r bin; read -r f32; } < <(tests/scripts/llama_cpp_build.sh \
  "${LLAMA_CPP_WORK:-$HOME/.cache/llama-cpp-bench}" llama-bench)

# The idle share of all CPUs over 3 seconds, from /proc/stat.
idle_share() {
  local a b
  a=($(head -1 /proc/stat)); sleep 3; b=($(head -1 /proc/stat))
  local total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  echo $(( 100 * (b[4] + b[5] - a[4] - a[5]) / (total > 0 ? total : 1) ))
}
idle=$(idle_share)
echo "bench-cpu: CPU idle ${idle} % before the run" >&2
if [ "$idle" -lt 90 ] && [ "${FOCUS_BENCH_FORCE:-0}" != 1 ]; then
  echo "bench-cpu: the machine is busy (${idle} % idle); stop other work or set FOCUS_BENCH_FORCE=1" >&2
  exit 2
fi

for r in $(seq 1 "$rounds"); do
  echo "bench-cpu: round $r of $rounds: llama-bench" >&2
  LD_LIBRARY_PATH=$bin "$bin/llama-bench" -m "$f32" -t "$threads" -r "$reps" -o json \
    -p 512,2048 -n 0 > "$out/llama-bench-p-$r.json"
  LD_LIBRARY_PATH=$bin "$bin/llama-bench" -m "$f32" -t "$threads" -r "$reps" -o json \
    -p 0 -n 32 -d 512 > "$out/llama-bench-d-$r.json"
  echo "bench-cpu: round $r of $rounds: focus bench" >&2
  RAYON_NUM_THREADS=$threads "$focus" -q bench --model "$a/SmolLM2-135M-Instruct.Q4_1.gguf" \
    --modes full --prefill 512,2048 --decode 512 --decode-tokens 32 --repeat $((reps + 1)) \
    --json "$out/focus-bench-$r.json" > /dev/null
done

python3 - "$out" "$threads" "$idle" "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" <<'PY'
import glob, json, statistics, sys
out, threads, idle, cpu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
llama, focus = {}, {}
for path in sorted(glob.glob(f"{out}/llama-bench-*.json")):
    for t in json.load(open(path)):
        key = ("prefill", t["n_prompt"]) if t["n_gen"] == 0 else ("decode", t["n_depth"])
        llama.setdefault(key, []).extend(t["samples_ts"])
for path in sorted(glob.glob(f"{out}/focus-bench-*.json")):
    for r in json.load(open(path))["rows"]:
        # The first run of each measurement is the warm-up.
        focus.setdefault((r["phase"], r["context"]), []).extend(
            r["tokens"] / s for s in r["run_seconds"][1:])
rows = []
for key in sorted(llama, key=lambda k: (k[0] != "prefill", k[1])):
    f, l = statistics.median(focus[key]), statistics.median(llama[key])
    rows.append({"phase": key[0], "context": key[1], "focus_tokens_per_s": f,
                 "llama_cpp_tokens_per_s": l, "ratio": f / l,
                 "focus_runs": focus[key], "llama_cpp_runs": llama[key]})
summary = {"cpu": cpu, "threads": threads, "idle_percent_before": idle, "rows": rows}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
lines = [f"CPU: {cpu}; {threads} threads; f32; idle before the run: {idle} %", "",
         "| phase | context | focus tokens/s | llama.cpp tokens/s | ratio |",
         "|---|---:|---:|---:|---:|"]
for r in rows:
    lines.append(f"| {r['phase']} | {r['context']} | {r['focus_tokens_per_s']:.1f} | "
                 f"{r['llama_cpp_tokens_per_s']:.1f} | {r['ratio']:.2f} |")
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
