# OpenBao policy for snapward's backups: read the raft snapshot, nothing else.
# (A restore needs no policy here: snapward temp-initialises the wiped node 0
# and restores with that temporary root token, held only in memory. Init,
# unseal, seal-status, leader and health need no token at all.)
#
# Install it and bind it to the Kubernetes auth role `snapward`, which the
# policy's cluster.auth.kubernetes.role names. Run once, as an operator:
#
#   bao policy write snapward deploy/openbao/snapward.hcl
#
#   # Kubernetes auth, if not enabled yet. OpenBao in the same cluster reviews
#   # tokens with its own service account, which needs system:auth-delegator
#   # (the OpenBao Helm chart's server.authDelegator.enabled).
#   bao auth enable kubernetes
#   bao write auth/kubernetes/config kubernetes_host=https://kubernetes.default.svc
#
#   bao write auth/kubernetes/role/snapward \
#       bound_service_account_names=snapward \
#       bound_service_account_namespaces=openbao \
#       audience=openbao \
#       token_policies=snapward \
#       token_ttl=15m \
#       token_max_ttl=1h
#
# The token lives only for one run (login at the start, in memory). Check:
#
#   bao read auth/kubernetes/role/snapward
#   bao policy read snapward
#
# Note for restores: the raft snapshot carries OpenBao's whole storage, auth
# configuration included. After a restore the role and this policy are back
# as they were in the snapshot.

path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}
