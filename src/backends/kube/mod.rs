//! Kubernetes: the API client, node discovery, the run Lease, Events, pod
//! restart and the policy read from a ConfigMap. The Secret key store
//! (`backends::keys::SecretKeyStore`) uses this module's errors.
//!
//! Stage: execute (backend). Everything here talks to the Kubernetes API
//! through `kube` 5 + `k8s-openapi` (rustls with the `aws-lc-rs` provider
//! only: a second provider makes rustls panic at runtime).
//!
//! Must never:
//! - update, patch or replace a Secret (the key store is create-only, and a
//!   created Secret is `immutable`);
//! - report a pod that is not serving as anything but `InitState::Unknown`
//!   ([`DiscoveredOpenBao`] holds that rule in one place);
//! - put key material in an error, a log line or an Event note;
//! - fail a run because an Event could not be written.
//!
//! # Choices
//!
//! - **Readiness.** A pod is *ready* when it is Running, not terminating,
//!   has an IP, and its `Ready` condition is `True`. The OpenBao Helm
//!   chart's default readiness probe is `bao status`, which fails while the
//!   server is **sealed** — so a wiped or freshly restarted (sealed) cluster
//!   has no Ready pod at all. [`Readiness::Ready`] (the strict rule) then
//!   makes every node unknown and nothing can unseal or restore it;
//!   [`Readiness::Running`] trusts the HTTP observation of pods whose
//!   containers all run (the probe is ignored) and still makes pending,
//!   terminating, crash-looping and missing pods unknown. Which one a policy
//!   wants depends on its readiness probe, so callers choose.
//! - **Ordinals.** Pods are ordered by StatefulSet ordinal (the
//!   `apps.kubernetes.io/pod-index` label, else the `-N` name suffix of a
//!   StatefulSet-owned pod). A missing ordinal below the highest one found
//!   becomes a placeholder node that is not ready (unknown), so "node 0"
//!   always means ordinal 0 and never silently shifts to ordinal 1. Two pods
//!   with one ordinal (the selector matches two StatefulSets) are an error.
//!   A missing *highest* ordinal cannot be seen without reading the
//!   StatefulSet's replica count (not done: it needs one more RBAC rule).
//! - **"Absent" keys need proof.** The key store reports "no Secret" only on
//!   the API server's own `NotFound` for that Secret (reason and details
//!   name it). Any other 404 — a proxy, a wrong API URL — is "unavailable",
//!   because "absent" can let a fresh init run.
//! - **Errors are classified by HTTP code.** For a non-JSON error body kube
//!   builds a `Status` with reason "Failed to parse error data", and
//!   kube-core 5's `Status::is_forbidden()`/`is_not_found()` then ignore the
//!   code; this module looks at the code first.
//! - **Lease.** `coordination.k8s.io/v1`, written with the observed
//!   `resourceVersion` every time (optimistic concurrency): a 409 means
//!   someone else wrote first, so the acquirer is "busy" and a renewer has
//!   "lost" it. The holder identity must be unique per process (the pod
//!   name in a Job; `hostname-pid` on a laptop); the same identity re-takes
//!   its own lease at once (a container restarted in the same pod).
//! - **Events** (`events.k8s.io/v1`, through `kube::runtime::events::Recorder`):
//!   a fresh `Recorder` per event. A long-lived `Recorder` folds repeats of
//!   one (type, reason, action) within 6 minutes into a PATCH of the *first*
//!   event's series, keeping the first note — two "TargetSkipped" events for
//!   two targets would show only the first target. A run emits a handful of
//!   events, so every one is created (RBAC: `create` on events only).
//! - **Polling, not watches**, for the pod restart: a few GETs per second
//!   are cheap and survive API-server restarts without watch bookkeeping.
//!
//! # Files
//!
//! - `error.rs`: [`KubeError`] and how a failed call is classified;
//! - `client.rs`: the API client (kubeconfig or in-cluster);
//! - `discovery.rs`: the OpenBao pods, their ordinals and readiness;
//! - `discovered.rs`: [`DiscoveredOpenBao`], the "not serving ⇒ unknown" rule;
//! - `lease.rs`: the run Lease (single flight);
//! - `events.rs`: Kubernetes Events, the [`Notifier`](crate::backends::Notifier) of a run;
//! - `restart.rs`: restarting a pod through its StatefulSet;
//! - `configmap.rs`: the policy read from a ConfigMap.

mod client;
mod configmap;
mod discovered;
mod discovery;
pub(in crate::backends) mod error;
mod events;
mod lease;
mod restart;

pub use client::client;
pub use configmap::{ConfigMapRef, read_policy_configmap};
pub use discovered::DiscoveredOpenBao;
pub use discovery::{
    DiscoveredNode, POD_INDEX_LABEL, Readiness, addresses, discover_nodes, unready_status,
};
pub use error::KubeError;
pub use events::{EventKind, EventSink, event_target};
pub use lease::{LeaseGuard, LeaseLock, holder_identity};
pub use restart::restart_pod;

/// Reporting controller on every Event (and the `managed-by` label of what
/// snapward creates).
pub const CONTROLLER: &str = "snapward";
