#!/usr/bin/env bash
# Runs the whole test suite against the newest tested OpenBao, then a smoke
# set against the older one (README "Tested OpenBao versions"; real OpenBao,
# S3 servers: installed by scripts/test-env.sh), and ends with one summary
# line over every test binary of both runs.
#   scripts/run-tests.sh           both
#   scripts/run-tests.sh --smoke   the smoke set on the older OpenBao only
set -euo pipefail
cd "$(dirname "$0")/.."
full=1
case "${1:-}" in
  "") ;;
  --smoke) full=0 ;;
  *) echo "usage: scripts/run-tests.sh [--smoke]" >&2; exit 2 ;;
esac
eval "$(scripts/test-env.sh)"
# The smoke set on the older OpenBao: a backup, a Shamir restore (local and
# from S3) and an auto-unseal restore. Exact names: a renamed test must fail
# this script, not silently drop out of the set.
smoke=(
  drills::a_sealed_after_restart_is_unsealed_with_stored_keys_then_backed_up
  drills::b_raft_data_lost_is_restored_from_the_local_snapshot
  drills::c_raft_data_and_local_snapshots_lost_is_restored_from_s3
  auto_unseal::static_seal_raft_data_lost_is_restored_from_the_local_store
)
[ -n "${SNAPWARD_TEST_BAO_OLD:-}" ] || {
  echo "run-tests: SNAPWARD_TEST_BAO_OLD is not set (scripts/test-env.sh could not install the older OpenBao)" >&2
  exit 1
}
new_version=$("$SNAPWARD_TEST_BAO" version); new_version=${new_version%% (*}
old_version=$("$SNAPWARD_TEST_BAO_OLD" version); old_version=${old_version%% (*}
[ "$new_version" != "$old_version" ] || {
  echo "run-tests: SNAPWARD_TEST_BAO and SNAPWARD_TEST_BAO_OLD are the same version: $new_version" >&2
  exit 1
}
log=$(mktemp)
smoke_log=$(mktemp)
trap 'rm -f "$log" "$smoke_log"' EXIT
# count LOG WORD: the sum of "N WORD" over the cargo test result lines of LOG
count() {
  awk -v w="$2" '/^test result:/ { for (i = 2; i <= NF; i++) if ($i ~ "^" w ";?$") n += $(i-1) } END { print n + 0 }' "$1"
}
set +e
rc=0
if [ "$full" = 1 ]; then
  echo "== full suite on $new_version"
  cargo test --locked --no-fail-fast --all-targets --features failpoints -- --test-threads 2 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
fi
echo "== smoke set on $old_version: ${#smoke[@]} tests"
SNAPWARD_TEST_BAO=$SNAPWARD_TEST_BAO_OLD \
  cargo test --locked --features failpoints --test it -- --exact "${smoke[@]}" --test-threads 2 2>&1 | tee "$smoke_log"
smoke_rc=${PIPESTATUS[0]}
set -e
# A name that matches no test runs nothing and passes: count it as failed.
missing=0
for t in "${smoke[@]}"; do
  if ! grep -q "^test $t \.\.\. " "$smoke_log"; then
    [ "$missing" != 0 ] || echo "run-tests: smoke tests that did not run on $old_version (renamed or missing):" >&2
    echo "  $t" >&2
    missing=$((missing + 1))
  fi
done
[ "$missing" = 0 ] || [ "$smoke_rc" != 0 ] || smoke_rc=1
passed=$(($(count "$log" passed) + $(count "$smoke_log" passed)))
failed=$(($(count "$log" failed) + $(count "$smoke_log" failed) + missing))
echo "summary: $passed passed, $failed failed"
[ "$rc" != 0 ] || rc=$smoke_rc
exit "$rc"
