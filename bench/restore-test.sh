#!/usr/bin/env bash
# Cost of a restore test (issue 13): `snapward test-restore` of a ~SIZE_MIB
# MiB snapshot from S3 (s3s-fs) onto a throwaway OpenBao. A benchmark, not a
# test.
#
#   bench/restore-test.sh [SIZE_MIB] [ROUNDS]     (defaults: 100 MiB, 3 rounds)
#
# A real single-node OpenBao is initialised by `snapward run`, filled with
# ~SIZE_MIB MiB of kv-v2 secrets and a canary, and backed up to S3. Each
# round then times `snapward test-restore -f POLICY --from s3` (download,
# verify, authenticate, temp-init, restore, unseal, canary) and records the
# peak RSS (VmHWM, sampled every 0.1 s) of snapward and of the throwaway
# `bao server`. Prints best/median/worst.
#
# SNAPWARD=/path/to/snapward times that binary. Stops everything on exit.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
SIZE_MIB=${1:-100}
ROUNDS=${2:-3}

bench_setup
machine_note

start_bao prod
start_s3s
make_bucket bench
A=${BAO_API[prod]}
KEYS="$WORK/keys"
mkdir -p "$WORK/snapshots"
cat > "$WORK/policy.yaml" <<EOF
apiVersion: snapward.dev/v1alpha1
kind: SnapshotPolicy
metadata: {name: rt}
spec:
  cluster:
    nodes: [{name: prod-0, address: "$A"}]
    auth: {tokenFile: $KEYS/root-token}
  local:
    path: $WORK/snapshots
    retention: {keepLast: 5}
  targets:
    - name: s3
      s3:
        endpoint: $S3_ENDPOINT
        region: us-east-1
        bucket: bench
        prefix: rt/
        pathStyle: true
        credentials: {accessKeyIdFile: $WORK/creds/access-key-id, secretAccessKeyFile: $WORK/creds/secret-access-key}
      retention: {keepLast: 10}
  unsealKeys:
    files: {directory: $KEYS}
  restore:
    mode: auto
    canary: {path: secret/data/bench-canary, tokenFile: $KEYS/root-token}
  init: {allowed: true, shares: 3, threshold: 2, storeRootToken: true}
  restoreTest: {baoBinary: $BAO_BIN, from: s3, workDir: $WORK/rehearsal}
EOF
"$SNAPWARD" lint "$WORK/policy.yaml" >&2
sw() { "$SNAPWARD" --log-format json "$@" >/dev/null 2>>"$WORK/snapward.log"; }

say "fresh cluster: snapward run initialises it"
sw run -f "$WORK/policy.yaml" --report "$WORK/init.json" || die "init failed: $(tail -3 "$WORK/snapward.log")"
cp "$KEYS/root-token" "$WORK/prod/root-token"
bao_enable_kv prod
say "filling kv-v2 with ~$SIZE_MIB MiB, then a canary"
bao_fill prod "$SIZE_MIB" 4 >/dev/null
bao_api prod -X POST -d '{"data":{"canary":"yes"}}' "$A/v1/secret/data/bench-canary" >/dev/null
say "backup to S3 (the run rehearses it too: restore-test:s3)"
rc=0; sw run -f "$WORK/policy.yaml" --report "$WORK/backup.json" || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 6 ] || die "backup run exited $rc: $(jq -r .summary "$WORK/backup.json" 2>/dev/null) $(tail -3 "$WORK/snapward.log")"
SNAP=$(ls "$WORK"/snapshots/openbao-*.snap | tail -1)
note "snapshot: $(awk -v b="$(stat -c %s "$SNAP")" 'BEGIN { printf "%.1f", b / 1048576 }') MiB; the backup run's restore test: $(jq -r '.actions[] | select(.kind == "restore-test") | .status + " in " + (.durationMs|tostring) + " ms"' "$WORK/backup.json")"

# Peak RSS (KiB, VmHWM) of the processes matching $2 while $1 runs.
sample_hwm() {
  local max=0 pid hwm
  while kill -0 "$1" 2>/dev/null; do
    for pid in $(pgrep -f -- "$2" || true); do
      hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      [ "${hwm:-0}" -gt "$max" ] && max=$hwm
    done
    sleep 0.1
  done
  echo "$max"
}

WALL=(); SW_RSS=(); BAO_RSS=()
for i in $(seq 1 "$ROUNDS"); do
  t0=$(now_ns)
  "$SNAPWARD" --log-format json test-restore \
    -f "$WORK/policy.yaml" --from s3 --report "$WORK/rt-$i.json" >/dev/null 2>>"$WORK/snapward.log" &
  runner=$!
  (sample_hwm "$runner" "config=$WORK/rehearsal/" > "$WORK/hwm-bao-$i") &
  s1=$!
  (sample_hwm "$runner" "^$SNAPWARD --log-format json test-restore" > "$WORK/hwm-sw-$i") &
  s2=$!
  wait "$runner" || die "round $i: test-restore failed: $(tail -3 "$WORK/snapward.log")"
  wall=$(secs_since "$t0")
  wait "$s1" "$s2"
  WALL+=("$wall"); SW_RSS+=("$(cat "$WORK/hwm-sw-$i")"); BAO_RSS+=("$(cat "$WORK/hwm-bao-$i")")
  note "round $i: ${wall}s, snapward peak RSS $(( ${SW_RSS[-1]} / 1024 )) MiB, throwaway bao peak RSS $(( ${BAO_RSS[-1]} / 1024 )) MiB"
done
say "result ($ROUNDS rounds, ${SIZE_MIB} MiB of secrets)"
printf 'wall seconds: %s\n' "$(stats "${WALL[@]}")"
printf 'snapward peak RSS MiB (max): %s\n' "$(printf '%s\n' "${SW_RSS[@]}" | sort -n | tail -1 | awk '{printf "%.0f", $1/1024}')"
printf 'throwaway bao peak RSS MiB (max): %s\n' "$(printf '%s\n' "${BAO_RSS[@]}" | sort -n | tail -1 | awk '{printf "%.0f", $1/1024}')"
[ -z "$(ls -A "$WORK/rehearsal" 2>/dev/null)" ] && note "no throwaway server directory left" || note "LEFTOVER in $WORK/rehearsal: $(ls "$WORK/rehearsal")"
