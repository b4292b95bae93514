//! The real actions of the backup branch (observe, guard-check, snapshot,
//! verify, upload, prune), run against the backend traits. Dry-run: reads
//! happen (observe, listings, even the snapshot stream — into a temp dir
//! outside every store), writes become "would …" items.
//!
//! Stage: execute.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::state::{RestoreSource, RunState, TakenSnapshot};
use super::{Outcome, Runner};
use crate::backends::keys::KeyStore;
use crate::backends::local::{LocalSnapshot, LocalStore};
use crate::backends::{
    Ceremony, DeleteOutcome, OpenBao, RemoteSnapshot, Target, TargetError, snapshot_name,
};
use crate::plan::Action;
use crate::plan::guard::{self, GuardPolicy, NodeObservation, Observation};
use crate::policy::ValidPolicy;
use crate::retention::{self, Candidate, Rules, Verdict};

/// A configured target: usable, or why not (credentials absent, ...).
pub struct TargetSlot {
    pub name: String,
    pub optional: bool,
    pub rules: Rules,
    pub target: Result<Arc<dyn Target>, TargetError>,
}

pub struct RealRunner {
    pub policy: ValidPolicy,
    pub bao: Arc<dyn OpenBao>,
    pub ceremony: Arc<dyn Ceremony>,
    pub targets: Vec<TargetSlot>,
    pub local: LocalStore,
    /// `None`: the policy names no key store.
    pub key_store: Option<Arc<dyn KeyStore>>,
    pub dry_run: bool,
    /// Dry-run snapshots are streamed here, never into a store.
    pub scratch: PathBuf,
    pub guard: GuardPolicy,
    /// Restore exactly this snapshot (by file name), if set.
    pub only_snapshot: Option<String>,
}

impl RealRunner {
    pub(super) fn slot(&self, name: &str) -> Option<&TargetSlot> {
        self.targets.iter().find(|t| t.name == name)
    }

    pub(super) async fn local_inventory(&self) -> Result<Vec<LocalSnapshot>, String> {
        let local = self.local.clone();
        tokio::task::spawn_blocking(move || local.inventory())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| {
                format!(
                    "cannot read the local store {}: {e}",
                    self.local.dir.display()
                )
            })
    }

    /// Local valid snapshots (+ this run's dry-run snapshot) as (name, path, identity).
    async fn local_valid(&self, state: &Mutex<RunState>) -> Result<Vec<TakenSnapshot>, String> {
        let mut out: Vec<TakenSnapshot> = self
            .local_inventory()
            .await?
            .into_iter()
            .filter_map(|s| {
                s.identity.map(|identity| TakenSnapshot {
                    path: self.local.path_of(&s.name),
                    name: s.name,
                    identity,
                    time: s.time,
                })
            })
            .collect();
        if let Some(t) = &state.lock().await.snapshot
            && !out.iter().any(|s| s.name == t.name)
        {
            out.push(t.clone());
        }
        Ok(out)
    }

    /// Before node 0 is temp-initialised: record the restore in progress,
    /// so that a run after a crash in the ceremony refuses instead of
    /// retrying forever (see `guard::interrupted_restore`). `Some` is the
    /// failed outcome when it cannot be recorded (nothing was changed).
    pub(super) fn mark_restore_started(&self, src: &RestoreSource) -> Option<Outcome> {
        let what = format!("snapshot {}/{}", src.store, src.name);
        self.local
            .write_restore_marker(self.policy.name(), &what)
            .err()
            .map(|e| {
                Outcome::failed(format!(
                    "cannot record the restore in progress in {}: {e}; nothing was changed",
                    self.local.dir.display()
                ))
            })
    }

    /// The server accepted the snapshot: once it has applied it, the
    /// stored keys open node 0, so the marker is no longer needed.
    pub(super) fn mark_restore_handed_over(&self) {
        if let Err(e) = self.local.remove_restore_marker(self.policy.name()) {
            tracing::warn!(error = %e, "cannot remove the restore marker; the next run will refuse until it is removed");
        }
    }

    async fn observe(&self, state: &Mutex<RunState>) -> Outcome {
        let nodes = self.bao.observe().await;
        let mut key_error = None;
        let keys = match &self.key_store {
            None => Some(false),
            Some(ks) => match ks.probe().await {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(error = %e, "the key store cannot be read");
                    // In the report too: the guard's "could not be read"
                    // needs the reason next to it.
                    key_error = Some(e.to_string());
                    None
                }
            },
        };
        let mut items: Vec<String> = nodes
            .iter()
            .map(|n| {
                let mut s = format!("{}: {:?}", n.name, n.init).to_lowercase();
                if let Some(sealed) = n.sealed {
                    s.push_str(if sealed { ", sealed" } else { ", unsealed" });
                }
                if n.active {
                    s.push_str(", active");
                }
                if let Some(e) = &n.error {
                    s.push_str(&format!(" ({e})"));
                }
                s
            })
            .collect();
        items.extend(key_error);
        // Inventory: which stores hold a valid snapshot.
        let mut holders: BTreeMap<String, bool> = BTreeMap::new();
        match self.local_inventory().await {
            Ok(inv) => {
                for s in inv.iter().filter(|s| s.invalid.is_some()) {
                    items.push(format!(
                        "local: invalid {} ({})",
                        s.name,
                        s.invalid.as_deref().unwrap_or("")
                    ));
                }
                holders.insert("local".into(), inv.iter().any(|s| s.identity.is_some()));
            }
            Err(e) => items.push(format!("local: {e}")),
        }
        let mut remote = BTreeMap::new();
        for slot in &self.targets {
            match &slot.target {
                Ok(t) => match t.list().await {
                    Ok(list) => {
                        holders.insert(slot.name.clone(), list.iter().any(remote_valid));
                        remote.insert(slot.name.clone(), list);
                    }
                    Err(e) => items.push(format!("{}: listing failed: {e}", slot.name)),
                },
                Err(e) => items.push(format!("{}: {e}", slot.name)),
            }
        }
        let interrupted = match self.local.read_restore_marker(self.policy.name()) {
            Ok(m) => m,
            Err(e) => {
                items.push(format!("local: cannot read the restore marker: {e}"));
                None
            }
        };
        if let Some(m) = &interrupted {
            items.push(format!("local: a restore was interrupted ({m})"));
        }
        let newest_in = self
            .policy
            .sources
            .iter()
            .find(|s| holders.get(s.as_str()).copied().unwrap_or(false))
            .map(ToString::to_string);
        let mut s = state.lock().await;
        s.nodes = nodes;
        s.keys_present = keys;
        s.remote = remote;
        s.init_allowed = self.policy.doc.spec.init.allowed;
        s.restore_authorized = self.guard.restore_mode == crate::policy::model::RestoreMode::Auto
            || self.guard.explicit_restore;
        s.newest_snapshot_in = newest_in;
        s.interrupted_restore = interrupted;
        Outcome::ok(format!("{} node(s) observed", s.nodes.len())).with_items(items)
    }

    async fn guard_check(&self, state: &Mutex<RunState>) -> Outcome {
        let mut s = state.lock().await;
        let obs = Observation {
            nodes: s
                .nodes
                .iter()
                .map(|n| NodeObservation {
                    name: n.name.clone(),
                    init: n.init,
                    sealed: n.sealed.unwrap_or(true),
                    active: n.active,
                })
                .collect(),
            keys_present: s.keys_present,
            newest_snapshot_in: s.newest_snapshot_in.clone(),
        };
        let mut d = guard::decide(&obs, self.guard);
        if let Some(marker) = &s.interrupted_restore {
            d = guard::interrupted_restore(d, &obs, marker);
        }
        let detail = format!("{}: {}", d.branch.name(), d.explanation);
        s.decision = Some(d);
        Outcome::ok(detail)
    }

    async fn snapshot(&self, state: &Mutex<RunState>, cancel: &CancellationToken) -> Outcome {
        let Some(node) = state.lock().await.active_node() else {
            return Outcome::failed("no active, unsealed node");
        };
        let name = snapshot_name(&self.local.prefix, jiff::Timestamp::now());
        let (path, file) = if self.dry_run {
            let p = self.scratch.join(format!(".{name}.partial"));
            match std::fs::File::create_new(&p) {
                Ok(f) => (p, f),
                Err(e) => return Outcome::failed(format!("cannot create {}: {e}", p.display())),
            }
        } else {
            let local = self.local.clone();
            let n2 = name.clone();
            let created = tokio::task::spawn_blocking(move || {
                let removed = local.remove_stale_partials()?;
                local.create_partial(&n2).map(|c| (c, removed))
            })
            .await;
            match created {
                Ok(Ok(((p, f), removed))) => {
                    for r in removed {
                        tracing::info!(file = %r, "removed a stale partial snapshot from a crashed run");
                    }
                    (p, f)
                }
                Ok(Err(e)) => {
                    return Outcome::failed(format!(
                        "cannot create the temp file in {}: {e}",
                        self.local.dir.display()
                    ));
                }
                Err(e) => return Outcome::failed(e.to_string()),
            }
        };
        // Verified while it streams: the verify action need not read it back.
        let mut out = crate::snapshot::VerifyingWriter::new(tokio::fs::File::from_std(file));
        let node_name = state.lock().await.nodes[node].name.clone();
        let streamed = self.bao.snapshot(node, &mut out, cancel).await;
        let flushed = out.flush().await;
        let (file, verdict) = out.finish().await;
        let synced = match flushed {
            Ok(()) => file.sync_all().await,
            Err(e) => Err(e),
        };
        drop(file);
        match (streamed, synced) {
            (Ok(bytes), Ok(())) => {
                state.lock().await.partial = Some((path, name.clone(), verdict));
                Outcome::ok(format!("streamed {name} from active node {node_name}"))
                    .with_bytes(bytes)
            }
            (Err(e), _) => {
                let _ = std::fs::remove_file(&path);
                Outcome::failed(format!("snapshot from {node_name} failed: {e}"))
            }
            (_, Err(e)) => {
                let _ = std::fs::remove_file(&path);
                Outcome::failed(format!("fsync of the snapshot failed: {e}"))
            }
        }
    }

    async fn verify(&self, state: &Mutex<RunState>) -> Outcome {
        let Some((partial, name, verdict)) = state.lock().await.partial.take() else {
            return Outcome::failed("no snapshot was streamed");
        };
        if self.dry_run {
            return match verdict {
                Ok(identity) => {
                    let size = identity.file_size;
                    let time = crate::backends::snapshot_time(&self.local.prefix, &name)
                        .unwrap_or_else(jiff::Timestamp::now);
                    state.lock().await.snapshot = Some(TakenSnapshot {
                        name: name.clone(),
                        path: partial,
                        identity,
                        time,
                    });
                    Outcome::ok(format!(
                        "verified; would save as {}",
                        self.local.path_of(&name).display()
                    ))
                    .with_bytes(size)
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    Outcome::failed(format!("the snapshot is invalid ({}): {e}", e.check()))
                }
            };
        }
        let local = self.local.clone();
        let n2 = name.clone();
        match tokio::task::spawn_blocking(move || local.commit(&partial, &n2, verdict)).await {
            Ok(Ok((path, identity))) => {
                let detail = format!(
                    "{name}: raft index {} term {}, sha256 {}",
                    identity.index, identity.term, identity.sha256
                );
                let size = identity.file_size;
                let time = crate::backends::snapshot_time(&self.local.prefix, &name)
                    .unwrap_or_else(jiff::Timestamp::now);
                state.lock().await.snapshot = Some(TakenSnapshot {
                    name,
                    path,
                    identity,
                    time,
                });
                Outcome::ok(detail).with_bytes(size)
            }
            Ok(Err(e)) => Outcome::failed(format!("{e}; the partial file was removed")),
            Err(e) => Outcome::failed(e.to_string()),
        }
    }

    async fn upload(
        &self,
        target: &str,
        state: &Mutex<RunState>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let Some(slot) = self.slot(target) else {
            return Outcome::failed(format!("unknown target `{target}`"));
        };
        let t = match &slot.target {
            Ok(t) => t.clone(),
            Err(TargetError::CredentialsAbsent { detail, .. }) if slot.optional => {
                state.lock().await.skipped_targets.insert(slot.name.clone());
                tracing::warn!(target = %slot.name, %detail, "optional target skipped: credentials absent");
                return Outcome::skipped(format!("skipped: credentials absent ({detail})"));
            }
            Err(e) => return Outcome::failed(e.to_string()),
        };
        let remote = match state.lock().await.remote.get(target).cloned() {
            Some(r) => r,
            None => match t.list().await {
                Ok(r) => r,
                Err(e) => return Outcome::failed(format!("listing failed: {e}")),
            },
        };
        let local = match self.local_valid(state).await {
            Ok(l) => l,
            Err(e) => return Outcome::failed(e),
        };
        let this_run = state.lock().await.snapshot.clone();
        let plan = mirror_plan(&slot.rules, &remote, &local);
        let mut items = Vec::new();
        // Leftovers of crashed runs (incomplete multipart uploads older than
        // a day, stale temp files): never a snapshot. Not fatal.
        if !self.dry_run {
            match t.cleanup().await {
                Ok(c) => items.extend(c.removed.into_iter().map(|r| format!("cleaned up {r}"))),
                Err(e) => items.push(format!("cleanup of leftovers failed: {e}")),
            }
        }
        let mut bytes = 0;
        let mut failed = None;
        for conflict in &plan.conflicts {
            items.push(format!(
                "not overwritten: {conflict} exists remotely with other content"
            ));
        }
        for s in plan.upload {
            if cancel.is_cancelled() {
                failed = Some("cancelled".to_string());
                break;
            }
            if self.dry_run {
                items.push(format!(
                    "would upload {} ({} bytes)",
                    s.name, s.identity.file_size
                ));
                if this_run.as_ref().map(|t| t.name == s.name).unwrap_or(false) {
                    state.lock().await.confirmed.insert(
                        target.to_string(),
                        crate::backends::Confirmed {
                            size: s.identity.file_size,
                            sha256: s.identity.sha256.clone(),
                        },
                    );
                }
                continue;
            }
            match t.put(&s.path, &s.name, &s.identity, cancel).await {
                Ok(c) if c.size == s.identity.file_size && c.sha256 == s.identity.sha256 => {
                    bytes += c.size;
                    items.push(format!("uploaded {} ({} bytes, confirmed)", s.name, c.size));
                    if this_run.as_ref().map(|t| t.name == s.name).unwrap_or(false) {
                        state.lock().await.confirmed.insert(target.to_string(), c);
                    }
                }
                Ok(c) => {
                    failed = Some(format!(
                        "{} not confirmed: target reports {} bytes sha256 {}",
                        s.name, c.size, c.sha256
                    ));
                    break;
                }
                Err(e) => {
                    failed = Some(format!("upload of {} failed: {e}", s.name));
                    break;
                }
            }
        }
        for s in &plan.not_uploaded {
            items.push(format!(
                "not uploaded {s}: the target's retention would delete it at once"
            ));
        }
        // This run's snapshot may already be there (same name and content).
        if let Some(tr) = &this_run
            && remote.iter().any(|r| {
                r.name == tr.name && r.sha256.as_deref() == Some(tr.identity.sha256.as_str())
            })
        {
            state.lock().await.confirmed.insert(
                target.to_string(),
                crate::backends::Confirmed {
                    size: tr.identity.file_size,
                    sha256: tr.identity.sha256.clone(),
                },
            );
        }
        if !self.dry_run {
            match t.list().await {
                Ok(list) => {
                    state.lock().await.remote.insert(target.to_string(), list);
                }
                Err(e) => failed = failed.or(Some(format!("listing after upload failed: {e}"))),
            }
        }
        // This run's snapshot must end up confirmed here, or the run is not done.
        if failed.is_none()
            && !self.dry_run
            && let Some(tr) = &this_run
            && !state.lock().await.confirmed.contains_key(target)
        {
            failed = Some(format!(
                "this run's snapshot {} was not confirmed on `{target}`",
                tr.name
            ));
        }
        match failed {
            Some(f) => Outcome::failed(f).with_items(items).with_bytes(bytes),
            None if items.is_empty() => {
                Outcome::noop("every snapshot retention keeps is already there")
            }
            None => Outcome::ok(format!("{} item(s)", items.len()))
                .with_items(items)
                .with_bytes(bytes),
        }
    }

    async fn prune_target(&self, target: &str, state: &Mutex<RunState>) -> Outcome {
        let Some(slot) = self.slot(target) else {
            return Outcome::failed(format!("unknown target `{target}`"));
        };
        let Ok(t) = &slot.target else {
            return Outcome::skipped("target unavailable");
        };
        let Some(remote) = state.lock().await.remote.get(target).cloned() else {
            return Outcome::failed("no listing of the target");
        };
        let mut candidates: Vec<Candidate> = remote.iter().map(remote_candidate).collect();
        // In a dry run, this run's (not uploaded) snapshot counts as present.
        if self.dry_run
            && let Some(tr) = &state.lock().await.snapshot
            && !remote.iter().any(|r| r.name == tr.name)
        {
            candidates.push(taken_candidate(tr));
        }
        let decisions = retention::apply(&slot.rules, &candidates);
        let kept = decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Keep)
            .count();
        state.lock().await.kept.insert(target.to_string(), kept);
        let mut items = Vec::new();
        let mut failed = None;
        for d in decisions.iter().filter(|d| d.verdict == Verdict::Delete) {
            if self.dry_run {
                items.push(format!("would delete {} ({})", d.id, d.reasons.join(", ")));
                continue;
            }
            match t.delete(&d.id).await {
                Ok(DeleteOutcome::Deleted) => {
                    items.push(format!("deleted {} ({})", d.id, d.reasons.join(", ")));
                    crate::crash::crash_point!("prune.after-delete");
                }
                Ok(DeleteOutcome::RetainedByLock) => {
                    items.push(format!("retained by lock: {}", d.id))
                }
                Err(e) => {
                    failed = Some(format!("delete of {} failed: {e}", d.id));
                    break;
                }
            }
        }
        match failed {
            Some(f) => Outcome::failed(f).with_items(items),
            None if items.is_empty() => Outcome::noop(format!("retention keeps all {kept}")),
            None => Outcome::ok(format!("{kept} kept")).with_items(items),
        }
    }

    async fn prune_local(&self, state: &Mutex<RunState>) -> Outcome {
        let inv = match self.local_inventory().await {
            Ok(i) => i,
            Err(e) => return Outcome::failed(e),
        };
        let mut candidates: Vec<Candidate> = inv.iter().map(local_candidate).collect();
        // In a dry run, this run's snapshot (kept in a scratch dir) counts as
        // present, so the plan shows exactly what the real run deletes.
        if self.dry_run
            && let Some(tr) = &state.lock().await.snapshot
            && !inv.iter().any(|s| s.name == tr.name)
        {
            candidates.push(taken_candidate(tr));
        }
        let decisions = retention::apply(&self.policy.local.rules, &candidates);
        let guard_mirror =
            self.policy.doc.spec.guards.keep_unmirrored_local && !self.targets.is_empty();
        let mut s = state.lock().await;
        let mut items = Vec::new();
        let mut deleted = 0;
        for snap in inv.iter().filter(|s| s.invalid.is_some()) {
            items.push(format!(
                "invalid, not counted: {} ({})",
                snap.name,
                snap.invalid.as_deref().unwrap_or("")
            ));
        }
        for d in decisions.iter().filter(|d| d.verdict == Verdict::Delete) {
            let sha = inv
                .iter()
                .find(|s| s.name == d.id)
                .and_then(|s| s.identity.as_ref())
                .map(|i| i.sha256.clone());
            if guard_mirror {
                let mirrored = s.remote.iter().any(|(t, list)| {
                    !s.skipped_targets.contains(t)
                        && list
                            .iter()
                            .any(|r| r.name == d.id && r.sha256.is_some() && r.sha256 == sha)
                });
                if !mirrored {
                    items.push(format!(
                        "kept {}: exists on no target (guards.keepUnmirroredLocal)",
                        d.id
                    ));
                    continue;
                }
            }
            deleted += 1;
            if self.dry_run {
                items.push(format!("would delete {} ({})", d.id, d.reasons.join(", ")));
                continue;
            }
            match self.local.delete(&d.id) {
                Ok(()) => items.push(format!("deleted {} ({})", d.id, d.reasons.join(", "))),
                Err(e) => {
                    return Outcome::failed(format!("delete of {} failed: {e}", d.id))
                        .with_items(items);
                }
            }
        }
        let valid = candidates.iter().filter(|c| c.valid).count();
        s.kept.insert("local".into(), valid.saturating_sub(deleted));
        if items.is_empty() {
            Outcome::noop("retention keeps every local snapshot")
        } else {
            Outcome::ok(format!("{} item(s)", items.len())).with_items(items)
        }
    }
}

fn remote_valid(r: &RemoteSnapshot) -> bool {
    r.index.is_some() && r.term.is_some() && r.sha256.is_some()
}

fn remote_candidate(r: &RemoteSnapshot) -> Candidate {
    Candidate {
        id: r.name.clone(),
        time: r.time,
        index: r.index.unwrap_or(0),
        term: r.term.unwrap_or(0),
        valid: remote_valid(r),
    }
}

/// A verified snapshot (this run's, or a valid local one) as a retention
/// candidate.
fn taken_candidate(tr: &TakenSnapshot) -> Candidate {
    Candidate {
        id: tr.name.clone(),
        time: tr.time,
        index: tr.identity.index,
        term: tr.identity.term,
        valid: true,
    }
}

fn local_candidate(s: &LocalSnapshot) -> Candidate {
    Candidate {
        id: s.name.clone(),
        time: s.time,
        index: s.identity.as_ref().map(|i| i.index).unwrap_or(0),
        term: s.identity.as_ref().map(|i| i.term).unwrap_or(0),
        valid: s.identity.is_some(),
    }
}

/// What a copy-only mirror to one target should do.
#[derive(Debug, Default)]
pub struct MirrorPlan {
    /// Newest first.
    pub upload: Vec<TakenSnapshot>,
    /// Missing remotely, but the target's retention would delete them at once.
    pub not_uploaded: Vec<String>,
    /// Same name remotely with different content: never overwritten.
    pub conflicts: Vec<String>,
}

/// Copy-only: every valid local snapshot missing on the target is uploaded
/// if the target's retention, applied to what the target would then hold,
/// keeps it. Nothing here ever deletes.
pub fn mirror_plan(
    rules: &Rules,
    remote: &[RemoteSnapshot],
    local: &[TakenSnapshot],
) -> MirrorPlan {
    let mut plan = MirrorPlan::default();
    let mut missing = Vec::new();
    for l in local {
        match remote.iter().find(|r| r.name == l.name) {
            None => missing.push(l.clone()),
            // Same name: never overwritten; it counts only if it is this
            // very snapshot (snapward's SHA-256 metadata matches).
            Some(r) if r.sha256.as_deref() != Some(l.identity.sha256.as_str()) => {
                plan.conflicts.push(l.name.clone())
            }
            Some(_) => {}
        }
    }
    let mut candidates: Vec<Candidate> = remote.iter().map(remote_candidate).collect();
    candidates.extend(missing.iter().map(taken_candidate));
    let decisions = retention::apply(rules, &candidates);
    let keep = |name: &str| {
        decisions
            .iter()
            .any(|d| d.id == name && d.verdict == Verdict::Keep)
    };
    for m in missing {
        if keep(&m.name) {
            plan.upload.push(m);
        } else {
            plan.not_uploaded.push(m.name);
        }
    }
    // Newest first, by the one rule.
    plan.upload.sort_by(|a, b| {
        let key = |s: &TakenSnapshot| {
            crate::snapshot::newest_key(s.identity.index, s.identity.term, s.time)
        };
        key(b).cmp(&key(a)).then_with(|| b.name.cmp(&a.name))
    });
    plan
}

#[async_trait]
impl Runner for RealRunner {
    async fn run(
        &self,
        action: &Action,
        state: &Mutex<RunState>,
        cancel: &CancellationToken,
    ) -> Outcome {
        match action {
            Action::Observe => self.observe(state).await,
            Action::GuardCheck => self.guard_check(state).await,
            Action::Unseal => self.unseal_sealed(state, cancel).await,
            Action::Snapshot => self.snapshot(state, cancel).await,
            Action::Verify => self.verify(state).await,
            Action::Upload { target } => self.upload(target, state, cancel).await,
            Action::Prune { store } if store == "local" => self.prune_local(state).await,
            Action::Prune { store } => self.prune_target(store, state).await,
            Action::Init => self.init(state).await,
            Action::StoreKeys => self.store_keys(state).await,
            Action::InitUnseal => self.init_unseal(state, cancel).await,
            Action::Fetch => self.fetch(state, cancel).await,
            Action::Restore => self.restore(state, cancel).await,
            Action::RestoreUnseal => self.restore_unseal(cancel).await,
            Action::VerifyCluster => self.verify_cluster(state, cancel).await,
        }
    }
}
