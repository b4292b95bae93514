#!/usr/bin/env bash
# Process wall time of `snapward lint` and `snapward plan` on the example
# policies (goal: ≤ 20 ms each). A benchmark, not a test: prints numbers.
#   bench/lint-plan.sh [RUNS]     (uses a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-50}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/snapward/target}
cargo build --release -q
bin=${SNAPWARD:-$CARGO_TARGET_DIR/release/snapward}
measure() { # prints the median wall time in ms of "$@" over $runs runs
  local t=()
  for _ in $(seq "$runs"); do
    local s=$(date +%s%N); "$@" >/dev/null 2>&1 || true; local e=$(date +%s%N)
    t+=($(( (e - s) / 1000 )))
  done
  printf '%s\n' "${t[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]/1000}'
}
printf '%-58s %10s\n' "command (median of $runs)" "ms"
for f in policies/*.yaml; do
  printf '%-58s %10s\n' "lint $f" "$(measure "$bin" lint "$f")"
  printf '%-58s %10s\n' "plan -f $f" "$(measure "$bin" plan -f "$f")"
  printf '%-58s %10s\n' "plan -f $f --scenario pvc-lost --format markdown" "$(measure "$bin" plan -f "$f" --scenario pvc-lost --format markdown)"
done
printf '%-58s %10s\n' "baseline: /bin/true" "$(measure /bin/true)"
echo "goal: each ≤ 20 ms"
