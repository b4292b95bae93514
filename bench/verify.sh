#!/usr/bin/env bash
# Throughput of `snapward verify` against `sha256sum` on the same synthetic
# snapshot (goal: verify ≥ 0.8× sha256sum). A benchmark, not a test.
#
#   bench/verify.sh [SIZE_MIB] [RUNS]        (defaults: 1024 MiB, 3 runs)
#
# Builds a valid OpenBao-shaped snapshot of SIZE_MIB MiB of state.bin in a
# temp dir (examples/make_big_snapshot.rs), warms the page cache, then times
# each command RUNS times and reports the best run of each.
#
# Which verifier is timed:
#   SNAPWARD=/path/to/snapward     that binary's `verify FILE`
#   otherwise                      a release build of this crate's binary,
#                                  falling back to the `verify_file` example
#                                  (snapward::snapshot::verify_file) when the
#                                  binary cannot be built or has no `verify`
#   BENCH_VERIFIER=example         force the example
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
runs=${2:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/snapward/target}

work=$(mktemp -d "${TMPDIR:-/tmp}/snapward-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
snap="$work/bench.snap"

cargo build --release -q --example make_big_snapshot --example verify_file
example="$CARGO_TARGET_DIR/release/examples/verify_file"

echo "making a ${size_mib} MiB snapshot in $work ..." >&2
"$CARGO_TARGET_DIR/release/examples/make_big_snapshot" "$snap" "$size_mib"

verifier=()
label=""
if [ "${BENCH_VERIFIER:-}" != example ]; then
  bin=${SNAPWARD:-}
  if [ -z "$bin" ] && cargo build --release -q --bin snapward 2>/dev/null; then
    bin="$CARGO_TARGET_DIR/release/snapward"
  fi
  if [ -n "$bin" ] && "$bin" verify "$snap" >/dev/null 2>&1; then
    verifier=("$bin" verify)
    label="snapward verify"
  elif [ -n "$bin" ]; then
    echo "note: '$bin verify' failed on the bench snapshot; timing the example instead" >&2
  fi
fi
if [ ${#verifier[@]} -eq 0 ]; then
  "$example" "$snap" >/dev/null || { echo "verify_file refused the bench snapshot" >&2; exit 1; }
  verifier=("$example")
  label="example verify_file"
fi

bytes=$(stat -c %s "$snap")
cat "$snap" >/dev/null # page cache: time hashing, not the disk

best() { # best wall time in seconds of "$@" over $runs runs; each must succeed
  local best_ns=""
  for _ in $(seq "$runs"); do
    local s e
    s=$(date +%s%N)
    "$@" >/dev/null
    e=$(date +%s%N)
    if [ -z "$best_ns" ] || [ $((e - s)) -lt "$best_ns" ]; then best_ns=$((e - s)); fi
  done
  awk -v ns="$best_ns" 'BEGIN { printf "%.3f", ns / 1e9 }'
}

sha_s=$(best sha256sum "$snap")
ver_s=$(best "${verifier[@]}" "$snap")
awk -v b="$bytes" -v s="$sha_s" -v v="$ver_s" -v runs="$runs" -v label="$label" -v cpus="$(nproc)" 'BEGIN {
  mib = b / 1048576
  printf "file: %.1f MiB, best of %d runs, page cache warm, %d CPUs\n", mib, runs, cpus
  printf "%-24s %8.3f s %10.1f MiB/s\n", "sha256sum", s, mib / s
  printf "%-24s %8.3f s %10.1f MiB/s\n", label, v, mib / v
  printf "ratio verify/sha256sum: %.2f (goal >= 0.80)\n", (mib / v) / (mib / s)
}'
