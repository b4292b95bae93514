#!/usr/bin/env bash
# RTO of a wiped cluster with a ~100 MiB snapshot: `snapward run` (automatic
# restore from the local store) against the same ceremony driven by hand with
# curl (goal: snapward <= 1.2x manual). A benchmark, not a test.
#
#   bench/rto.sh [SIZE_MIB] [ROUNDS]        (defaults: 100 MiB, 3 rounds)
#
# A real single-node OpenBao (raft) and s3s-fs; the policy has the shape of
# scripts/demo.sh (init allowed, 3 shares, threshold 2, storeRootToken,
# unsealKeys.files, restore auto, a canary). `snapward run` initialises the
# fresh cluster; kv-v2 is filled with ~SIZE_MIB MiB of random secrets plus a
# canary; `snapward run` takes the backup. Then per round, for each of the
# two (order alternating), the raft data is wiped (stop, delete, restart) and
# the clock runs from "the wiped server answers" until the canary is read
# with the ORIGINAL root token:
#   snapward   `snapward run -f POLICY` exits 0, then one canary read
#   manual     PUT sys/init (3/2) → PUT sys/unseal ×2 (temp keys) → poll
#              sys/leader until is_self → POST sys/storage/raft/snapshot-force
#              (temp root token, the same snapshot file) → poll
#              sys/seal-status until sealed → PUT sys/unseal ×2 (original
#              keys) → poll the canary until it reads back.
# Both poll every 0.25 s (snapward's interval). Prints the commands, the
# seconds (best/median/worst) and the ratio of the best runs.
#
# SNAPWARD=/path/to/snapward times that binary. Stops everything on exit.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
SIZE_MIB=${1:-100}
ROUNDS=${2:-3}
POLL=0.25

bench_setup
machine_note

start_bao rto
start_s3s
make_bucket bench
A=${BAO_API[rto]}
KEYS="$WORK/keys"
mkdir -p "$WORK/snapshots"
cat > "$WORK/policy.yaml" <<EOF
apiVersion: snapward.dev/v1alpha1
kind: SnapshotPolicy
metadata: {name: rto}
spec:
  cluster:
    nodes: [{name: rto-0, address: "$A"}]
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
        prefix: rto/
        pathStyle: true
        credentials: {accessKeyIdFile: $WORK/creds/access-key-id, secretAccessKeyFile: $WORK/creds/secret-access-key}
      retention: {keepLast: 10}
  unsealKeys:
    files: {directory: $KEYS}
  restore:
    mode: auto
    canary: {path: secret/data/bench-canary, tokenFile: $KEYS/root-token}
  init: {allowed: true, shares: 3, threshold: 2, storeRootToken: true}
EOF
"$SNAPWARD" lint "$WORK/policy.yaml" >&2

sw_run() { # REPORT: snapward run; exits non-zero on failure
  "$SNAPWARD" --log-format json run -f "$WORK/policy.yaml" --report "$1" >/dev/null 2>>"$WORK/snapward.log"
}

say "fresh cluster: snapward run initialises it (3 shares, threshold 2)"
sw_run "$WORK/init.json" || die "init run failed: $(tail -3 "$WORK/snapward.log")"
ROOT=$(cat "$KEYS/root-token")
# bao_fill/bao_api read $WORK/rto/root-token
cp "$KEYS/root-token" "$WORK/rto/root-token"
bao_enable_kv rto
say "filling kv-v2 with ~$SIZE_MIB MiB of random secrets, then a canary"
bao_fill rto "$SIZE_MIB" 4 >/dev/null
CANARY=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
bao_api rto -X POST -d "{\"data\":{\"canary\":\"$CANARY\"}}" "$A/v1/secret/data/bench-canary" >/dev/null

say "backup: snapward run"
sw_run "$WORK/backup.json" || die "backup run failed: $(tail -3 "$WORK/snapward.log")"
SNAP=$(ls "$WORK"/snapshots/openbao-*.snap | tail -1)
SNAP_MIB=$(awk -v b="$(stat -c %s "$SNAP")" 'BEGIN { printf "%.1f", b / 1048576 }')
note "snapshot: $SNAP ($SNAP_MIB MiB)"

canary_ok() { # reads the canary with the original root token
  curl -sf -H "X-Vault-Token: $ROOT" "$A/v1/secret/data/bench-canary" 2>/dev/null \
    | jq -e --arg c "$CANARY" '.data.data.canary == $c' >/dev/null
}
poll_until() { # CMD...: every $POLL s, at most 300 s
  local t0=$SECONDS
  until "$@"; do
    [ $((SECONDS - t0)) -lt 300 ] || die "timed out waiting for: $*"
    sleep "$POLL"
  done
}
is_self() { curl -sf "$A/v1/sys/leader" 2>/dev/null | jq -e '.is_self == true' >/dev/null; }
is_sealed() { curl -sf "$A/v1/sys/seal-status" 2>/dev/null | jq -e '.sealed == true' >/dev/null; }
uninitialised() { curl -s "$A/v1/sys/seal-status" | jq -e '.initialized == false' >/dev/null; }

SW=(); MAN=(); best_sw=""; best_report=""
r_snapward() {
  local i=$1 t s
  bao_wipe rto; uninitialised || die "the wiped cluster is not uninitialised"
  [ "$i" = 1 ] && show_cmd "$SNAPWARD" --log-format json run -f "$WORK/policy.yaml" --report "$WORK/restore-$i.json" "&& curl -H 'X-Vault-Token: <original root>' $A/v1/secret/data/bench-canary"
  t=$(now_ns)
  sw_run "$WORK/restore-$i.json" || die "restore run failed: $(tail -3 "$WORK/snapward.log")"
  canary_ok || poll_until canary_ok
  s=$(secs_since "$t")
  SW+=("$s")
  if [ -z "$best_sw" ] || awk -v a="$s" -v b="$best_sw" 'BEGIN { exit !(a < b) }'; then best_sw=$s; best_report="$WORK/restore-$i.json"; fi
  note "  round $i snapward run (auto restore) + canary:  $s s"
}
r_manual() {
  local i=$1 t s init tmp k
  bao_wipe rto; uninitialised || die "the wiped cluster is not uninitialised"
  if [ "$i" = 1 ]; then
    show_cmd "curl -X PUT -d '{\"secret_shares\":3,\"secret_threshold\":2}' $A/v1/sys/init"
    show_cmd "curl -X PUT -d '{\"key\":\"<temp key 1|2>\"}' $A/v1/sys/unseal   # ×2"
    show_cmd "until curl $A/v1/sys/leader | jq -e .is_self; do sleep $POLL; done"
    show_cmd "curl -X POST -H 'X-Vault-Token: <temp root>' --data-binary @$SNAP $A/v1/sys/storage/raft/snapshot-force"
    show_cmd "until curl $A/v1/sys/seal-status | jq -e .sealed; do sleep $POLL; done"
    show_cmd "curl -X PUT -d '{\"key\":\"<original key 1|2>\"}' $A/v1/sys/unseal   # ×2"
    show_cmd "until curl -H 'X-Vault-Token: <original root>' $A/v1/secret/data/bench-canary; do sleep $POLL; done"
  fi
  local steps="" m
  t=$(now_ns); m=$t
  lap() { steps+=" $1 $(secs_since "$m")"; m=$(now_ns); }
  init=$(curl -sf -X PUT -d '{"secret_shares":3,"secret_threshold":2}' "$A/v1/sys/init")
  tmp=$(jq -r .root_token <<<"$init")
  for k in $(jq -r '.keys_base64[0,1]' <<<"$init"); do
    curl -sf -X PUT -d "{\"key\":\"$k\"}" "$A/v1/sys/unseal" >/dev/null
  done
  lap init+unseal
  poll_until is_self
  lap leader
  curl -sf -X POST -H "X-Vault-Token: $tmp" --data-binary @"$SNAP" \
    "$A/v1/sys/storage/raft/snapshot-force" >/dev/null
  lap snapshot-force
  poll_until is_sealed
  lap sealed
  for k in "$KEYS/unseal-key-0" "$KEYS/unseal-key-1"; do
    curl -sf -X PUT -d "{\"key\":\"$(cat "$k")\"}" "$A/v1/sys/unseal" >/dev/null
  done
  lap unseal
  poll_until canary_ok
  lap canary
  s=$(secs_since "$t")
  MAN+=("$s")
  note "  round $i manual curl ceremony + canary:          $s s  (steps, s:$steps)"
}

say "RTO: wipe → canary readable with the original root token, $ROUNDS rounds (order alternating)"
for i in $(seq "$ROUNDS"); do
  if [ $((i % 2)) = 1 ]; then r_snapward "$i"; r_manual "$i"; else r_manual "$i"; r_snapward "$i"; fi
done

say "actions of the best snapward restore run"
report_actions "$best_report"
sw=$(min_of "${SW[@]}"); man=$(min_of "${MAN[@]}")
{
  printf '\n== results: RTO for a %s MiB snapshot (1 node, local source, poll %s s)\n' "$SNAP_MIB" "$POLL"
  machine_note 2>&1
  printf '  %-34s %s\n' "snapward run (auto restore)" "$(stats "${SW[@]}")"
  printf '  %-34s %s\n' "manual curl ceremony" "$(stats "${MAN[@]}")"
  awk -v a="$sw" -v b="$man" 'BEGIN {
    printf "ratio snapward / manual (best): %.2f  (goal <= 1.20) %s\n", a / b, (a / b <= 1.2 ? "met" : "NOT met") }'
}
