# OpenBao policy for the optional restore canary (policy
# spec.restore.canary): after a restore snapward reads this one path with
# the token in the snapward-canary-token Secret, to prove data is back.
#
#   bao kv put secret/snapward-canary written-by=snapward-setup
#   bao policy write snapward-canary deploy/openbao/snapward-canary.hcl
#   bao token create -policy=snapward-canary -orphan -period=768h \
#       -display-name=snapward-canary -field=token > canary-token
#   kubectl -n openbao create secret generic snapward-canary-token \
#       --from-file=token=./canary-token && rm canary-token
#
# snapward does not renew this token: a periodic token expires unless
# something renews it within its period (`bao token renew`, from whatever
# already rotates your credentials). An expired canary token fails the
# post-restore check (verify-cluster, exit 4) even though the restore itself
# worked — rotate it, or leave `canary` out of the policy.

path "secret/data/snapward-canary" {
  capabilities = ["read"]
}
