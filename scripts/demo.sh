#!/usr/bin/env bash
# `make demo`: backup, wipe, automatic restore against a real local OpenBao
# and a real local S3 server.
set -euo pipefail
echo "make demo: not yet — the automatic restore lands with the restore issue (#4)."
echo "Until then: 'make test' runs the policy, plan and verify suites; 'snapward plan -f policies/local-ci.yaml' shows what a run would do."
