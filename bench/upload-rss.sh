#!/usr/bin/env bash
# Peak RSS of `snapward run` while it uploads a 1 GiB and a 4 GiB snapshot
# (goal: flat in the snapshot size, <= 64 MiB). A benchmark, not a test.
#
#   bench/upload-rss.sh [RUNS]            (default: 2 runs per size)
#
# Starts a small healthy single-node OpenBao (so `run` takes the backup
# branch) and s3s-fs, builds synthetic valid snapshots with
# examples/make_big_snapshot.rs and puts each in the policy's local dir as
# `openbao-20261101-000000.snap`: the run uploads it as backlog (and its own
# few-KiB snapshot). Measured with `/usr/bin/time -v` (Maximum resident set
# size) — the whole process: the local inventory's `verify` of these files
# and the multipart upload. A baseline run with an empty local dir shows the
# fixed cost. The 4 GiB case needs ~10 GiB free (file + the server's copy +
# its multipart parts) and is skipped with a message if space is short.
#
# SNAPWARD=/path/to/snapward times that binary. Stops everything on exit.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
RUNS=${1:-2}
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (Debian: apt-get install -y time)"

bench_setup --example make_big_snapshot
MAKE_SNAP="$CARGO_TARGET_DIR/release/examples/make_big_snapshot"
machine_note
df -h "$WORK" >&2

start_bao small
bao_ready small
start_s3s
make_bucket bench

write_policy() { # FILE LOCAL_DIR PREFIX
  cat > "$1" <<EOF
apiVersion: snapward.dev/v1alpha1
kind: SnapshotPolicy
metadata: {name: rss}
spec:
  cluster:
    nodes: [{name: small-0, address: "${BAO_API[small]}"}]
    auth: {tokenFile: $WORK/small/root-token}
  local:
    path: $2
    retention: {keepLast: 5}
  targets:
    - name: s3
      s3:
        endpoint: $S3_ENDPOINT
        region: us-east-1
        bucket: bench
        prefix: $3
        pathStyle: true
        credentials: {accessKeyIdFile: $WORK/creds/access-key-id, secretAccessKeyFile: $WORK/creds/secret-access-key}
      retention: {keepLast: 10}
EOF
}

# measure LABEL MIB RUN: one timed run; prints a result line, appends to RESULTS.
RESULTS=()
measure() {
  local label=$1 mib=$2 run=$3 dir="$WORK/local-$1-$3" pol="$WORK/$1-$3.yaml"
  local rep="$WORK/$1-$3.json" tv="$WORK/$1-$3.time" rc=0
  mkdir -p "$dir"
  if [ "$mib" -gt 0 ]; then ln "$WORK/big-$mib.snap" "$dir/openbao-20261101-000000.snap"; fi
  write_policy "$pol" "$dir" "$label-$run/"
  [ "$run" = 1 ] && show_cmd /usr/bin/time -v -o "$tv" "$SNAPWARD" --log-format json run -f "$pol" --report "$rep"
  /usr/bin/time -v -o "$tv" "$SNAPWARD" --log-format json run -f "$pol" --report "$rep" \
    >/dev/null 2>"$WORK/$label-$run.log" || rc=$?
  [ "$rc" = 0 ] || { tail -5 "$WORK/$label-$run.log" >&2; die "snapward run exited $rc"; }
  if [ "$mib" -gt 0 ]; then
    local got
    got=$(stat -c %s "$S3_DATA/bench/$label-$run/openbao-20261101-000000.snap" 2>/dev/null || echo 0)
    [ "$got" = "$(stat -c %s "$WORK/big-$mib.snap")" ] || die "the $label snapshot was not uploaded"
  fi
  local kib wall
  kib=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$tv")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$tv")
  local line
  line=$(printf '%-9s run %d: max RSS %6.1f MiB  wall %s  observe %s ms  upload:s3 %s ms  prune:local %s ms' \
    "$label" "$run" "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')" "$wall" \
    "$(action_ms "$rep" observe)" "$(action_ms "$rep" upload:s3)" "$(action_ms "$rep" prune:local)")
  note "  $line"
  RESULTS+=("$line")
  RSS["$label"]="${RSS[$label]:-} $kib"
  rm -rf "$dir" "${S3_DATA:?}/bench/$label-$run"
}
declare -A RSS=()

say "baseline: no backlog (the small cluster's own snapshot only)"
for r in $(seq "$RUNS"); do measure baseline 0 "$r"; done

for mib in 1024 4096; do
  avail=$(df -Pm "$WORK" | awk 'NR == 2 { print $4 }')
  need=$((mib * 5 / 2 + 1024))
  if [ "$avail" -lt "$need" ]; then
    note "skipping the $mib MiB case: $avail MiB free under $WORK, needs ~$need MiB"
    continue
  fi
  say "$mib MiB snapshot as backlog"
  show_cmd "$MAKE_SNAP" "$WORK/big-$mib.snap" "$mib"
  "$MAKE_SNAP" "$WORK/big-$mib.snap" "$mib"
  for r in $(seq "$RUNS"); do measure "${mib}MiB" "$mib" "$r"; done
  if [ "$mib" = 1024 ]; then
    # For reference: rclone's peak RSS for the same upload.
    tv="$WORK/rclone.time"
    /usr/bin/time -v -o "$tv" env -u AWS_CA_BUNDLE rclone copy --s3-provider Other \
      --s3-endpoint "$S3_ENDPOINT" --s3-access-key-id "$S3_AK" --s3-secret-access-key "$S3_SK" \
      --s3-force-path-style --s3-region us-east-1 "$WORK/big-$mib.snap" ":s3:bench/rclone/" 2>/dev/null
    line=$(printf 'rclone    1024 MiB: max RSS %6.1f MiB (reference)' \
      "$(awk -F': ' '/Maximum resident set size/ { print $2 / 1024 }' "$tv")")
    note "  $line"; RESULTS+=("$line")
    rm -rf "${S3_DATA:?}/bench/rclone"
  fi
  rm -f "$WORK/big-$mib.snap"
done

{
  printf '\n== results: peak RSS of snapward run uploading a backlog snapshot (s3s-fs, multipart 16 MiB parts)\n'
  machine_note 2>&1
  printf '%s\n' "${RESULTS[@]}"
  for label in baseline 1024MiB 4096MiB; do
    [ -n "${RSS[$label]:-}" ] || continue
    # shellcheck disable=SC2086
    printf '%-9s max RSS: worst %.1f MiB (goal <= 64 MiB)\n' "$label" \
      "$(printf '%s\n' ${RSS[$label]} | sort -g | tail -1 | awk '{ print $1 / 1024 }')"
  done
  if [ -n "${RSS[1024MiB]:-}" ] && [ -n "${RSS[4096MiB]:-}" ]; then
    # shellcheck disable=SC2086
    awk -v a="$(printf '%s\n' ${RSS[1024MiB]} | sort -g | tail -1)" \
        -v b="$(printf '%s\n' ${RSS[4096MiB]} | sort -g | tail -1)" 'BEGIN {
      printf "flat? 4 GiB / 1 GiB peak RSS = %.2f; goal <= 64 MiB: %s\n", b / a, (b / 1024 <= 64 && a / 1024 <= 64) ? "met" : "NOT met" }'
  fi
}
