#!/usr/bin/env bash
# Steady state with history vs a fresh store, listing a 2,000-object S3
# target, and peak RSS (issue 14, item 4). A benchmark, not a test.
#
#   bench/scale.sh [SIZE_MIB] [ROUNDS] [LOCAL_N] [NFS_N] [S3_OBJECTS]
#                  (defaults: 512 MiB, 3 rounds, 5 local, 14 filesystem, 2000)
#
# 1. A real single-node OpenBao filled until its snapshot is >= SIZE_MIB MiB.
# 2. fresh:  `snapward run` into an empty local dir and an empty filesystem
#            target, ROUNDS times (each on new dirs).
# 3. steady: the local dir holds LOCAL_N and the target NFS_N earlier
#            snapshots of that size (copies of a `bao ... snapshot save`);
#            one warm-up run (it verifies the history once and writes the
#            verification cache), then ROUNDS timed runs (goal: best steady
#            <= 1.1x best fresh).
# 4. S3:     an s3s-fs bucket prefix holding S3_OBJECTS snapshot-named
#            objects; `snapward list` (the listing plus the prune decision)
#            vs `aws s3 ls` of the same prefix (the listing itself).
# Before every timed run: `settle` (bench/lib/common.sh, untimed): sync,
# and the stores' files (the history too) out of the page cache, as a
# nightly run meets them.
# Peak RSS of every snapward run comes from /usr/bin/time -v (goal <= 64 MiB;
# run with SIZE_MIB=1024 and 4096 for the issue's two sizes).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
SIZE_MIB=${1:-512}
ROUNDS=${2:-3}
LOCAL_N=${3:-5}
NFS_N=${4:-14}
S3_N=${5:-2000}

bench_setup
machine_note
avail_mib=$(df -Pm "$WORK" | awk 'NR == 2 { print $4 }')
need_mib=$((SIZE_MIB * (LOCAL_N + NFS_N + 2 * ROUNDS + 4)))
[ "$avail_mib" -ge "$need_mib" ] || die "only $avail_mib MiB free under $WORK; need ~$need_mib MiB"
warm_memory $((SIZE_MIB * (LOCAL_N + NFS_N + 4)))

say "starting OpenBao (raft) and filling kv-v2 until its snapshot is >= $SIZE_MIB MiB"
start_bao big
bao_ready big
BIG_TOKEN=$(cat "$WORK/big/root-token")
SRC="$WORK/src.snap"
save_cmd() { env BAO_ADDR="${BAO_API[big]}" BAO_TOKEN="$BIG_TOKEN" "$BAO_BIN" operator raft snapshot save "$1"; }
target_bytes=$((SIZE_MIB * 1048576)); next=0; chunk=$((SIZE_MIB + SIZE_MIB / 32))
while :; do
  bao_fill big "$chunk" 4 "$next" >/dev/null
  next=$((next + chunk * 2))
  save_cmd "$SRC" >/dev/null
  size=$(stat -c %s "$SRC")
  note "  snapshot is $((size / 1048576)) MiB"
  [ "$size" -ge "$target_bytes" ] && break
  chunk=$(( (target_bytes - size) / 1048576 + 16 ))
done
SNAP_MIB=$(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1048576 }')
start_s3s
make_bucket bench

write_policy() { # FILE LOCAL_DIR NFS_DIR [S3_PREFIX]
  {
    cat <<EOF
apiVersion: snapward.dev/v1alpha1
kind: SnapshotPolicy
metadata: {name: bench}
spec:
  cluster:
    nodes: [{name: big-0, address: "${BAO_API[big]}"}]
    auth: {tokenFile: $WORK/big/root-token}
  local:
    path: $2
    retention: {keepLast: 50}
  targets:
EOF
    if [ -n "$3" ]; then
      echo "    - {name: nfs, filesystem: {path: $3}, retention: {keepLast: 50}}"
    fi
    if [ -n "${4:-}" ]; then
      cat <<EOF
    - name: s3
      s3:
        endpoint: $S3_ENDPOINT
        region: us-east-1
        bucket: bench
        prefix: $4
        pathStyle: true
        credentials: {accessKeyIdFile: $WORK/creds/access-key-id, secretAccessKeyFile: $WORK/creds/secret-access-key}
      retention: {keepLast: 10}
EOF
    fi
  } > "$1"
}

timed_run() { # POLICY TAG -> prints seconds; checks exit 0
  local t s kb
  t=$(now_ns)
  /usr/bin/time -v -o "$WORK/time-$2" "$SNAPWARD" --log-format json run -f "$1" --report "$WORK/r-$2.json" \
    >/dev/null 2>"$WORK/log-$2" || { tail -5 "$WORK/log-$2" >&2; die "snapward run ($2) failed"; }
  s=$(secs_since "$t")
  kb=$(awk -F': ' '/Maximum resident/ { print $2 }' "$WORK/time-$2")
  echo "$kb" >> "$WORK/rss-kb" # a file: this runs in $(...)
  echo "$s"
}

# Snapshot names, one per earlier day (never the name a run picks now).
hist_name() { printf 'openbao-202611%02d-020000.snap' "$1"; }

FRESH=(); STEADY=()
say "fresh stores: $ROUNDS rounds"
for i in $(seq "$ROUNDS"); do
  mkdir -p "$WORK/f-nfs-$i"
  write_policy "$WORK/f-$i.yaml" "$WORK/f-local-$i" "$WORK/f-nfs-$i"
  settle "$SRC"
  s=$(timed_run "$WORK/f-$i.yaml" "fresh-$i"); FRESH+=("$s")
  note "  round $i fresh run: $s s"
  rm -rf "$WORK/f-local-$i" "$WORK/f-nfs-$i"
  sleep 1
done

say "steady state: $LOCAL_N local + $NFS_N filesystem-target snapshots of $SNAP_MIB MiB"
mkdir -p "$WORK/s-local" "$WORK/s-nfs"
for d in $(seq "$LOCAL_N"); do cp "$SRC" "$WORK/s-local/$(hist_name "$d")"; done
for d in $(seq "$NFS_N"); do cp "$SRC" "$WORK/s-nfs/$(hist_name "$d")"; done
sync
write_policy "$WORK/s.yaml" "$WORK/s-local" "$WORK/s-nfs"
settle "$SRC"
s=$(timed_run "$WORK/s.yaml" steady-warmup)
note "  warm-up run (reads the history once, writes the cache): $s s"
for i in $(seq "$ROUNDS"); do
  sleep 1
  settle "$SRC"
  s=$(timed_run "$WORK/s.yaml" "steady-$i"); STEADY+=("$s")
  note "  round $i steady-state run: $s s"
done
say "actions of the last steady-state run"
report_actions "$WORK/r-steady-$ROUNDS.json"

say "S3 target with $S3_N objects"
mkdir -p "$S3_DATA/bench/many"
for n in $(seq "$S3_N"); do
  # Distinct valid snapshot names, minutes apart (s3s-fs serves files as objects).
  printf 'x' > "$S3_DATA/bench/many/openbao-$(date -u -d "@$((1700000000 + n * 60))" +%Y%m%d-%H%M%S).snap"
done
write_policy "$WORK/l.yaml" "$WORK/l-local" "" "many/"
AWSLS=(env AWS_ACCESS_KEY_ID="$S3_AK" AWS_SECRET_ACCESS_KEY="$S3_SK"
  aws --endpoint-url "$S3_ENDPOINT" --region us-east-1 s3 ls s3://bench/many/)
LIST=(); LS=()
for i in $(seq "$ROUNDS"); do
  t=$(now_ns); "$SNAPWARD" list --format json -f "$WORK/l.yaml" >"$WORK/list.json" 2>"$WORK/list.log" || true; LIST+=("$(secs_since "$t")")
  t=$(now_ns); "${AWSLS[@]}" >"$WORK/ls.txt"; LS+=("$(secs_since "$t")")
done
listed=$(jq '[.[] | select(.store == "s3") | .snapshots | length] | add // 0' "$WORK/list.json")
note "  snapward list saw $listed objects; aws s3 ls $(wc -l < "$WORK/ls.txt")"

RSS_MAX=$(sort -g "$WORK/rss-kb" | tail -1)
f=$(min_of "${FRESH[@]}"); st=$(min_of "${STEADY[@]}"); l=$(min_of "${LIST[@]}"); ls=$(min_of "${LS[@]}")
{
  printf '\n== results: snapshot %s MiB, %s rounds\n' "$SNAP_MIB" "$ROUNDS"
  machine_note 2>&1
  printf '  %-44s %s\n' "snapward run, fresh stores" "$(stats "${FRESH[@]}")"
  printf '  %-44s %s\n' "snapward run, $LOCAL_N local + $NFS_N nfs history" "$(stats "${STEADY[@]}")"
  printf '  %-44s %s\n' "snapward list, S3 target with $S3_N objects" "$(stats "${LIST[@]}")"
  printf '  %-44s %s\n' "aws s3 ls of the same prefix" "$(stats "${LS[@]}")"
  awk -v f="$f" -v st="$st" -v l="$l" -v ls="$ls" -v rss="$RSS_MAX" -v mib="$SNAP_MIB" 'BEGIN {
    printf "ratio steady state / fresh (best):        %.2f  (goal <= 1.10) %s\n", st / f, (st / f <= 1.1 ? "met" : "NOT met")
    printf "list + prune decision beyond the listing: %.2f s (snapward list %.2f s - aws s3 ls %.2f s)\n", l - ls, l, ls
    printf "peak RSS of every snapward run at %s MiB: %.1f MiB  (goal <= 64) %s\n", mib, rss / 1024, (rss / 1024 <= 64 ? "met" : "NOT met")
  }'
}
