#!/usr/bin/env bash
# The `snapshot` action (stream + verify + fsync + link) against
# `bao operator raft snapshot save` from the same server (issue 14, goal
# <= 1.15x). A benchmark, not a test.
#
#   bench/snapshot.sh [SIZE_MIB] [ROUNDS]     (defaults: 512 MiB, 3 rounds)
#
# Starts a real single-node OpenBao (raft), fills kv-v2 until its snapshot is
# >= SIZE_MIB MiB, then per round (order alternated): `bao operator raft
# snapshot save F` wall time, and a `snapward run` into a fresh local dir
# (one filesystem target, so the policy is a normal one) whose `snapshot`
# action's durationMs is read from the JSON report. The filesystem target's
# copy streams with the snapshot (stream once), so the action writes the
# bytes twice: a second series puts the target on /dev/shm, which leaves
# the disk one write, as `save` has. Also prints the peak RSS of the
# snapward runs (/usr/bin/time -v). SNAPWARD=/path times that binary.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
SIZE_MIB=${1:-512}
ROUNDS=${2:-3}

bench_setup
machine_note
warm_memory $((SIZE_MIB * 6))
say "starting OpenBao (raft) and filling kv-v2 until its snapshot is >= $SIZE_MIB MiB"
start_bao big
bao_ready big
BIG_TOKEN=$(cat "$WORK/big/root-token")
save_cmd() { env BAO_ADDR="${BAO_API[big]}" BAO_TOKEN="$BIG_TOKEN" "$BAO_BIN" operator raft snapshot save "$1"; }
target_bytes=$((SIZE_MIB * 1048576)); next=0; chunk=$((SIZE_MIB + SIZE_MIB / 32))
while :; do
  bao_fill big "$chunk" 4 "$next" >/dev/null
  next=$((next + chunk * 2))
  save_cmd "$WORK/probe.snap" >/dev/null
  size=$(stat -c %s "$WORK/probe.snap")
  note "  snapshot is $((size / 1048576)) MiB"
  [ "$size" -ge "$target_bytes" ] && break
  chunk=$(( (target_bytes - size) / 1048576 + 16 ))
done
rm -f "$WORK/probe.snap"
SNAP_MIB=$(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1048576 }')

write_policy() { # FILE LOCAL_DIR TARGET_DIR
  cat > "$1" <<EOF
apiVersion: snapward.dev/v1alpha1
kind: SnapshotPolicy
metadata: {name: bench}
spec:
  cluster:
    nodes: [{name: big-0, address: "${BAO_API[big]}"}]
    auth: {tokenFile: $WORK/big/root-token}
  local:
    path: $2
    retention: {keepLast: 5}
  targets:
    - {name: nfs, filesystem: {path: $3}, retention: {keepLast: 5}}
EOF
}

SAVE=(); SNAP=(); SHM=(); RSS=()
SHM_DIR=$(mktemp -d /dev/shm/snapward-bench.XXXXXX)
trap 'rm -rf "$SHM_DIR"' EXIT
r_save() {
  local t s
  t=$(now_ns); save_cmd "$WORK/save-$1.snap" >/dev/null; s=$(secs_since "$t")
  SAVE+=("$s"); note "  round $1 bao operator raft snapshot save: $s s"
  rm -f "$WORK/save-$1.snap"
}
r_snapward() { # ROUND [shm]
  local pol="$WORK/p-$1${2:-}.yaml" ms kb nfs="$WORK/nfs-$1" what="target on the same disk"
  [ "${2:-}" = shm ] && { nfs="$SHM_DIR/nfs-$1"; what="target on /dev/shm"; }
  write_policy "$pol" "$WORK/local-$1" "$nfs"
  mkdir -p "$nfs"
  /usr/bin/time -v -o "$WORK/time-$1" "$SNAPWARD" --log-format json run -f "$pol" --report "$WORK/r-$1.json" \
    >/dev/null 2>"$WORK/log-$1" || { tail -5 "$WORK/log-$1" >&2; die "snapward run failed"; }
  ms=$(action_ms "$WORK/r-$1.json" snapshot)
  kb=$(awk -F': ' '/Maximum resident/ { print $2 }' "$WORK/time-$1")
  if [ "${2:-}" = shm ]; then
    SHM+=("$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')")
  else
    SNAP+=("$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')")
  fi
  RSS+=("$kb")
  note "  round $1 snapward snapshot action ($what): $ms ms (peak RSS of the run $((kb / 1024)) MiB)"
  rm -rf "$WORK/local-$1" "$nfs"
}
say "snapshot of $SNAP_MIB MiB, $ROUNDS rounds"
for i in $(seq "$ROUNDS"); do
  if [ $((i % 2)) = 1 ]; then r_save "$i"; r_snapward "$i"; r_snapward "$i" shm
  else r_snapward "$i" shm; r_snapward "$i"; r_save "$i"; fi
done
say "actions of the last snapward run"
report_actions "$WORK/r-$ROUNDS.json"
sv=$(min_of "${SAVE[@]}"); sn=$(min_of "${SNAP[@]}")
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
svm=$(median "${SAVE[@]}"); snm=$(median "${SNAP[@]}")
sh=$(min_of "${SHM[@]}"); shm=$(median "${SHM[@]}")
rss=$(printf '%s\n' "${RSS[@]}" | sort -g | tail -1)
{
  printf '\n== results: snapshot %s MiB, %s rounds\n' "$SNAP_MIB" "$ROUNDS"
  machine_note 2>&1
  printf '  %-36s %s\n' "bao operator raft snapshot save" "$(stats "${SAVE[@]}")"
  printf '  %-36s %s\n' "snapward snapshot action" "$(stats "${SNAP[@]}")"
  printf '  %-36s %s\n' "  the same, target on /dev/shm" "$(stats "${SHM[@]}")"
  awk -v a="$sn" -v b="$sv" -v am="$snm" -v bm="$svm" -v c="$sh" -v cm="$shm" -v rss="$rss" 'BEGIN {
    printf "ratio snapshot action / save (best):   %.2f  (goal <= 1.15) %s  (target streamed to the same disk)\n", a / b, (a / b <= 1.15 ? "met" : "NOT met")
    printf "ratio snapshot action / save (median): %.2f\n", am / bm
    printf "ratio snapshot action / save (best):   %.2f  (goal <= 1.15) %s  (target on /dev/shm: one write on the disk, as save)\n", c / b, (c / b <= 1.15 ? "met" : "NOT met")
    printf "ratio snapshot action / save (median): %.2f\n", cm / bm
    printf "peak RSS of snapward run: %.1f MiB  (goal <= 64) %s\n", rss / 1024, (rss / 1024 <= 64 ? "met" : "NOT met")
  }'
}
