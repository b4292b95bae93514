#!/usr/bin/env bash
# `make demo`: a real local OpenBao (raft, 1 node) and a real local S3 server
# (moto), then: init → write a secret → backup → wipe the raft data →
# automatic restore → read the secret back. Prints the plan before each run
# and stops everything it started, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/test-env.sh)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/snapward/target}
cargo build -q
snapward="$CARGO_TARGET_DIR/debug/snapward"
venv_python="$(dirname "$SNAPWARD_TEST_MOTO")/python"

work=$(mktemp -d /tmp/snapward-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

api=$(free_port); cluster=$(free_port); s3=$(free_port)
mkdir -p "$work/raft" "$work/snapshots" "$work/keys" "$work/creds"
cat > "$work/bao.hcl" <<EOF
storage "raft" {
  path = "$work/raft"
  node_id = "demo-0"
  performance_multiplier = 1
}
listener "tcp" {
  address = "127.0.0.1:$api"
  cluster_address = "127.0.0.1:$cluster"
  tls_disable = true
}
api_addr = "http://127.0.0.1:$api"
cluster_addr = "http://127.0.0.1:$cluster"
disable_mlock = true
ui = false
EOF

start_bao() {
  "$SNAPWARD_TEST_BAO" server -config="$work/bao.hcl" >>"$work/bao.log" 2>&1 &
  bao_pid=$!
  pids+=("$bao_pid")
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$api/v1/sys/seal-status" && return 0
    sleep 0.2
  done
  echo "OpenBao did not start; log:" >&2; tail -20 "$work/bao.log" >&2; exit 1
}

say "starting OpenBao (raft) on 127.0.0.1:$api and moto (S3) on 127.0.0.1:$s3"
start_bao
"$SNAPWARD_TEST_MOTO" -H 127.0.0.1 -p "$s3" >"$work/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$s3/" && break; sleep 0.2; done
printf demo > "$work/creds/access-key-id"; printf demo-secret > "$work/creds/secret-access-key"
AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo-secret "$venv_python" - "$s3" <<'EOF'
import sys, boto3
boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1").create_bucket(Bucket="openbao-snapshots")
EOF

cat > "$work/policy.yaml" <<EOF
apiVersion: snapward.dev/v1alpha1
kind: SnapshotPolicy
metadata: {name: demo}
spec:
  cluster:
    nodes: [{name: demo-0, address: "http://127.0.0.1:$api"}]
    auth: {tokenFile: $work/keys/root-token}   # demo only: use a snapshot-only token in production
  local:
    path: $work/snapshots
    retention: {keepLast: 5}
  targets:
    - name: s3
      s3:
        endpoint: http://127.0.0.1:$s3
        bucket: openbao-snapshots
        prefix: demo/
        pathStyle: true
        credentials: {accessKeyIdFile: $work/creds/access-key-id, secretAccessKeyFile: $work/creds/secret-access-key}
      retention: {keepLast: 10}
  unsealKeys:
    files: {directory: $work/keys}
  restore: {mode: auto}
  init: {allowed: true, shares: 3, threshold: 2, storeRootToken: true}
EOF
"$snapward" lint "$work/policy.yaml"

run() {
  say "plan: snapward run --dry-run"
  "$snapward" --log-format human run -f "$work/policy.yaml" --dry-run 2>/dev/null | sed 's/^/  /'
  say "snapward run"
  set +e
  "$snapward" --log-format human run -f "$work/policy.yaml" --report "$work/report-$1.json"
  local rc=$?
  set -e
  echo "exit code: $rc"
  [ "$rc" = 0 ] || { echo "unexpected exit code; OpenBao log tail:"; tail -20 "$work/bao.log"; exit 1; }
}

say "1. a fresh cluster: snapward initialises it (keys stored create-only in $work/keys)"
run init
token=$(cat "$work/keys/root-token")
bao_api() { curl -sf -H "X-Vault-Token: $token" "$@"; }
bao_api -X POST -d '{"type":"kv","options":{"version":"2"}}' "http://127.0.0.1:$api/v1/sys/mounts/secret" >/dev/null
bao_api -X POST -d '{"data":{"answer":"42"}}' "http://127.0.0.1:$api/v1/secret/data/demo" >/dev/null
say "wrote secret/demo = {answer: 42}"

say "2. nightly backup: snapshot from the active node, verify, upload to S3, prune"
run backup
ls -l "$work/snapshots"

say "3. disaster: stop OpenBao and wipe its raft data"
kill "$bao_pid"; wait "$bao_pid" 2>/dev/null || true
rm -rf "$work/raft"; mkdir -p "$work/raft"
start_bao
curl -s "http://127.0.0.1:$api/v1/sys/seal-status"; echo

say "4. snapward run again: it sees a wiped cluster, keys and a valid snapshot, and restores"
run restore

say "5. read the secret back with the ORIGINAL root token"
bao_api "http://127.0.0.1:$api/v1/secret/data/demo" | "$venv_python" -c 'import json,sys; d=json.load(sys.stdin)["data"]["data"]; print("secret/demo =", d); assert d == {"answer": "42"}'
say "demo done: backup → wipe → automatic restore; stopping everything"
