//! The runner a run executes with: the actions over the real backends —
//! or, in a dry run, over their dry-run decorators behind the dry-run
//! runner — announced as Kubernetes Events when the API is there.

use std::path::Path;
use std::sync::Arc;

use super::RunOptions;
use crate::backends::kube as k8s;
use crate::backends::{Ceremony, OpenBao};
use crate::exec::Runner;
use crate::exec::actions::Actions;
use crate::exec::dry_run::DryRun;
use crate::exec::events::Announcing;
use crate::plan;
use crate::policy::ValidPolicy;
use crate::wiring::{self, Kube, Writers, env};

pub(super) async fn build(
    p: &ValidPolicy,
    opts: &RunOptions,
    kube: Option<&Kube>,
    bao: Arc<dyn OpenBao>,
    ceremony: Arc<dyn Ceremony>,
    scratch: &Path,
) -> Arc<dyn Runner> {
    let key_kube = kube.map(|k| (&k.client, k.namespace.as_str()));
    // A dry run writes nothing, not even the verification cache.
    let cache = if opts.dry_run {
        crate::backends::verify_cache::CacheUse::ReadOnly
    } else {
        crate::backends::verify_cache::CacheUse::ReadWrite
    };
    let mut writers = Writers {
        targets: wiring::build_targets_with(p, cache).await,
        local: Arc::new(wiring::local_store_with(p, cache)),
        key_store: wiring::key_store(p, key_kube),
        ceremony,
    };
    if opts.dry_run {
        writers = writers.dry_run(scratch, bao.node_names());
    }
    // `spec.restoreTest`: scheduled runs rehearse their snapshot; a
    // rehearsal never rehearses itself.
    let rehearse: Option<Arc<dyn crate::exec::actions::restore_test::Rehearse>> =
        if opts.rehearsal || opts.dry_run {
            None
        } else {
            crate::commands::test_restore::ThrowawayRehearsal::for_policy(p, kube)
                .map(|r| Arc::new(r) as _)
        };
    let actions: Arc<dyn Runner> = Arc::new(Actions {
        rehearse,
        targets: writers.targets,
        local: writers.local,
        key_store: writers.key_store,
        ceremony: writers.ceremony,
        bao,
        scratch: scratch.to_path_buf(),
        guard: plan::guard_policy(p, opts.explicit_restore),
        only_snapshot: opts.only_snapshot.clone(),
        allow_unauthenticated: opts.allow_unauthenticated,
        trust_keys: Default::default(),
        seal: Default::default(),
        policy: p.clone(),
    });
    // A dry run never runs the steps that change the cluster: it says what
    // they would do. It emits no Events either.
    if opts.dry_run {
        return Arc::new(DryRun {
            inner: actions,
            policy: p.clone(),
        });
    }
    let Some(k) = kube.filter(|_| !opts.rehearsal) else {
        return actions;
    };
    let cm = opts
        .source
        .policy_configmap
        .as_deref()
        .and_then(|r| r.parse::<k8s::ConfigMapRef>().ok());
    let sink = k8s::event_target(
        env,
        cm.as_ref().map(|c| (c.namespace.as_str(), c.name.as_str())),
    )
    .map(|target| k8s::EventSink::new(k.client.clone(), target, env("POD_NAME")));
    match sink {
        Some(sink) => Arc::new(Announcing {
            inner: actions,
            notifier: Arc::new(sink),
        }),
        None => actions,
    }
}
