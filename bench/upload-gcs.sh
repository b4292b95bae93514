#!/usr/bin/env bash
# Upload throughput of `snapward run` to fake-gcs-server (the `gcs` target,
# resumable upload in 8 MiB chunks) next to s3s-fs (the `s3` target,
# multipart 16 MiB parts), same snapshot, same machine. A benchmark, not a
# test.
#
#   bench/upload-gcs.sh [SIZE_MIB] [ROUNDS]      (defaults: 256 MiB, 3 rounds)
#
# Starts a small healthy single-node OpenBao (so `run` takes the backup
# branch), s3s-fs and fake-gcs-server, builds one synthetic valid snapshot
# with examples/make_big_snapshot.rs and, per round and target (order
# alternating), puts it in a fresh local dir as backlog
# (`openbao-20261101-000000.snap`): the run uploads it. The figure is the
# `upload:<target>` action's durationMs of that file's upload from the JSON
# report (the run's own few-KiB snapshot is uploaded too; a baseline run
# without backlog shows that fixed cost). MiB/s = SIZE / seconds.
#
# SNAPWARD=/path/to/snapward times that binary. Stops everything on exit.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
SIZE_MIB=${1:-256}
ROUNDS=${2:-3}
[ -n "${SNAPWARD_TEST_FAKE_GCS:-}" ] || eval "$(scripts/test-env.sh)"

bench_setup --example make_big_snapshot
MAKE_SNAP="$CARGO_TARGET_DIR/release/examples/make_big_snapshot"
machine_note

start_bao small
bao_ready small
start_s3s
make_bucket bench
GCS_PORT=$(free_port)
GCS_ENDPOINT="http://127.0.0.1:$GCS_PORT"
mkdir -p "$WORK/gcsdata"
"$SNAPWARD_TEST_FAKE_GCS" -scheme http -host 127.0.0.1 -port "$GCS_PORT" -backend filesystem \
  -filesystem-root "$WORK/gcsdata" -public-host "127.0.0.1:$GCS_PORT" -log-level warn \
  >"$WORK/fake-gcs.log" 2>&1 &
BENCH_PIDS+=("$!")
for _ in $(seq 100); do curl -s -o /dev/null "$GCS_ENDPOINT/storage/v1/b" && break; sleep 0.1; done
curl -sf -X POST "$GCS_ENDPOINT/storage/v1/b" -d '{"name":"bench"}' >/dev/null || die "fake-gcs-server did not start"

write_policy() { # FILE LOCAL_DIR KIND PREFIX
  local target
  if [ "$3" = s3 ]; then
    target="    - name: s3
      s3:
        endpoint: $S3_ENDPOINT
        region: us-east-1
        bucket: bench
        prefix: $4
        pathStyle: true
        credentials: {accessKeyIdFile: $WORK/creds/access-key-id, secretAccessKeyFile: $WORK/creds/secret-access-key}
      retention: {keepLast: 10}"
  else
    target="    - name: gcs
      gcs:
        endpoint: $GCS_ENDPOINT
        bucket: bench
        prefix: $4
      retention: {keepLast: 10}"
  fi
  cat > "$1" <<EOP
apiVersion: snapward.dev/v1alpha1
kind: SnapshotPolicy
metadata: {name: upload-gcs}
spec:
  cluster:
    nodes: [{name: small-0, address: "${BAO_API[small]}"}]
    auth: {tokenFile: $WORK/small/root-token}
  local:
    path: $2
    retention: {keepLast: 5}
  targets:
$target
EOP
}

declare -A SECS=()
RESULTS=()
measure() { # KIND RUN MIB
  local kind=$1 run=$2 mib=$3 dir="$WORK/local-$1-$2-$3" pol="$WORK/$1-$2-$3.yaml" rep="$WORK/$1-$2-$3.json" rc=0
  mkdir -p "$dir"
  [ "$mib" -gt 0 ] && ln "$WORK/big.snap" "$dir/openbao-20261101-000000.snap"
  write_policy "$pol" "$dir" "$kind" "r$run-$mib/"
  [ "$run" = 1 ] && show_cmd "$SNAPWARD" --log-format json run -f "$pol" --report "$rep"
  "$SNAPWARD" --log-format json run -f "$pol" --report "$rep" >/dev/null 2>"$WORK/$kind-$run-$mib.log" || rc=$?
  [ "$rc" = 0 ] || { tail -5 "$WORK/$kind-$run-$mib.log" >&2; die "snapward run exited $rc"; }
  local ms; ms=$(action_ms "$rep" "upload:$kind")
  local line
  line=$(printf '%-4s %4d MiB round %d: upload:%s %6s ms  %s MiB/s' "$kind" "$mib" "$run" "$kind" "$ms" \
    "$(awk -v m="$mib" -v ms="$ms" 'BEGIN { if (m == 0 || ms == 0) print "-"; else printf "%.1f", m / (ms / 1000) }')")
  note "  $line"; RESULTS+=("$line")
  [ "$mib" -gt 0 ] && SECS[$kind]="${SECS[$kind]:-} $(awk -v ms="$ms" 'BEGIN { print ms / 1000 }')"
  rm -rf "$dir"
}

say "baseline: no backlog (the small cluster's own snapshot only)"
measure s3 1 0; measure gcs 1 0

say "$SIZE_MIB MiB snapshot as backlog"
show_cmd "$MAKE_SNAP" "$WORK/big.snap" "$SIZE_MIB"
"$MAKE_SNAP" "$WORK/big.snap" "$SIZE_MIB"
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then measure s3 "$r" "$SIZE_MIB"; measure gcs "$r" "$SIZE_MIB"
  else measure gcs "$r" "$SIZE_MIB"; measure s3 "$r" "$SIZE_MIB"; fi
  rm -rf "${S3_DATA:?}/bench/r$r-$SIZE_MIB" "$WORK/gcsdata/bench/r$r-$SIZE_MIB"
done

{
  printf '\n== results: upload of a %s MiB snapshot by snapward run (release), %s rounds\n' "$SIZE_MIB" "$ROUNDS"
  machine_note 2>&1
  printf '%s\n' "${RESULTS[@]}"
  for kind in s3 gcs; do
    # shellcheck disable=SC2086
    printf '%-4s upload: %s  → best %.1f MiB/s\n' "$kind" "$(stats ${SECS[$kind]})" \
      "$(awk -v m="$SIZE_MIB" -v s="$(min_of ${SECS[$kind]})" 'BEGIN { print m / s }')"
  done
}
