//! `spec.restore`: its timeouts, the sources searched for the newest valid
//! snapshot, and what `auto` and `restartPod` need.
//!
//! Stage: validate. Pure.

use std::collections::BTreeSet;
use std::time::Duration;

use super::parse::closest;
use super::{clean_since, timeout};
use crate::diag::{Code, Finding};
use crate::policy::StoreId;
use crate::policy::model::{Restore, RestoreMode, Spec};
use crate::policy::valid::RestoreSettings;

/// `applyTimeout` and `joinTimeout`, each positive.
pub(super) fn timeouts(r: &Restore, out: &mut Vec<Finding>) -> Option<(Duration, Duration)> {
    let apply = timeout(&r.apply_timeout, "/spec/restore/applyTimeout", "5s", out);
    let join = timeout(&r.join_timeout, "/spec/restore/joinTimeout", "5s", out);
    Some((apply?, join?))
}

/// The sources in search order, and the rest of `spec.restore`
/// (`timeouts`: from [`timeouts`]).
pub(super) fn check(
    spec: &Spec,
    timeouts: Option<(Duration, Duration)>,
    out: &mut Vec<Finding>,
) -> Option<(Vec<StoreId>, RestoreSettings)> {
    let start = out.len();
    let r = &spec.restore;
    let sources = sources(spec, out);
    restore_test(spec, out);
    // An auto-unseal restore needs no keys (DESIGN.md §8).
    let auto_unseal = spec.cluster.seal == Some(crate::policy::model::SealMode::Auto);
    if r.mode == RestoreMode::Auto && spec.unseal_keys.is_none() && !auto_unseal {
        out.push(
            Finding::error(Code::RestoreAutoWithoutKeys, "/spec/restore/mode", "restore mode `auto` needs `spec.unsealKeys`")
                .help("a restored cluster is sealed with its original keys: say where they live (unsealKeys.kubernetesSecret or unsealKeys.files)"),
        );
    }
    if r.restart_pod && spec.cluster.discovery.is_none() {
        out.push(
            Finding::error(
                Code::RestartPodNeedsDiscovery,
                "/spec/restore/restartPod",
                "`restartPod` needs `cluster.discovery.kubernetes`",
            )
            .help("snapward restarts node 0 by deleting the pod it discovered: use cluster.discovery, or set restartPod: false and restart node 0 by hand when asked"),
        );
    }
    let (apply_timeout, join_timeout) = timeouts?;
    clean_since(out, start).then(|| {
        (
            sources,
            RestoreSettings {
                mode: r.mode,
                apply_timeout,
                join_timeout,
                canary: r.canary.clone(),
                restart_pod: r.restart_pod,
            },
        )
    })
}

/// `spec.restoreTest`: `from` names a store of this policy, `timeout` is
/// a positive duration.
fn restore_test(spec: &Spec, out: &mut Vec<Finding>) {
    let Some(t) = &spec.restore_test else {
        return;
    };
    let _ = timeout(&t.timeout, "/spec/restoreTest/timeout", "10m", out);
    if let Some(every) = &t.every {
        let _ = timeout(every, "/spec/restoreTest/every", "7d", out);
    }
    if let Some(from) = &t.from {
        let names: Vec<&str> = std::iter::once(StoreId::LOCAL)
            .chain(spec.targets.iter().map(|t| t.name.as_str()))
            .collect();
        if !names.contains(&from.as_str()) {
            out.push(unknown_store(
                Code::RestoreTestStore,
                "/spec/restoreTest/from".into(),
                "restore test store",
                from,
                &names,
            ));
        }
    }
}

/// `name` (a `what`) names none of the `known` stores: the error, with
/// the closest name if one is close.
fn unknown_store(code: Code, pointer: String, what: &str, name: &str, known: &[&str]) -> Finding {
    let mut help = format!("known stores: {}", known.join(", "));
    if let Some(c) = closest(name, known.iter().copied()) {
        help = format!("did you mean `{c}`? {help}");
    }
    Finding::error(
        code,
        pointer,
        format!("{what} `{name}` is not a store of this policy"),
    )
    .help(help)
}

/// `restore.sources`, each a store of this policy, once; default: the
/// local store, then every target in order.
fn sources(spec: &Spec, out: &mut Vec<Finding>) -> Vec<StoreId> {
    if spec.restore.sources.is_empty() {
        return std::iter::once(StoreId::Local)
            .chain(spec.targets.iter().map(|t| StoreId::from_name(&t.name)))
            .collect();
    }
    let names: BTreeSet<&str> = spec.targets.iter().map(|t| t.name.as_str()).collect();
    let mut sources = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, s) in spec.restore.sources.iter().enumerate() {
        let p = format!("/spec/restore/sources/{i}");
        if s != StoreId::LOCAL && !names.contains(s.as_str()) {
            let known: Vec<&str> = std::iter::once(StoreId::LOCAL)
                .chain(names.iter().copied())
                .collect();
            out.push(unknown_store(
                Code::UnknownSource,
                p,
                "restore source",
                s,
                &known,
            ));
        } else if !seen.insert(s.clone()) {
            out.push(
                Finding::error(
                    Code::DuplicateSource,
                    p,
                    format!("restore source `{s}` is listed twice"),
                )
                .help("list each store once, in search order"),
            );
        } else {
            sources.push(StoreId::from_name(s));
        }
    }
    sources
}
