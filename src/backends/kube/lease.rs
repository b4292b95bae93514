//! The run Lease (`coordination.k8s.io/v1`): one run at a time per policy,
//! taken with optimistic concurrency, renewed in the background, released
//! at the end.
//!
//! Must never: take a live lease of another holder, write without the
//! observed `resourceVersion`, or touch any object but the named Lease.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::kube::Client;
use ::kube::api::{Api, PostParams};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use tokio_util::sync::CancellationToken;

use super::error::{Op, status_code};
use super::{CONTROLLER, KubeError};

/// One run at a time per policy, through a `coordination.k8s.io/v1` Lease.
/// RBAC: `get`, `create`, `update` on `leases`.
pub struct LeaseLock;

impl LeaseLock {
    /// Takes the Lease `namespace/name` for `holder` for `duration`:
    /// creates it if absent; takes it over if it is free (no holder), held
    /// by `holder` itself, or expired (`renewTime + leaseDurationSeconds`
    /// in the past) — with a replace that carries the observed
    /// `resourceVersion`. `Ok(None)` means busy: another holder's lease is
    /// live, or another writer won a race (409). Nothing else is touched.
    ///
    /// The guard renews every `duration / 3` until released or dropped.
    ///
    /// Errors: any API failure other than 409 (403 names the RBAC verb).
    pub async fn acquire(
        client: &Client,
        namespace: &str,
        name: &str,
        holder: &str,
        duration: Duration,
    ) -> Result<Option<LeaseGuard>, KubeError> {
        let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
        let op = |verb| Op {
            verb,
            resource: "leases.coordination.k8s.io",
            namespace,
            name: Some(name),
        };
        let seconds = lease_seconds(duration);
        let now = jiff::Timestamp::now();
        let existing = match api.get(name).await {
            Ok(l) => Some(l),
            Err(e) if status_code(&e) == Some(404) => None,
            Err(e) => return Err(op("get").err(e)),
        };
        let written = match existing {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(namespace.to_string()),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".to_string(),
                            CONTROLLER.to_string(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(holder.to_string()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                match api.create(&PostParams::default(), &lease).await {
                    Ok(l) => l,
                    Err(e) if status_code(&e) == Some(409) => return Ok(None),
                    Err(e) => return Err(op("create").err(e)),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                let current = spec.holder_identity.clone().unwrap_or_default();
                if !current.is_empty() && current != holder && !expired(spec, now) {
                    tracing::info!(lease = %name, holder = %current, "the run lease is held by another run");
                    return Ok(None);
                }
                if current != holder {
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.holder_identity = Some(holder.to_string());
                spec.lease_duration_seconds = Some(seconds);
                spec.acquire_time = Some(MicroTime(now));
                spec.renew_time = Some(MicroTime(now));
                match api.replace(name, &PostParams::default(), &lease).await {
                    Ok(l) => l,
                    Err(e) if status_code(&e) == Some(409) => return Ok(None),
                    Err(e) => return Err(op("update").err(e)),
                }
            }
        };
        Ok(Some(LeaseGuard::start(
            api, namespace, name, holder, duration, written,
        )))
    }
}

/// A Lease holder identity unique per process: `POD_NAME` (downward API;
/// unique per Job pod), else `$HOSTNAME-<pid>`, else `snapward-<pid>`.
/// `env` looks a variable up (pass `|k| std::env::var(k).ok()`).
pub fn holder_identity(env: impl Fn(&str) -> Option<String>) -> String {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(pod) = nonempty("POD_NAME") {
        return pod;
    }
    let pid = std::process::id();
    match nonempty("HOSTNAME") {
        Some(h) => format!("{h}-{pid}"),
        None => format!("{CONTROLLER}-{pid}"),
    }
}

fn lease_seconds(d: Duration) -> i32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(s.max(1)).unwrap_or(i32::MAX)
}

fn expired(spec: &LeaseSpec, now: jiff::Timestamp) -> bool {
    let Some(last) = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0)
    else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
    match last.checked_add(jiff::SignedDuration::from_secs(secs)) {
        Ok(until) => until <= now,
        Err(_) => false,
    }
}

/// A held Lease. Renewed in the background every `duration / 3` with the
/// last written `resourceVersion`; a 409 whose re-read shows another holder,
/// a deleted Lease, or no successful renewal for a whole `duration` marks it
/// lost ([`LeaseGuard::lost`], [`LeaseGuard::lost_token`]) and stops
/// renewing. [`LeaseGuard::release`] clears the holder; dropping the guard
/// only stops renewing (the Lease then expires by itself).
pub struct LeaseGuard {
    api: Api<Lease>,
    namespace: String,
    name: String,
    holder: String,
    current: Arc<Mutex<Lease>>,
    lost: CancellationToken,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LeaseGuard {
    fn start(
        api: Api<Lease>,
        namespace: &str,
        name: &str,
        holder: &str,
        duration: Duration,
        written: Lease,
    ) -> Self {
        let current = Arc::new(Mutex::new(written));
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let task = tokio::spawn(renew_loop(
            api.clone(),
            name.to_string(),
            holder.to_string(),
            duration,
            current.clone(),
            lost.clone(),
            stop.clone(),
        ));
        Self {
            api,
            namespace: namespace.to_string(),
            name: name.to_string(),
            holder: holder.to_string(),
            current,
            lost,
            stop,
            task: Some(task),
        }
    }

    /// The Lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This run's holder identity.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// `true` once another holder took the Lease or renewing failed for a
    /// whole lease duration. The run should then stop destructive work.
    pub fn lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Cancelled when the Lease is lost (link it to the run's cancellation).
    pub fn lost_token(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Stops renewing and clears the holder (a replace with the last
    /// `resourceVersion`), so the next run need not wait for expiry. A Lease
    /// already taken by someone else is left alone.
    ///
    /// Errors: API failures other than 404/409 (the Lease then expires by
    /// itself).
    pub async fn release(mut self) -> Result<(), KubeError> {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        if self.lost() {
            return Ok(());
        }
        let op = Op {
            verb: "update",
            resource: "leases.coordination.k8s.io",
            namespace: &self.namespace,
            name: Some(&self.name),
        };
        let mut lease = self
            .current
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        for _ in 0..2 {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.holder.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
            match self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if status_code(&e) == Some(404) => return Ok(()),
                Err(e) if status_code(&e) == Some(409) => {
                    lease = match self.api.get(&self.name).await {
                        Ok(l) => l,
                        Err(e) if status_code(&e) == Some(404) => return Ok(()),
                        Err(e) => return Err(op.err(e)),
                    };
                }
                Err(e) => return Err(op.err(e)),
            }
        }
        Ok(())
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn renew_loop(
    api: Api<Lease>,
    name: String,
    holder: String,
    duration: Duration,
    current: Arc<Mutex<Lease>>,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let every = (duration / 3).max(Duration::from_millis(50));
    let mut last_ok = tokio::time::Instant::now();
    let set = |l: Lease| match current.lock() {
        Ok(mut c) => *c = l,
        Err(p) => *p.into_inner() = l,
    };
    let get = || match current.lock() {
        Ok(c) => c.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let lose = |why: &str| {
        tracing::warn!(lease = %name, "the run lease was lost: {why}");
        lost.cancel();
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let mut lease = get();
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        }
        let pp = PostParams::default();
        let res = tokio::select! {
            _ = stop.cancelled() => return,
            r = api.replace(&name, &pp, &lease) => r,
        };
        match res {
            Ok(l) => {
                set(l);
                last_ok = tokio::time::Instant::now();
                continue;
            }
            Err(e) if status_code(&e) == Some(404) => return lose("the Lease was deleted"),
            Err(e) if status_code(&e) == Some(409) => {
                // Someone wrote first — or our own last write landed but its
                // answer was lost. Re-read and decide.
                match api.get(&name).await {
                    Ok(l)
                        if l.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                            == Some(holder.as_str()) =>
                    {
                        set(l);
                        continue;
                    }
                    Ok(l) => {
                        let other = l
                            .spec
                            .and_then(|s| s.holder_identity)
                            .unwrap_or_else(|| "nobody".into());
                        return lose(&format!("it is now held by {other}"));
                    }
                    Err(e) if status_code(&e) == Some(404) => {
                        return lose("the Lease was deleted");
                    }
                    Err(e) => {
                        tracing::warn!(lease = %name, error = %e, "cannot re-read the run lease")
                    }
                }
            }
            Err(e) => tracing::warn!(lease = %name, error = %e, "cannot renew the run lease"),
        }
        if last_ok.elapsed() >= duration {
            return lose("no renewal succeeded for a whole lease duration");
        }
    }
}
