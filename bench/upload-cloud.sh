#!/usr/bin/env bash
# Upload throughput of snapward's cloud targets: the Azure Blob target
# (object_store) to Azurite next to the S3 target (aws-sdk-s3) to s3s-fs,
# same file, same machine, release build. A benchmark, not a test.
#
#   bench/upload-cloud.sh [SIZE_MIB] [ROUNDS]      (defaults: 256 MiB, 3 rounds)
#
# Each round is one `Target::put` — what the `upload:<target>` action runs:
# create-only upload (Azure: staged block upload + create-only copy; S3:
# multipart) and the read-back confirmation (Azure reads the blob back in
# full and hashes it; S3 HEADs the checksum). Prints MiB/s best/median/worst.
# Both servers are local emulators on loopback: the figures compare the
# client paths, not the clouds. Everything started is stopped on exit.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
SIZE_MIB=${1:-256}
ROUNDS=${2:-3}

bench_setup --example upload_cloud
machine_note
[ -n "${SNAPWARD_TEST_AZURITE:-}" ] || die "SNAPWARD_TEST_AZURITE is not set (scripts/test-env.sh installs Azurite)"

say "starting Azurite and s3s-fs"
AZ_PORT=$(free_port)
mkdir -p "$WORK/azurite"
"$SNAPWARD_TEST_AZURITE" --blobHost 127.0.0.1 --blobPort "$AZ_PORT" --location "$WORK/azurite" \
  --skipApiVersionCheck --loose --disableTelemetry --silent >"$WORK/azurite.log" 2>&1 &
BENCH_PIDS+=("$!")
for _ in $(seq 200); do
  grep -q "successfully listens" "$WORK/azurite.log" 2>/dev/null && break
  sleep 0.1
done
grep -q "successfully listens" "$WORK/azurite.log" || die "Azurite did not start: $(tail -5 "$WORK/azurite.log")"
# The emulator's well-known account key (published by Microsoft).
printf '%s' 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==' > "$WORK/azurite-key"
start_s3s
make_bucket bench

say "uploading $SIZE_MIB MiB x $ROUNDS rounds"
show_cmd "upload_cloud $SIZE_MIB $ROUNDS azure=http://127.0.0.1:$AZ_PORT/devstoreaccount1,... s3=$S3_ENDPOINT,..."
"$CARGO_TARGET_DIR/release/examples/upload_cloud" "$SIZE_MIB" "$ROUNDS" \
  "azure=http://127.0.0.1:$AZ_PORT/devstoreaccount1,$WORK/azurite-key" \
  "s3=$S3_ENDPOINT,$WORK/creds/access-key-id,$WORK/creds/secret-access-key"
