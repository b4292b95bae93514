//! The unseal keys: `spec.unsealKeys` (where they live) and `spec.init`
//! (their shape, and whether snapward may create them).
//!
//! Stage: validate. Pure.

use crate::diag::{Code, Finding};
use crate::policy::model::{Init, KeyStore};
use crate::policy::valid::{KeyLocation, KeyStoreSettings};

/// `Some(None)`: the policy names no key store; `None`: an error was reported.
pub(super) fn unseal_keys(
    keys: Option<&KeyStore>,
    policy_namespace: Option<&str>,
    out: &mut Vec<Finding>,
) -> Option<Option<KeyStoreSettings>> {
    let Some(k) = keys else {
        return Some(None);
    };
    let location = match (&k.files, &k.kubernetes_secret) {
        (Some(f), None) => KeyLocation::Files {
            directory: (&f.directory).into(),
        },
        (None, Some(s)) => KeyLocation::KubernetesSecret {
            name: s.name.clone(),
            namespace: s
                .namespace
                .as_deref()
                .or(policy_namespace)
                .map(str::to_owned),
        },
        _ => {
            out.push(
                Finding::error(
                    Code::KeyStoreKind,
                    "/spec/unsealKeys",
                    "give exactly one of `kubernetesSecret` or `files`",
                )
                .help("in Kubernetes use a Secret; `files` is for the local/CI shape"),
            );
            return None;
        }
    };
    Some(Some(KeyStoreSettings {
        location,
        key_prefix: k.key_prefix.clone(),
        root_token_key: k.root_token_key.clone(),
    }))
}

/// Targets without a key store: nothing can authenticate what a target
/// lists, so retention trusts its metadata (see `exec::trust`).
pub(super) fn authenticity(has_key_store: bool, targets: usize, out: &mut Vec<Finding>) {
    if !has_key_store && targets > 0 {
        out.push(
            Finding::warning(
                Code::UnauthenticatedRetention,
                "/spec/targets",
                "no key store: snapward cannot authenticate what the targets list, so whoever can write to a target can steer what prune deletes and what a restore picks",
            )
            .help("name the key store (spec.unsealKeys): uploads are then tagged and only authenticated snapshots count"),
        );
    }
}

/// `spec.init`: a possible key shape, and somewhere to store the keys.
pub(super) fn init(init: &Init, has_key_store: bool, out: &mut Vec<Finding>) {
    if init.shares < 1 || init.threshold < 1 || init.threshold > init.shares {
        out.push(
            Finding::error(
                Code::InitThreshold,
                "/spec/init/threshold",
                format!(
                    "threshold {} with {} shares is impossible",
                    init.threshold, init.shares
                ),
            )
            .help("need 1 ≤ threshold ≤ shares (e.g. shares 5, threshold 3)"),
        );
    }
    if init.allowed && !has_key_store {
        out.push(
            Finding::error(
                Code::InitWithoutKeys,
                "/spec/init/allowed",
                "init is allowed but `spec.unsealKeys` says nowhere to store the keys",
            )
            .help("add spec.unsealKeys: the keys are stored there, create-only"),
        );
    }
}
