#!/usr/bin/env bash
# Makes fixtures/snapshots/openbao-2.7.2-small.snap from a real OpenBao server.
#
# Starts a throwaway single-node raft server on 127.0.0.1 (ephemeral ports,
# temp dir), initialises it with 1 share / threshold 1, unseals it, enables
# kv-v2 at secret/, writes two secrets, saves a raft snapshot over the HTTP
# API, then stops the server and removes the temp dir (also on failure).
#
# The root token and unseal key live only in the temp dir and in this shell;
# nothing but the snapshot is written to the fixture directory.
#
#   eval "$(scripts/test-env.sh)"; scripts/make-snapshot-fixture.sh [OUT]
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/fixtures/snapshots/openbao-2.7.2-small.snap}"
bao="${SNAPWARD_TEST_BAO:-}"
if [ -z "$bao" ]; then
  eval "$("$repo/scripts/test-env.sh")"
  bao="$SNAPWARD_TEST_BAO"
fi
[ -x "$bao" ] || { echo "make-snapshot-fixture: no bao binary at '$bao'" >&2; exit 1; }
for tool in curl jq python3; do
  command -v "$tool" >/dev/null || { echo "make-snapshot-fixture: needs $tool" >&2; exit 1; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/snapward-fixture.XXXXXX")"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
port="$(free_port)"
cport="$(free_port)"
while [ "$cport" = "$port" ]; do cport="$(free_port)"; done
addr="http://127.0.0.1:$port"

mkdir -p "$work/raft"
cat >"$work/config.hcl" <<EOF
storage "raft" {
  path                   = "$work/raft"
  node_id                = "n0"
  performance_multiplier = 1
}
listener "tcp" {
  address     = "127.0.0.1:$port"
  tls_disable = true
}
api_addr      = "$addr"
cluster_addr  = "http://127.0.0.1:$cport"
disable_mlock = true
EOF

"$bao" server -config="$work/config.hcl" >"$work/server.log" 2>&1 &
pid=$!

fail() {
  echo "make-snapshot-fixture: $*" >&2
  tail -n 30 "$work/server.log" >&2 || true
  exit 1
}

# wait for the listener (sys/init needs no token)
for _ in $(seq 1 100); do
  if curl -fsS "$addr/v1/sys/init" >/dev/null 2>&1; then break; fi
  kill -0 "$pid" 2>/dev/null || fail "server exited"
  sleep 0.1
done
curl -fsS "$addr/v1/sys/init" >/dev/null || fail "server did not come up"

curl -fsS -X PUT -d '{"secret_shares":1,"secret_threshold":1}' \
  "$addr/v1/sys/init" >"$work/init.json" || fail "init failed"
key="$(jq -r '.keys_base64[0]' "$work/init.json")"
token="$(jq -r '.root_token' "$work/init.json")"

curl -fsS -X PUT -d "{\"key\":\"$key\"}" "$addr/v1/sys/unseal" >/dev/null || fail "unseal failed"

# wait until this node is the active node (leader) and answers health 200
for _ in $(seq 1 200); do
  code="$(curl -s -o /dev/null -w '%{http_code}' "$addr/v1/sys/health" || true)"
  [ "$code" = "200" ] && break
  sleep 0.1
done
[ "$code" = "200" ] || fail "node never became active (health $code)"

auth=(-H "X-Vault-Token: $token")
curl -fsS "${auth[@]}" -X POST -d '{"type":"kv","options":{"version":"2"}}' \
  "$addr/v1/sys/mounts/secret" >/dev/null || fail "enable kv-v2 failed"
# the kv-v2 mount upgrades itself in the background; retry the first write
for _ in $(seq 1 100); do
  if curl -fsS "${auth[@]}" -X POST -d '{"data":{"user":"app","password":"fixture-not-a-secret"}}' \
    "$addr/v1/secret/data/app/db" >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.1
done
[ "${ok:-}" = 1 ] || fail "kv write failed"
curl -fsS "${auth[@]}" -X POST -d '{"data":{"greeting":"hello from the snapward fixture"}}' \
  "$addr/v1/secret/data/app/hello" >/dev/null || fail "second kv write failed"

mkdir -p "$(dirname "$out")"
curl -fsS "${auth[@]}" "$addr/v1/sys/storage/raft/snapshot" -o "$work/snapshot.partial" \
  || fail "snapshot save failed"
mv "$work/snapshot.partial" "$out"

echo "make-snapshot-fixture: wrote $out ($(wc -c <"$out") bytes, sha256 $(sha256sum "$out" | cut -d' ' -f1))" >&2
