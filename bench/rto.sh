#!/usr/bin/env bash
# RTO of a wiped cluster with a ~100 MiB snapshot: `snapward run` (automatic
# restore from the local store) against the same ceremony driven by hand with
# curl (goal: snapward <= 1.2x manual), for a Shamir cluster and for an
# auto-unseal one (static seal). A benchmark, not a test.
#
#   bench/rto.sh [SIZE_MIB] [ROUNDS] [SEALS]
#       defaults: 100 MiB, 3 rounds, SEALS "shamir auto" (either one alone too)
#
# Per seal, a real single-node OpenBao (raft) and s3s-fs; the policy has the
# shape of scripts/demo.sh (init allowed, 3 shares, threshold 2,
# storeRootToken, unsealKeys.files, restore auto, a canary; the auto-unseal
# policy says `cluster.seal: auto` and its key store holds recovery keys).
# `snapward run` initialises the fresh cluster; kv-v2 is filled with
# ~SIZE_MIB MiB of random secrets plus a canary; `snapward run` takes the
# backup. Then per round, for each of the two (order alternating), the raft
# data is wiped (stop, delete, restart) and the clock runs from "the wiped
# server answers" until the canary is read with the ORIGINAL root token:
#   snapward   `snapward run -f POLICY` exits 0, then one canary read
#   manual, Shamir
#              PUT sys/init (3/2) → PUT sys/unseal ×2 (temp keys) → poll
#              sys/leader until is_self → POST sys/storage/raft/snapshot-force
#              (temp root token, the same snapshot file) → poll
#              sys/seal-status until sealed → PUT sys/unseal ×2 (original
#              keys) → poll the canary until it reads back.
#   manual, auto-unseal (static seal; DESIGN.md §8)
#              PUT sys/init (recovery 3/2; the node unseals itself) → poll
#              sys/leader until is_self → POST sys/storage/raft/snapshot (the
#              VERIFIED restore, as snapward does; temp root token) → poll
#              sys/seal-status until the cluster_id is no longer the
#              temporary one → poll the canary until it reads back.
# Both poll every 0.25 s (snapward's interval). Prints the commands, the
# seconds (best/median/worst), the ratio of the best runs per seal, and the
# auto-unseal RTO next to the Shamir one.
#
# SNAPWARD=/path/to/snapward times that binary. Stops everything on exit.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
SIZE_MIB=${1:-100}
ROUNDS=${2:-3}
SEALS=${3:-shamir auto}
POLL=0.25
for seal in $SEALS; do
  case $seal in shamir | auto) ;; *) die "SEALS: shamir and/or auto, not $seal" ;; esac
done

bench_setup
machine_note
start_s3s
make_bucket bench

poll_until() { # CMD...: every $POLL s, at most 300 s
  local t0=$SECONDS
  until "$@"; do
    [ $((SECONDS - t0)) -lt 300 ] || die "timed out waiting for: $*
  sys/seal-status: $(curl -s "$A/v1/sys/seal-status")
  sys/leader: $(curl -s "$A/v1/sys/leader")
  server log: ${BAO_DIR[$NAME]}/bao.log"
    sleep "$POLL"
  done
}

# The cluster of the seal being measured (set by setup_cluster).
SEAL="" NAME="" A="" KEYS="" POLICY="" ROOT="" CANARY="" SNAP=""
declare -A SNAP_MIB=() BEST_REPORT=() SW_STATS=() MAN_STATS=() SW_BEST=() MAN_BEST=()

sw_run() { # REPORT: snapward run; exits non-zero on failure
  "$SNAPWARD" --log-format json run -f "$POLICY" --report "$1" >/dev/null 2>>"$WORK/snapward.log"
}
canary_ok() { # reads the canary with the original root token
  curl -sf -H "X-Vault-Token: $ROOT" "$A/v1/secret/data/bench-canary" 2>/dev/null \
    | jq -e --arg c "$CANARY" '.data.data.canary == $c' >/dev/null
}
is_self() { curl -sf "$A/v1/sys/leader" 2>/dev/null | jq -e '.is_self == true' >/dev/null; }
is_sealed() { curl -sf "$A/v1/sys/seal-status" 2>/dev/null | jq -e '.sealed == true' >/dev/null; }
cluster_id_is_not() { # ID: the node reports another cluster_id (the snapshot's)
  curl -sf "$A/v1/sys/seal-status" 2>/dev/null | jq -e --arg id "$1" '.cluster_id != null and .cluster_id != $id' >/dev/null
}
uninitialised() { curl -s "$A/v1/sys/seal-status" | jq -e '.initialized == false' >/dev/null; }

# setup_cluster shamir|auto: a fresh OpenBao initialised by snapward, filled,
# a canary, one backup in the local store ($SNAP).
setup_cluster() {
  SEAL=$1
  local bao_seal=shamir seal_line="" what="3 shares, threshold 2"
  if [ "$SEAL" = auto ]; then
    bao_seal=static seal_line="    seal: auto" what="auto-unseal (static seal), 3 recovery shares, threshold 2"
  fi
  NAME=rto-$SEAL
  start_bao "$NAME" "$bao_seal"
  A=${BAO_API[$NAME]}
  KEYS="$WORK/$NAME/store"
  POLICY="$WORK/$NAME/policy.yaml"
  mkdir -p "$WORK/$NAME/snapshots"
  cat > "$POLICY" <<EOF
apiVersion: snapward.dev/v1alpha1
kind: SnapshotPolicy
metadata: {name: $NAME}
spec:
  cluster:
    nodes: [{name: $NAME-0, address: "$A"}]
    auth: {tokenFile: $KEYS/root-token}
$seal_line
  local:
    path: $WORK/$NAME/snapshots
    retention: {keepLast: 5}
  targets:
    - name: s3
      s3:
        endpoint: $S3_ENDPOINT
        region: us-east-1
        bucket: bench
        prefix: $NAME/
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
  "$SNAPWARD" lint "$POLICY" >&2

  say "[$SEAL] fresh cluster: snapward run initialises it ($what)"
  sw_run "$WORK/$NAME/init-report.json" || die "init run failed: $(tail -3 "$WORK/snapward.log")"
  if [ "$SEAL" = auto ]; then
    jq -e '.type == "static" and .recovery_seal == true' <<<"$(curl -s "$A/v1/sys/seal-status")" >/dev/null \
      || die "$NAME is not an auto-unseal node: $(curl -s "$A/v1/sys/seal-status")"
  fi
  ROOT=$(cat "$KEYS/root-token")
  # bao_fill/bao_api read $WORK/NAME/root-token
  cp "$KEYS/root-token" "$WORK/$NAME/root-token"
  bao_enable_kv "$NAME"
  say "[$SEAL] filling kv-v2 with ~$SIZE_MIB MiB of random secrets, then a canary"
  bao_fill "$NAME" "$SIZE_MIB" 4 >/dev/null
  CANARY=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  bao_api "$NAME" -X POST -d "{\"data\":{\"canary\":\"$CANARY\"}}" "$A/v1/secret/data/bench-canary" >/dev/null

  say "[$SEAL] backup: snapward run"
  sw_run "$WORK/$NAME/backup-report.json" || die "backup run failed: $(tail -3 "$WORK/snapward.log")"
  SNAP=$(ls "$WORK/$NAME"/snapshots/openbao-*.snap | tail -1)
  SNAP_MIB[$SEAL]=$(awk -v b="$(stat -c %s "$SNAP")" 'BEGIN { printf "%.1f", b / 1048576 }')
  note "snapshot: $SNAP (${SNAP_MIB[$SEAL]} MiB)"
}

SW=(); MAN=(); best_sw=""
r_snapward() {
  local i=$1 t s report="$WORK/$NAME/restore-$1.json"
  bao_wipe "$NAME"; uninitialised || die "the wiped cluster is not uninitialised"
  [ "$i" = 1 ] && show_cmd "$SNAPWARD" --log-format json run -f "$POLICY" --report "$report" "&& curl -H 'X-Vault-Token: <original root>' $A/v1/secret/data/bench-canary"
  t=$(now_ns)
  sw_run "$report" || die "restore run failed: $(tail -3 "$WORK/snapward.log")"
  canary_ok || poll_until canary_ok
  s=$(secs_since "$t")
  SW+=("$s")
  if [ -z "$best_sw" ] || awk -v a="$s" -v b="$best_sw" 'BEGIN { exit !(a < b) }'; then best_sw=$s; BEST_REPORT[$SEAL]=$report; fi
  note "  round $i snapward run (auto restore) + canary:  $s s"
}

manual_shamir() {
  local i=$1 init tmp k
  if [ "$i" = 1 ]; then
    show_cmd "curl -X PUT -d '{\"secret_shares\":3,\"secret_threshold\":2}' $A/v1/sys/init"
    show_cmd "curl -X PUT -d '{\"key\":\"<temp key 1|2>\"}' $A/v1/sys/unseal   # ×2"
    show_cmd "until curl $A/v1/sys/leader | jq -e .is_self; do sleep $POLL; done"
    show_cmd "curl -X POST -H 'X-Vault-Token: <temp root>' --data-binary @$SNAP $A/v1/sys/storage/raft/snapshot-force"
    show_cmd "until curl $A/v1/sys/seal-status | jq -e .sealed; do sleep $POLL; done"
    show_cmd "curl -X PUT -d '{\"key\":\"<original key 1|2>\"}' $A/v1/sys/unseal   # ×2"
    show_cmd "until curl -H 'X-Vault-Token: <original root>' $A/v1/secret/data/bench-canary; do sleep $POLL; done"
  fi
  init=$(curl -sSf -X PUT -d '{"secret_shares":3,"secret_threshold":2}' "$A/v1/sys/init") || die "manual: sys/init failed"
  tmp=$(jq -r .root_token <<<"$init")
  for k in $(jq -r '.keys_base64[0,1]' <<<"$init"); do
    curl -sSf -X PUT -d "{\"key\":\"$k\"}" "$A/v1/sys/unseal" >/dev/null || die "manual: sys/unseal (temp key) failed"
  done
  lap init+unseal
  poll_until is_self
  lap leader
  curl -sSf -X POST -H "X-Vault-Token: $tmp" --data-binary @"$SNAP" \
    "$A/v1/sys/storage/raft/snapshot-force" >/dev/null || die "manual: snapshot-force failed"
  lap snapshot-force
  poll_until is_sealed
  lap sealed
  for k in "$KEYS/unseal-key-0" "$KEYS/unseal-key-1"; do
    curl -sSf -X PUT -d "{\"key\":\"$(cat "$k")\"}" "$A/v1/sys/unseal" >/dev/null || die "manual: sys/unseal (original key) failed"
  done
  lap unseal
}

manual_auto() {
  local i=$1 init tmp temp_id
  if [ "$i" = 1 ]; then
    show_cmd "curl -X PUT -d '{\"recovery_shares\":3,\"recovery_threshold\":2}' $A/v1/sys/init   # unseals itself"
    show_cmd "until curl $A/v1/sys/leader | jq -e .is_self; do sleep $POLL; done"
    show_cmd "curl $A/v1/sys/seal-status | jq -r .cluster_id   # the temporary cluster_id"
    show_cmd "curl -X POST -H 'X-Vault-Token: <temp root>' --data-binary @$SNAP $A/v1/sys/storage/raft/snapshot   # verified, 204"
    show_cmd "until curl $A/v1/sys/seal-status | jq -e '.cluster_id != \"<temporary>\"'; do sleep $POLL; done"
    show_cmd "until curl -H 'X-Vault-Token: <original root>' $A/v1/secret/data/bench-canary; do sleep $POLL; done"
  fi
  init=$(curl -sSf -X PUT -d '{"recovery_shares":3,"recovery_threshold":2}' "$A/v1/sys/init") || die "manual: sys/init (recovery shares) failed"
  tmp=$(jq -r .root_token <<<"$init")
  lap init
  poll_until is_self
  temp_id=$(curl -sSf "$A/v1/sys/seal-status" | jq -r .cluster_id) || die "manual: sys/seal-status failed"
  lap leader
  # -f: a seal mismatch (400 "... different autoseal key") stops the bench
  curl -sSf -X POST -H "X-Vault-Token: $tmp" --data-binary @"$SNAP" \
    "$A/v1/sys/storage/raft/snapshot" >/dev/null || die "manual: the verified restore failed"
  lap snapshot
  poll_until cluster_id_is_not "$temp_id"
  lap cluster_id
}

r_manual() {
  local i=$1 t s m steps=""
  bao_wipe "$NAME"; uninitialised || die "the wiped cluster is not uninitialised"
  t=$(now_ns); m=$t
  lap() { steps+=" $1 $(secs_since "$m")"; m=$(now_ns); }
  "manual_$SEAL" "$i"
  poll_until canary_ok
  lap canary
  s=$(secs_since "$t")
  MAN+=("$s")
  note "  round $i manual curl ceremony + canary:          $s s  (steps, s:$steps)"
}

for seal in $SEALS; do
  setup_cluster "$seal"
  SW=(); MAN=(); best_sw=""
  say "[$SEAL] RTO: wipe → canary readable with the original root token, $ROUNDS rounds (order alternating)"
  for i in $(seq "$ROUNDS"); do
    if [ $((i % 2)) = 1 ]; then r_snapward "$i"; r_manual "$i"; else r_manual "$i"; r_snapward "$i"; fi
  done
  say "[$SEAL] actions of the best snapward restore run"
  report_actions "${BEST_REPORT[$SEAL]}"
  SW_STATS[$SEAL]=$(stats "${SW[@]}"); MAN_STATS[$SEAL]=$(stats "${MAN[@]}")
  SW_BEST[$SEAL]=$(min_of "${SW[@]}"); MAN_BEST[$SEAL]=$(min_of "${MAN[@]}")
  bao_stop "$NAME" # the next cluster runs alone
done

{
  printf '\n== results: RTO, wipe → canary (1 node, local source, poll %s s)\n' "$POLL"
  machine_note 2>&1
  for seal in $SEALS; do
    label="Shamir"; [ "$seal" = auto ] && label="auto-unseal (static seal)"
    printf '%s, %s MiB snapshot:\n' "$label" "${SNAP_MIB[$seal]}"
    printf '  %-34s %s\n' "snapward run (auto restore)" "${SW_STATS[$seal]}"
    printf '  %-34s %s\n' "manual curl ceremony" "${MAN_STATS[$seal]}"
    awk -v a="${SW_BEST[$seal]}" -v b="${MAN_BEST[$seal]}" 'BEGIN {
      printf "  ratio snapward / manual (best): %.2f  (goal <= 1.20) %s\n", a / b, (a / b <= 1.2 ? "met" : "NOT met") }'
  done
  if [ -n "${SW_BEST[shamir]:-}" ] && [ -n "${SW_BEST[auto]:-}" ]; then
    awk -v a="${SW_BEST[auto]}" -v s="${SW_BEST[shamir]}" 'BEGIN {
      printf "snapward RTO, auto-unseal / Shamir (best): %.2f s / %.2f s = %.2f\n", a, s, a / s }'
  fi
}
