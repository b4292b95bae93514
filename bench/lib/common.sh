# Shared helpers of the bench/*.sh scripts (sourced, not run). Starts real
# OpenBao and s3s-fs processes on loopback ports in a temp dir and stops
# every process it started on exit, whatever happens.
#
#   source "$(dirname "$0")/lib/common.sh"
#   bench_setup [--example make_big_snapshot]   # build, env, $WORK, trap
#   start_bao NAME [static]        # raft, 1 node; BAO_API[NAME]=http://127.0.0.1:P
#                                  # static: auto-unseal, seal "static" (key in $WORK/NAME)
#   bao_init NAME SHARES THRESHOLD # $WORK/NAME/init.json, root-token, keys/unseal-key-i
#   bao_unseal NAME KEYFILE...     # PUT sys/unseal with each key
#   bao_wait_active NAME           # sys/leader is_self
#   start_s3s                      # s3s-fs; S3_PORT, S3_ENDPOINT, $WORK/creds/*
#   make_bucket NAME
#   t0=$(now_ns); ...; secs_since "$t0"

set -euo pipefail

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
S3_AK=bench-access-key
S3_SK=bench-secret-key-0123456789
declare -A BAO_API=() BAO_PID=() BAO_DIR=()
BENCH_PIDS=()

say() { printf '\n== %s\n' "$*" >&2; }
note() { printf '%s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
now_ns() { date +%s%N; }
secs_since() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
# Prints a command line the way it was run (for the record).
show_cmd() { printf '  $ %s\n' "$*" >&2; }

bench_cleanup() {
  local p
  for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${BENCH_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${WORK:-}" ] && [ -d "$WORK" ] && [ -z "${BENCH_KEEP:-}" ]; then rm -rf "$WORK"; fi
}

# Builds snapward (release) and the given examples, sets up the test
# servers' environment, $WORK (a temp dir) and the cleanup trap.
bench_setup() {
  cd "$BENCH_ROOT"
  eval "$(scripts/test-env.sh)"
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/snapward/target}
  local examples=()
  while [ $# -gt 0 ]; do
    case $1 in
      --example) examples+=(--example "$2"); shift 2 ;;
      *) die "bench_setup: unknown argument $1" ;;
    esac
  done
  # SNAPWARD=/path/to/snapward times that binary instead of building one.
  local bins=(--bin snapward)
  [ -n "${SNAPWARD:-}" ] && bins=()
  if [ ${#bins[@]} -gt 0 ] || [ ${#examples[@]} -gt 0 ]; then
    note "building ${bins[*]} ${examples[*]} (release) in $CARGO_TARGET_DIR ..."
    cargo build --release -q "${bins[@]}" "${examples[@]}"
  fi
  SNAPWARD=${SNAPWARD:-$CARGO_TARGET_DIR/release/snapward}
  [ -x "$SNAPWARD" ] || die "no snapward binary at $SNAPWARD"
  VENV_PY="$(dirname "$SNAPWARD_TEST_MOTO")/python"
  BAO_BIN=$SNAPWARD_TEST_BAO
  WORK=$(mktemp -d "${BENCH_TMP:-/tmp}/snapward-bench.XXXXXX")
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  note "work dir: $WORK (removed on exit; BENCH_KEEP=1 keeps it)"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_bao NAME [static]: a new single-node raft OpenBao in $WORK/NAME
# (uninitialised). With "static" it auto-unseals through a static seal
# whose 32-byte key is $WORK/NAME/seal-key (DESIGN.md §8): init with
# recovery shares, no unseal key ever.
start_bao() {
  local name=$1 dir="$WORK/$1" seal=${2:-shamir}
  local api cluster
  api=$(free_port); cluster=$(free_port)
  mkdir -p "$dir/raft"
  case $seal in
    shamir) : > "$dir/seal.hcl" ;;
    static)
      head -c 32 /dev/urandom > "$dir/seal-key"; chmod 600 "$dir/seal-key"
      printf 'seal "static" {\n  current_key_id = "bench-1"\n  current_key = "file://%s"\n}\n' "$dir/seal-key" > "$dir/seal.hcl"
      ;;
    *) die "start_bao: unknown seal $seal" ;;
  esac
  { cat "$dir/seal.hcl"; cat <<EOF
storage "raft" {
  path = "$dir/raft"
  node_id = "$name-0"
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
log_level = "warn"
EOF
  } > "$dir/bao.hcl"
  BAO_API[$name]="http://127.0.0.1:$api"
  BAO_DIR[$name]=$dir
  bao_launch "$name"
}

# bao_launch NAME: (re)start the server process of NAME and wait until it
# answers. The answer must come from THAT process: a restart reuses the
# ports, and on a shared machine another test's server may have taken one
# in between (ours then exits, and a bare "something answers" check would
# go on against the stranger's server).
bao_launch() {
  local name=$1 dir=${BAO_DIR[$1]} pid port=${BAO_API[$1]##*:}
  "$BAO_BIN" server -config="$dir/bao.hcl" >>"$dir/bao.log" 2>&1 &
  pid=$!
  BAO_PID[$name]=$pid
  BENCH_PIDS+=("$pid")
  local _
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    if ss -ltnpH "sport = :$port" 2>/dev/null | grep -q "pid=$pid,"; then
      curl -s -o /dev/null "${BAO_API[$name]}/v1/sys/seal-status" && return 0
    fi
    sleep 0.1
  done
  tail -20 "$dir/bao.log" >&2
  kill -0 "$pid" 2>/dev/null || die "OpenBao $name exited (port $port taken by another process? $(ss -ltnpH "sport = :$port" 2>/dev/null))"
  die "OpenBao $name did not start"
}

# bao_stop NAME: stop the server process (SIGTERM, wait).
bao_stop() {
  local pid=${BAO_PID[$1]}
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# bao_wipe NAME: stop, delete the raft data, start again (uninitialised).
bao_wipe() {
  bao_stop "$1"
  rm -rf "${BAO_DIR[$1]}/raft"
  mkdir -p "${BAO_DIR[$1]}/raft"
  bao_launch "$1"
}

# bao_init NAME SHARES THRESHOLD: init; writes init.json, root-token and
# keys/unseal-key-<i> (the layout of snapward's files key store).
bao_init() {
  local name=$1 dir=${BAO_DIR[$1]}
  curl -sf -X PUT -d "{\"secret_shares\":$2,\"secret_threshold\":$3}" \
    "${BAO_API[$name]}/v1/sys/init" > "$dir/init.json"
  mkdir -p "$dir/keys"; chmod 700 "$dir/keys"
  jq -r .root_token "$dir/init.json" | tr -d '\n' > "$dir/root-token"
  local i=0 k
  for k in $(jq -r '.keys_base64[]' "$dir/init.json"); do
    printf '%s' "$k" > "$dir/keys/unseal-key-$i"; i=$((i + 1))
  done
}

bao_unseal() {
  local name=$1 f; shift
  for f in "$@"; do
    curl -sf -X PUT -d "{\"key\":\"$(cat "$f")\"}" "${BAO_API[$name]}/v1/sys/unseal" >/dev/null
  done
}

bao_wait_active() {
  local _
  for _ in $(seq 600); do
    if curl -sf "${BAO_API[$1]}/v1/sys/leader" 2>/dev/null | jq -e '.is_self == true' >/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  die "OpenBao $1 did not become active"
}

# bao_api NAME CURL_ARGS... with the root token of NAME.
bao_api() {
  local name=$1; shift
  curl -sf -H "X-Vault-Token: $(cat "${BAO_DIR[$name]}/root-token")" "$@"
}

# bao_ready NAME: init (1 share), unseal, wait active, enable kv-v2 at secret/.
bao_ready() {
  bao_init "$1" 1 1
  bao_unseal "$1" "${BAO_DIR[$1]}/keys/unseal-key-0"
  bao_wait_active "$1"
  bao_enable_kv "$1"
}

bao_enable_kv() {
  # Right after an init the node may not serve writes yet (it answers 500
  # "local node not active" for a moment): wait until it is the active node.
  bao_wait_active "$1"
  bao_api "$1" -X POST -d '{"type":"kv","options":{"version":"2"}}' \
    "${BAO_API[$1]}/v1/sys/mounts/secret" >/dev/null \
    || die "OpenBao $1: enabling kv-v2 at secret/ failed"
}

# bao_fill NAME MIB [WORKERS]: write MIB MiB of ~512 KiB random base64 values.
bao_fill() {
  "$VENV_PY" "$BENCH_ROOT/bench/lib/fill.py" "${BAO_API[$1]}" "${BAO_DIR[$1]}/root-token" \
    secret "$2" "${3:-4}" 512 "${4:-0}"
}

# bao_raft_db_mib NAME: size of the raft FSM database (vault.db), MiB.
bao_raft_db_mib() {
  du -m "${BAO_DIR[$1]}/raft/vault.db" | cut -f1
}

start_s3s() {
  S3_PORT=$(free_port)
  S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
  S3_DATA="$WORK/s3data"
  mkdir -p "$S3_DATA" "$WORK/creds"
  printf '%s' "$S3_AK" > "$WORK/creds/access-key-id"
  printf '%s' "$S3_SK" > "$WORK/creds/secret-access-key"
  "$SNAPWARD_TEST_S3S_FS" --host 127.0.0.1 --port "$S3_PORT" \
    --access-key "$S3_AK" --secret-key "$S3_SK" "$S3_DATA" >"$WORK/s3s-fs.log" 2>&1 &
  BENCH_PIDS+=("$!")
  local _
  for _ in $(seq 100); do
    curl -s -o /dev/null "$S3_ENDPOINT/" && return 0
    sleep 0.1
  done
  die "s3s-fs did not start"
}

make_bucket() {
  AWS_ACCESS_KEY_ID=$S3_AK AWS_SECRET_ACCESS_KEY=$S3_SK "$VENV_PY" - "$S3_ENDPOINT" "$1" <<'EOF'
import sys, boto3
boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1").create_bucket(Bucket=sys.argv[2])
EOF
}

# report_actions FILE: one line per action of a snapward --report file.
report_actions() {
  jq -r '.actions[] | select(.status != "skipped") |
    "    \(.id | .+ " " * (20 - length)) \(.status | .+ " " * (14 - length)) \(.durationMs) ms  \(.bytes) bytes  \(.reason // "")"' "$1" | cut -c1-170 >&2
}

# action_ms FILE ID: durationMs of one action of a report.
action_ms() { jq -r --arg id "$2" '.actions[] | select(.id == $id) | .durationMs' "$1"; }

# stats V...: "best B  median M  worst W  (n=N)" of seconds.
stats() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "best %.2f s  median %.2f s  worst %.2f s  (n=%d)", v[1], m, v[NR], NR }'
}
min_of() { printf '%s\n' "$@" | sort -g | head -1; }
median_of() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# warm_memory MIB: writes a MIB-MiB file under $WORK, writes it back and
# removes it, so the guest's memory is touched once before anything is
# timed. On these VMs the first write into guest memory never touched
# since boot costs ~3.5 ns/B (dd into a new file: 224 MB/s; the same again
# once those pages were used: 2.5-3.9 GB/s). Without this, whichever
# contender first pushes the page cache past its high-water mark pays for
# it (in backup.sh: the second, steady-state run, which keeps the first
# run's files). A long-running node has touched its memory long ago.
# Capped at MemAvailable - 2 GiB; not timed.
warm_memory() {
  local want=$1 avail
  avail=$(awk '/^MemAvailable:/ { print int($2 / 1024) - 2048 }' /proc/meminfo)
  [ "$want" -gt "$avail" ] && want=$avail
  [ "$want" -gt 0 ] || return 0
  local t; t=$(now_ns)
  dd if=/dev/zero of="$WORK/warm-memory" bs=1M count="$want" status=none
  sync; rm -f "$WORK/warm-memory"
  note "touched $want MiB of guest memory (page cache) in $(secs_since "$t") s before timing"
}

# settle [KEEP...]: before a timed contender, untimed. Writes back every
# dirty page (sync), then drops from the page cache the files under $WORK
# (the local stores, the filesystem targets, the S3 server's data) except
# OpenBao's data dirs and the KEEP files: a nightly run meets yesterday's
# files long out of cache and the running server's files hot, and no
# contender pays for the writeback or the cached files of the one before
# it (otherwise the second run of a pair starts with the first run's
# ~1 GiB in cache and must find new pages for its own).
settle() {
  sync
  local f keep=" "
  for f in "$@"; do keep+="$(stat -c %d:%i "$f") "; done # hard links too
  while IFS= read -r -d '' f; do
    case $keep in *" $(stat -c %d:%i "$f") "*) continue ;; esac
    dd if="$f" iflag=nocache count=0 status=none 2>/dev/null || true
  done < <(find "$WORK" \( -path "$WORK/big" -o -path "$WORK/tiny" \) -prune -o -type f -size +1M -print0)
}

machine_note() {
  note "machine: $(nproc) CPUs, $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM, load $(cut -d' ' -f1-3 /proc/loadavg) — shared with other engineers' test runs; numbers are best-of-N with spread"
}
