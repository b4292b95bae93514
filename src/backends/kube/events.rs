//! Kubernetes Events about the run (`events.k8s.io/v1`), and the
//! [`Notifier`] the executor announces through.
//!
//! Must never: fail or block a run for long (errors are logged, a write
//! has a timeout), or put a secret in a note (names, sizes, counts and
//! reasons only).

use std::time::Duration;

use ::kube::Client;
use ::kube::runtime::events::{Event as RecorderEvent, EventType, Recorder, Reporter};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::ObjectReference;

use super::CONTROLLER;
use super::error::Op;
use crate::backends::{Notifier, Severity};

/// An Event that cannot be written within this is dropped (logged).
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// An Event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Something went as planned (snapshot taken, uploaded, pruned, restored).
    Normal,
    /// Something a human should look at (target skipped, guard refused,
    /// restore failed).
    Warning,
}

/// The object Events are attached to: the Job's pod when `POD_NAME` and
/// `POD_NAMESPACE` are set (downward API; `POD_UID` too if set), else the
/// policy ConfigMap `(namespace, name)` if known. `env` looks a variable up
/// (pass `|k| std::env::var(k).ok()`).
pub fn event_target(
    env: impl Fn(&str) -> Option<String>,
    policy_configmap: Option<(&str, &str)>,
) -> Option<ObjectReference> {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let (Some(name), Some(namespace)) = (nonempty("POD_NAME"), nonempty("POD_NAMESPACE")) {
        return Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name),
            namespace: Some(namespace),
            uid: nonempty("POD_UID"),
            ..ObjectReference::default()
        });
    }
    policy_configmap.map(|(namespace, name)| ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..ObjectReference::default()
    })
}

/// Writes Kubernetes Events (`events.k8s.io/v1`) about one object through
/// `kube::runtime::events::Recorder`. Emitting never fails a run: errors
/// are logged and dropped. Notes must never contain secrets — pass only
/// names, sizes, counts and reasons. RBAC: `create` on
/// `events.events.k8s.io`.
#[derive(Clone)]
pub struct EventSink {
    client: Client,
    reporter: Reporter,
    regarding: ObjectReference,
}

impl EventSink {
    /// Events about `regarding` (see [`event_target`]), reported by
    /// `snapward` from `instance` (the pod name, if known).
    pub fn new(client: Client, regarding: ObjectReference, instance: Option<String>) -> Self {
        Self {
            client,
            reporter: Reporter {
                controller: CONTROLLER.into(),
                instance,
            },
            regarding,
        }
    }

    /// The object the Events are about.
    pub fn regarding(&self) -> &ObjectReference {
        &self.regarding
    }

    /// Emits one Event. `reason` is a short PascalCase word
    /// (`SnapshotTaken`, `TargetSkipped`, `GuardRefused`), also used as the
    /// Event's action; `note` is human text (cut to 1 kB). Failures are
    /// logged, never returned.
    pub async fn emit(&self, kind: EventKind, reason: &str, note: &str) {
        let event = RecorderEvent {
            type_: match kind {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            },
            reason: truncate(reason, 128).to_string(),
            note: Some(truncate(note, 1024).to_string()),
            action: truncate(reason, 128).to_string(),
            secondary: None,
        };
        // A fresh Recorder: see the module docs (no series folding).
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        match tokio::time::timeout(EVENT_TIMEOUT, recorder.publish(&event, &self.regarding)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let ns = self.regarding.namespace.as_deref().unwrap_or("default");
                let err = Op {
                    verb: "create",
                    resource: "events.events.k8s.io",
                    namespace: ns,
                    name: None,
                }
                .err(e);
                tracing::warn!(reason, error = %err, "cannot write a Kubernetes Event");
            }
            Err(_) => tracing::warn!(reason, "writing a Kubernetes Event timed out"),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[async_trait]
impl Notifier for EventSink {
    async fn notify(&self, severity: Severity, reason: &str, note: &str) {
        let kind = match severity {
            Severity::Normal => EventKind::Normal,
            Severity::Warning => EventKind::Warning,
        };
        self.emit(kind, reason, note).await;
    }
}
