//! The unseal, init and restore actions (DESIGN.md §4 items 6–8, §6).
//!
//! Restore sequence: pick the newest valid snapshot across the sources in
//! policy order (fetch + verify it if it is remote; a corrupt one is
//! skipped with the reason and the next newest tried); temp-initialise node
//! 0 with the *same* shares/threshold as the stored keys; unseal with the
//! temp keys; wait for `sys/leader` `is_self`; `snapshot-force` to node 0;
//! poll seal-status until the server applied it and sealed; unseal with the
//! stored keys; unseal the other nodes once they joined; verify every node.
//! Temporary credentials live in memory only (zeroised on drop) and the key
//! store is never written during a restore.
//!
//! Stage: execute.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::Outcome;
use super::runner::RealRunner;
use super::state::{RestoreSource, RunState};
use crate::backends::keys::{KeyStore, KeyStoreError, StoredKeys};
use crate::backends::{BaoError, Ceremony, SealState};
use crate::cluster::InitState;
use crate::retention::{self, Candidate};
use crate::secret::Secret;

/// Poll `f` until it yields `Some`, the deadline passes, or the run is
/// cancelled. The first waits are short (a tenth of `every`, doubling up to
/// `every`): most states the ceremony waits for arrive within a few dozen
/// milliseconds, a slow one is then polled every `every`.
async fn poll<T, F, Fut>(
    deadline: Duration,
    every: Duration,
    cancel: &CancellationToken,
    mut f: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    let mut wait = (every / 10).max(Duration::from_millis(10)).min(every);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= end || cancel.is_cancelled() {
            return None;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return None,
        }
        wait = (wait * 2).min(every);
    }
}

const POLL: Duration = Duration::from_millis(250);

/// How far in the future a snapshot's name may lie (clocks of the nodes
/// and of the run differ a little) before its age is not trusted.
const CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// A duration for people: `73 years`, `3 days`, `5 hours`, `12 minutes`,
/// `40 seconds` (rounded down).
fn approx(d: jiff::SignedDuration) -> String {
    let s = d.as_secs().unsigned_abs();
    match s {
        s if s >= 2 * 365 * 86_400 => format!("{} years", s / (365 * 86_400)),
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3_600 => format!("{} hours", s / 3_600),
        s if s >= 120 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

fn invalid_key_size(e: &BaoError) -> bool {
    matches!(e, BaoError::InvalidKeySize { .. })
}

/// Send key shares until the node reports unsealed (or keys run out).
async fn unseal_with(
    c: &dyn Ceremony,
    node: usize,
    keys: &[Secret],
    wait: Duration,
    cancel: &CancellationToken,
) -> Result<SealState, BaoError> {
    let first = c.seal_status(node).await?;
    if !first.sealed {
        return Ok(first);
    }
    // Exactly `threshold` shares: a node that has just joined answers the
    // last one with `sealed: true, progress: 0` and unseals a moment later;
    // another key would start a new round.
    let threshold = if first.threshold == 0 {
        keys.len()
    } else {
        first.threshold as usize
    };
    let mut last = first;
    for k in keys
        .iter()
        .take(threshold.saturating_sub(last.progress as usize).max(1))
    {
        last = c.unseal(node, k).await?;
        if !last.sealed {
            return Ok(last);
        }
    }
    Ok(poll(wait, POLL, cancel, || async move {
        c.seal_status(node).await.ok().filter(|s| !s.sealed)
    })
    .await
    .unwrap_or(last))
}

impl RealRunner {
    fn ceremony(&self) -> &dyn Ceremony {
        self.ceremony.as_ref()
    }

    fn key_store(&self) -> Result<&dyn KeyStore, String> {
        self.key_store
            .as_deref()
            .ok_or_else(|| "the policy names no unseal-key store (spec.unsealKeys)".to_string())
    }

    /// The stored unseal keys (read-only: a restore never writes them).
    async fn read_stored_keys(&self) -> Result<StoredKeys, String> {
        self.key_store()?.read().await.map_err(|e| e.to_string())
    }

    /// Followers: once joined (initialised), unseal them with `keys`.
    async fn unseal_followers(
        &self,
        keys: &[Secret],
        cancel: &CancellationToken,
        items: &mut Vec<String>,
    ) -> Result<(), String> {
        let c = self.ceremony();
        let names = self.bao.node_names();
        for (node, name) in names.iter().enumerate().skip(1) {
            let joined = poll(self.policy.join_timeout, POLL, cancel, || async move {
                c.seal_status(node).await.ok().filter(|s| s.initialized)
            })
            .await;
            let Some(status) = joined else {
                return Err(format!(
                    "{name} did not join within {:?}",
                    self.policy.join_timeout
                ));
            };
            if !status.sealed {
                items.push(format!("{name}: already unsealed"));
                continue;
            }
            // Keys sent before a follower has joined are lost: it has joined now.
            let s = unseal_with(c, node, keys, self.policy.join_timeout, cancel)
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            if s.sealed {
                return Err(format!(
                    "{name} is still sealed after {} key(s)",
                    keys.len()
                ));
            }
            items.push(format!("{name}: unsealed"));
        }
        Ok(())
    }

    /// Backup branch: unseal sealed, initialised nodes with the stored keys.
    pub(super) async fn unseal_sealed(
        &self,
        state: &Mutex<RunState>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let sealed: Vec<(usize, String)> = state
            .lock()
            .await
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.init == InitState::Initialized && n.sealed == Some(true))
            .map(|(i, n)| (i, n.name.clone()))
            .collect();
        if sealed.is_empty() {
            return Outcome::noop("no sealed node");
        }
        if self.dry_run {
            let names: Vec<String> = sealed
                .iter()
                .map(|(_, n)| format!("would unseal {n}"))
                .collect();
            return Outcome::ok("dry run").with_items(names);
        }
        let keys = match self.read_stored_keys().await {
            Ok(k) => k,
            Err(e) => return Outcome::failed(e),
        };
        let mut items = Vec::new();
        for (node, name) in &sealed {
            match unseal_with(
                self.ceremony(),
                *node,
                &keys.keys,
                self.policy.join_timeout,
                cancel,
            )
            .await
            {
                Ok(s) if !s.sealed => items.push(format!("{name}: unsealed")),
                Ok(_) => {
                    return Outcome::failed(format!(
                        "{name} is still sealed after every stored key"
                    ))
                    .with_items(items);
                }
                Err(e) => return Outcome::failed(format!("{name}: {e}")).with_items(items),
            }
        }
        // The active node must be known again for the snapshot.
        let c = self.ceremony();
        let active = poll(self.policy.join_timeout, POLL, cancel, || async move {
            for n in 0..self.bao.node_names().len() {
                if c.leader(n).await.map(|l| l.is_self).unwrap_or(false) {
                    return Some(n);
                }
            }
            None
        })
        .await;
        let observed = self.bao.observe().await;
        let mut s = state.lock().await;
        s.nodes = observed;
        match active {
            Some(_) => Outcome::ok(format!("{} node(s) unsealed", sealed.len())).with_items(items),
            None => Outcome::failed("unsealed, but no node became active").with_items(items),
        }
    }

    /// Init branch: initialise node 0; keys stay in memory until stored.
    pub(super) async fn init(&self, state: &Mutex<RunState>) -> Outcome {
        let init = &self.policy.doc.spec.init;
        if self.dry_run {
            return Outcome::ok(format!(
                "would initialise node 0 with {} shares, threshold {}",
                init.shares, init.threshold
            ));
        }
        // Re-check right before the destructive step: keys must still be
        // absent, and storing the new ones must be possible (a barrier whose
        // keys cannot be stored would be lost with this process).
        match self.key_store() {
            Ok(ks) => match ks.check_create().await {
                Ok(()) => {}
                Err(KeyStoreError::AlreadyExists { location }) => {
                    return Outcome::failed(format!(
                        "{location} now holds keys: refusing to initialise"
                    ));
                }
                Err(e) => {
                    return Outcome::failed(format!(
                        "refusing to initialise: the new keys could not be stored: {e}"
                    ));
                }
            },
            Err(e) => return Outcome::failed(e),
        }
        match self.ceremony().init(0, init.shares, init.threshold).await {
            Ok(r) => {
                crate::crash::crash_point!("init.after-init");
                let stored = StoredKeys {
                    keys: r.keys,
                    root_token: Some(r.root_token),
                };
                state.lock().await.new_keys = Some(stored);
                Outcome::ok(format!(
                    "node 0 initialised ({} shares, threshold {})",
                    init.shares, init.threshold
                ))
            }
            Err(e) => Outcome::failed(format!("init failed: {e}")),
        }
    }

    /// Store the new keys, create-only.
    pub(super) async fn store_keys(&self, state: &Mutex<RunState>) -> Outcome {
        if self.dry_run {
            return Outcome::ok("would store the keys (create-only)");
        }
        let Some(mut keys) = state.lock().await.new_keys.clone() else {
            return Outcome::failed("no keys from init");
        };
        if !self.policy.doc.spec.init.store_root_token {
            keys.root_token = None;
        }
        let ks = match self.key_store() {
            Ok(k) => k,
            Err(e) => return Outcome::failed(e),
        };
        match ks.create(&keys).await {
            Ok(()) => Outcome::ok(format!(
                "{} key share(s){} stored in {} (create-only)",
                keys.keys.len(),
                if keys.root_token.is_some() {
                    " and the root token"
                } else {
                    ""
                },
                ks.location()
            )),
            Err(e) => Outcome::failed(e.to_string()),
        }
    }

    /// Unseal a freshly initialised cluster with the new keys.
    pub(super) async fn init_unseal(
        &self,
        state: &Mutex<RunState>,
        cancel: &CancellationToken,
    ) -> Outcome {
        if self.dry_run {
            return Outcome::ok("would unseal every node with the new keys");
        }
        let Some(keys) = state.lock().await.new_keys.clone() else {
            return Outcome::failed("no keys from init");
        };
        let mut items = Vec::new();
        match unseal_with(
            self.ceremony(),
            0,
            &keys.keys,
            self.policy.apply_timeout,
            cancel,
        )
        .await
        {
            Ok(s) if !s.sealed => items.push("node 0: unsealed".to_string()),
            Ok(_) => return Outcome::failed("node 0 is still sealed after every new key"),
            Err(e) => return Outcome::failed(format!("node 0: {e}")),
        }
        if let Err(e) = self.unseal_followers(&keys.keys, cancel, &mut items).await {
            return Outcome::failed(e).with_items(items);
        }
        // Forget the keys as soon as they are stored and used.
        state.lock().await.new_keys = None;
        Outcome::ok("cluster initialised and unsealed").with_items(items)
    }

    /// Restore branch: choose, fetch and verify the snapshot to restore.
    pub(super) async fn fetch(
        &self,
        state: &Mutex<RunState>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let mut cands: Vec<(Candidate, String)> = Vec::new(); // (candidate, store)
        if let Ok(inv) = self.local_inventory().await {
            for s in inv.into_iter().filter(|s| s.identity.is_some()) {
                let id = s
                    .identity
                    .as_ref()
                    .map(|i| (i.index, i.term))
                    .unwrap_or((0, 0));
                cands.push((
                    Candidate {
                        id: s.name,
                        time: s.time,
                        index: id.0,
                        term: id.1,
                        valid: true,
                    },
                    "local".into(),
                ));
            }
        }
        let remote = state.lock().await.remote.clone();
        for (store, list) in &remote {
            for r in list
                .iter()
                .filter(|r| r.index.is_some() && r.sha256.is_some())
            {
                cands.push((
                    Candidate {
                        id: r.name.clone(),
                        time: r.time,
                        index: r.index.unwrap_or(0),
                        term: r.term.unwrap_or(0),
                        valid: true,
                    },
                    store.clone(),
                ));
            }
        }
        // Newest first (one rule everywhere); among equals, policy source order.
        let order = |store: &str| {
            self.policy
                .sources
                .iter()
                .position(|s| s == store)
                .unwrap_or(usize::MAX)
        };
        cands.retain(|(_, store)| order(store) != usize::MAX);
        if let Some(only) = &self.only_snapshot {
            cands.retain(|(c, _)| &c.id == only);
            if cands.is_empty() {
                return Outcome::failed(format!(
                    "snapshot `{only}` is not a valid snapshot in any restore source ({}): check the name with `snapward list`",
                    self.policy.sources.join(", ")
                ));
            }
        }
        cands.sort_by(|(a, sa), (b, sb)| retention::newer(b, a).then(order(sa).cmp(&order(sb))));
        let mut items = Vec::new();
        for (c, store) in cands {
            if cancel.is_cancelled() {
                return Outcome::failed("cancelled").with_items(items);
            }
            let (path, temp) = if store == "local" {
                (self.local.path_of(&c.id), false)
            } else {
                let Some(slot) = self.targets.iter().find(|t| t.name == store) else {
                    continue;
                };
                let Ok(t) = &slot.target else { continue };
                let dest = self.scratch.join(format!("fetch-{store}-{}", c.id));
                let _ = std::fs::remove_file(&dest);
                if let Err(e) = t.fetch(&c.id, &dest, cancel).await {
                    items.push(format!("{store}/{}: fetch failed: {e}", c.id));
                    continue;
                }
                (dest, true)
            };
            let p2 = path.clone();
            match tokio::task::spawn_blocking(move || crate::snapshot::verify_file(&p2)).await {
                Ok(Ok(identity)) => {
                    items.push(format!(
                        "chose {store}/{} (raft index {}, term {})",
                        c.id, identity.index, identity.term
                    ));
                    state.lock().await.restore_from = Some(RestoreSource {
                        store,
                        name: c.id,
                        path,
                        identity,
                        time: c.time,
                        temp,
                    });
                    return Outcome::ok(items.last().cloned().unwrap_or_default())
                        .with_items(items);
                }
                Ok(Err(e)) => {
                    items.push(format!(
                        "{store}/{}: invalid ({}), trying the next newest",
                        c.id,
                        e.check()
                    ));
                    if temp {
                        let _ = std::fs::remove_file(&path);
                    }
                }
                Err(e) => return Outcome::failed(e.to_string()),
            }
        }
        Outcome::failed("no valid snapshot could be fetched").with_items(items)
    }

    /// Restore branch: temp-init node 0, force-restore, wait for the seal.
    pub(super) async fn restore(
        &self,
        state: &Mutex<RunState>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let Some(src) = state.lock().await.restore_from.clone() else {
            return Outcome::failed("no snapshot chosen");
        };
        // guards.maxRestoreAge holds back an automatic restore only: a human
        // running `snapward restore` has decided.
        if let Some(max) = self.policy.max_restore_age
            && !self.guard.explicit_restore
        {
            let now = jiff::Timestamp::now();
            let age = now.duration_since(src.time);
            let refusal = if -age > CLOCK_SKEW {
                Some(format!(
                    "the newest valid snapshot {} is dated {} in the future (this machine's clock says {}): a clock is wrong, so its age cannot be checked against guards.maxRestoreAge. Fix the clock, or restore by hand with `snapward restore`",
                    src.name,
                    approx(-age),
                    now.strftime("%Y-%m-%d %H:%M:%S UTC")
                ))
            } else if age > max {
                Some(format!(
                    "the newest valid snapshot {} is {} old, more than guards.maxRestoreAge ({}): restore it by hand with `snapward restore`",
                    src.name,
                    approx(age),
                    retention::format_duration(max)
                ))
            } else {
                None
            };
            if let Some(why) = refusal {
                // A guard refused: the run ends "refused" (a human must act),
                // not "retry" (the snapshot will not get younger).
                if let Some(d) = state.lock().await.decision.as_mut() {
                    d.branch = crate::plan::guard::Branch::Refuse;
                    d.rule = "snapshot outside guards.maxRestoreAge";
                    d.explanation = why.clone();
                }
                return Outcome::failed(why);
            }
        }
        let init = &self.policy.doc.spec.init;
        if self.dry_run {
            return Outcome::ok(format!(
                "would temp-initialise node 0 ({} shares, threshold {}) and force-restore {} from {}",
                init.shares, init.threshold, src.name, src.store
            ));
        }
        // The stored keys must be readable before anything is changed.
        let stored = match self.read_stored_keys().await {
            Ok(k) => k,
            Err(e) => return Outcome::failed(e),
        };
        if (stored.keys.len() as u32) < init.threshold {
            return Outcome::failed(format!(
                "the key store holds {} key(s), fewer than the threshold {}",
                stored.keys.len(),
                init.threshold
            ));
        }
        drop(stored);
        let c = self.ceremony();
        let mut items = Vec::new();
        if let Some(failed) = self.mark_restore_started(&src) {
            return failed;
        }
        // Same shape as the stored keys: otherwise they fail with "invalid key size".
        let temp = match c.init(0, init.shares, init.threshold).await {
            Ok(t) => t,
            Err(e) => return Outcome::failed(format!("temporary init of node 0 failed: {e}")),
        };
        items.push(format!(
            "node 0 temp-initialised ({} shares, threshold {})",
            init.shares, init.threshold
        ));
        crate::crash::crash_point!("restore.after-temp-init");
        match unseal_with(c, 0, &temp.keys, self.policy.apply_timeout, cancel).await {
            Ok(s) if !s.sealed => items.push("node 0 unsealed with the temporary keys".into()),
            Ok(_) => {
                return Outcome::failed("node 0 still sealed after the temporary keys")
                    .with_items(items);
            }
            Err(e) => {
                return Outcome::failed(format!("temporary unseal failed: {e}")).with_items(items);
            }
        }
        let leader = poll(self.policy.apply_timeout, POLL, cancel, || async move {
            c.leader(0).await.ok().filter(|l| l.is_self)
        })
        .await;
        if leader.is_none() {
            return Outcome::failed("node 0 did not become the active node (sys/leader is_self)")
                .with_items(items);
        }
        items.push("node 0 is the active node".into());
        crate::crash::crash_point!("restore.after-temp-unseal");
        if let Err(e) = c.restore_force(0, &temp.root_token, &src.path).await {
            return Outcome::failed(format!("snapshot-force failed: {e}")).with_items(items);
        }
        self.mark_restore_handed_over();
        crate::crash::crash_point!("restore.after-force");
        drop(temp); // the temporary root token and keys are gone from memory
        items.push(format!(
            "snapshot-force sent ({} bytes)",
            src.identity.file_size
        ));
        // The server applies the snapshot in the background, then seals.
        let sealed = poll(self.policy.apply_timeout, POLL, cancel, || async move {
            c.seal_status(0).await.ok().filter(|s| s.sealed)
        })
        .await;
        if sealed.is_none() {
            return Outcome::failed(format!(
                "node 0 did not seal within {:?} after the restore",
                self.policy.apply_timeout
            ))
            .with_items(items);
        }
        items.push("node 0 applied the snapshot and sealed itself".into());
        if src.temp {
            let _ = std::fs::remove_file(&src.path);
        }
        state.lock().await.restore_applied = true;
        Outcome::ok(format!("restored {} from {}", src.name, src.store))
            .with_items(items)
            .with_bytes(src.identity.file_size)
    }

    /// Node 0 rejected the stored keys with "invalid key size" (DESIGN.md
    /// §6: the temporary barrier had another shape): restart its server
    /// process if the backend can (`restore.restartPod`), wait until it
    /// answers sealed, and unseal again.
    async fn restart_node0(
        &self,
        rejected: &BaoError,
        keys: &[Secret],
        cancel: &CancellationToken,
        items: &mut Vec<String>,
    ) -> Result<(), String> {
        let by_hand = "the server process must restart before they work (in Kubernetes: delete the node-0 pod, or set restore.restartPod: true), then rerun";
        if !self.policy.doc.spec.restore.restart_pod {
            return Err(format!(
                "node 0 rejects the stored keys ({rejected}): {by_hand}"
            ));
        }
        let c = self.ceremony();
        match c.restart(0).await {
            Ok(true) => items.push(format!(
                "node 0 rejected the stored keys ({rejected}); its pod was restarted"
            )),
            Ok(false) => {
                return Err(format!(
                    "node 0 rejects the stored keys ({rejected}): {by_hand}"
                ));
            }
            Err(e) => return Err(format!("node 0 rejects the stored keys; {e}")),
        }
        let answered = poll(self.policy.apply_timeout, POLL, cancel, || async move {
            c.seal_status(0).await.ok().filter(|s| s.initialized)
        })
        .await;
        if answered.is_none() {
            return Err("node 0 did not answer as initialised after its restart".into());
        }
        match unseal_with(c, 0, keys, self.policy.apply_timeout, cancel).await {
            Ok(s) if !s.sealed => {
                items.push("node 0: unsealed with the stored keys after the restart".into());
                Ok(())
            }
            Ok(_) => Err("node 0 is still sealed after its restart and every stored key".into()),
            Err(e) => Err(format!("node 0 after its restart: {e}")),
        }
    }

    /// Restore branch: unseal node 0, then the followers, with the stored keys.
    pub(super) async fn restore_unseal(&self, cancel: &CancellationToken) -> Outcome {
        if self.dry_run {
            return Outcome::ok("would unseal every node with the stored keys");
        }
        let keys = match self.read_stored_keys().await {
            Ok(k) => k,
            Err(e) => return Outcome::failed(e),
        };
        let mut items = Vec::new();
        match unseal_with(
            self.ceremony(),
            0,
            &keys.keys,
            self.policy.apply_timeout,
            cancel,
        )
        .await
        {
            Ok(s) if !s.sealed => items.push("node 0: unsealed with the stored keys".to_string()),
            Ok(_) => return Outcome::failed("node 0 is still sealed after every stored key"),
            Err(e) if invalid_key_size(&e) => {
                if let Err(why) = self.restart_node0(&e, &keys.keys, cancel, &mut items).await {
                    return Outcome::failed(why).with_items(items);
                }
            }
            Err(e) => return Outcome::failed(format!("node 0: {e}")),
        }
        let c = self.ceremony();
        if poll(self.policy.apply_timeout, POLL, cancel, || async move {
            c.leader(0).await.ok().filter(|l| l.is_self)
        })
        .await
        .is_none()
        {
            return Outcome::failed("node 0 did not become active after unsealing")
                .with_items(items);
        }
        if let Err(e) = self.unseal_followers(&keys.keys, cancel, &mut items).await {
            return Outcome::failed(e).with_items(items);
        }
        Outcome::ok("every node unsealed").with_items(items)
    }

    /// Restore branch: every node unsealed, one cluster_id, raft index ≥ the
    /// snapshot's, and the canary read (if configured).
    pub(super) async fn verify_cluster(
        &self,
        state: &Mutex<RunState>,
        cancel: &CancellationToken,
    ) -> Outcome {
        if self.dry_run {
            return Outcome::ok("would verify every node");
        }
        let want_index = state
            .lock()
            .await
            .restore_from
            .as_ref()
            .map(|s| s.identity.index)
            .unwrap_or(0);
        let c = self.ceremony();
        let n = self.bao.node_names().len();
        // Followers' reads may lag the leader briefly: poll until consistent.
        let verdict = poll(self.policy.join_timeout, POLL, cancel, || async move {
            let mut ids = std::collections::BTreeSet::new();
            for node in 0..n {
                let s = c.seal_status(node).await.ok()?;
                if s.sealed {
                    return None;
                }
                ids.insert(s.cluster_id.clone()?);
            }
            let idx = c.leader(0).await.ok()?.raft_committed_index.unwrap_or(0);
            (ids.len() == 1 && idx >= want_index)
                .then(|| (ids.into_iter().next().unwrap_or_default(), idx))
        })
        .await;
        let Some((cluster_id, idx)) = verdict else {
            return Outcome::failed(format!(
                "the cluster did not settle: every node unsealed with one cluster_id and raft index ≥ {want_index} was not reached"
            ));
        };
        let mut items = vec![format!(
            "{n} node(s) unsealed, cluster_id {cluster_id}, raft index {idx} ≥ {want_index}"
        )];
        if let Some(canary) = &self.policy.doc.spec.restore.canary {
            let token = match crate::secret::read_secret_file(&canary.token_file) {
                Ok(t) => t,
                Err(e) => {
                    return Outcome::failed(format!(
                        "canary token file {}: {e}",
                        canary.token_file
                    ))
                    .with_items(items);
                }
            };
            match c.read(0, &token, &canary.path).await {
                Ok(_) => items.push(format!("canary {} readable", canary.path)),
                Err(e) => {
                    return Outcome::failed(format!("canary read of {} failed: {e}", canary.path))
                        .with_items(items);
                }
            }
        }
        state.lock().await.nodes = self.bao.observe().await;
        Outcome::ok("the restored cluster answers on every node").with_items(items)
    }
}
