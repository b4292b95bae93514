//! Typed outcome items: what one action did, item by item (uploaded x,
//! would delete y, retained by lock z). Actions produce them; the report
//! serialises each with its `kind`, its fields and the sentence a human
//! reads (`text`); the human summary and Events print the sentence.
//!
//! Stage: execute. Pure data. Never holds a secret: names, sizes, reasons.

use std::fmt;

use serde::Serialize;

use crate::cluster::InitState;
use crate::snapshot::auth::Authenticity;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Item {
    // -- observe --
    /// One node's observed state.
    Node {
        name: String,
        init: InitState,
        #[serde(skip_serializing_if = "Option::is_none")]
        sealed: Option<bool>,
        active: bool,
        /// `sys/seal-status` `type`: `shamir`, `static`, `transit`, …
        #[serde(skip_serializing_if = "Option::is_none")]
        seal: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The key store could not be read.
    KeyStoreUnreadable {
        error: String,
    },
    /// A stored snapshot whose claims the stored keys do not authenticate
    /// (no tag, a forged tag, another cluster's sealed sums): never
    /// counted, never deleted, never restored unless a human names it.
    Foreign {
        store: String,
        name: String,
        reason: String,
    },
    /// A key store is named but its keys cannot be used this run: nothing
    /// is authenticated, so nothing is deleted.
    CannotAuthenticate {
        reason: String,
    },
    /// The policy's `spec.init` shape differs from the one recorded with the
    /// stored keys; the recorded one is used.
    #[serde(rename_all = "camelCase")]
    KeyShapeMismatch {
        stored_shares: u32,
        stored_threshold: u32,
        policy_shares: u32,
        policy_threshold: u32,
    },
    /// An upload without a tag (no usable keys): the object will be foreign.
    UploadedUntagged {
        name: String,
        reason: String,
    },
    /// A store holds a file/object that did not verify (never counted).
    Invalid {
        store: String,
        name: String,
        reason: String,
    },
    /// A store could not be read at all.
    StoreUnreadable {
        store: String,
        error: String,
    },
    ListingFailed {
        store: String,
        error: String,
    },
    /// A target that cannot be used this run (credentials absent, ...).
    TargetUnavailable {
        store: String,
        error: String,
    },
    RestoreMarkerUnreadable {
        error: String,
    },
    /// A restore stopped after node 0 was temp-initialised.
    RestoreInterrupted {
        marker: String,
    },

    // -- snapshot --
    /// This run's snapshot streamed from the active node into a temp file.
    Streamed {
        name: String,
        node: String,
        bytes: u64,
    },
    /// This run's snapshot streamed to a target's temp copy at the same
    /// time (its upload commits it).
    StreamedTo {
        target: String,
    },
    /// A target dropped out of the stream (failed, or too slow): its
    /// upload reads the local file instead.
    StreamDetached {
        target: String,
        reason: String,
    },

    // -- upload --
    /// This run's snapshot was published from the copy streamed to the
    /// target during the snapshot (then read back: see `Uploaded`).
    StreamCommitted {
        name: String,
    },
    CleanedUp {
        what: String,
    },
    CleanupFailed {
        error: String,
    },
    /// Same name remotely with other content: never overwritten.
    Conflict {
        name: String,
    },
    Uploaded {
        name: String,
        bytes: u64,
    },
    WouldUpload {
        name: String,
        bytes: u64,
    },
    /// Missing remotely, but the target's retention would delete it at once.
    NotUploaded {
        name: String,
    },

    // -- prune --
    Deleted {
        name: String,
        reasons: Vec<String>,
    },
    WouldDelete {
        name: String,
        reasons: Vec<String>,
    },
    RetainedByLock {
        name: String,
    },
    /// A local file that did not verify: not counted by retention, kept.
    NotCounted {
        name: String,
        reason: String,
    },
    /// Retention would delete it, but no target holds it
    /// (`guards.keepUnmirroredLocal`).
    KeptUnmirrored {
        name: String,
    },

    // -- unseal --
    Unsealed {
        node: String,
        how: Unsealing,
    },
    AlreadyUnsealed {
        node: String,
    },
    WouldUnseal {
        node: String,
    },

    // -- fetch --
    FetchFailed {
        store: String,
        name: String,
        error: String,
    },
    /// Fetched, but it did not verify: the next newest is tried.
    Rejected {
        store: String,
        name: String,
        reason: String,
    },
    Chose {
        store: String,
        name: String,
        index: u64,
        term: u64,
    },

    // -- authenticity (verify, fetch) --
    /// A snapshot's sealed sums checked with the stored keys.
    Authenticity {
        store: String,
        name: String,
        authenticity: Authenticity,
    },
    /// A snapshot whose authenticity could not be checked, and why.
    NotCheckable {
        store: String,
        name: String,
        reason: String,
    },

    // -- restore / verify-cluster --
    /// One step of the restore ceremony, in the words of the step.
    Step {
        text: String,
    },
    ClusterVerified {
        nodes: usize,
        cluster_id: String,
        raft_index: u64,
        want_index: u64,
    },
    CanaryRead {
        path: String,
    },
    /// A node's server process was restarted (it rejected the stored keys
    /// with "invalid key size").
    Restarted {
        node: String,
        why: String,
    },
    /// A dry run: what this destructive step would do.
    Would {
        text: String,
    },
    /// The verified restore refused the snapshot: it was taken under
    /// another seal key (auto-unseal).
    SealMismatch {
        store: String,
        name: String,
        detail: String,
    },
    /// `verify-cluster`: one node of the restored cluster — unsealed, its
    /// state machine at or past `want_index` (`sys/leader`
    /// `raft_applied_index`), and with a canary the canary read on this
    /// very node (standbys serve reads from their own state).
    #[serde(rename_all = "camelCase")]
    NodeVerified {
        node: String,
        active: bool,
        raft_applied_index: u64,
        want_index: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        canary: Option<String>,
    },
    /// Auto-unseal restore: a follower that was a standby of node 0's
    /// temporary cluster was restarted, so that it loads the restored state
    /// instead of serving the temporary cluster's in-memory state.
    FollowerRestarted {
        node: String,
    },
}

/// With which keys a node was unsealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unsealing {
    /// Backup branch: the stored keys.
    Stored,
    /// Init branch: the keys init just made.
    New,
    /// Restore branch, node 0: the stored keys.
    StoredAfterRestore,
    /// Restore branch, node 0, after its server process restarted.
    StoredAfterRestart,
    /// Auto-unseal: the node's seal unsealed it (no key was sent).
    BySeal,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Node {
                name,
                init,
                sealed,
                active,
                seal,
                error,
            } => {
                write!(f, "{}", format!("{name}: {init:?}").to_lowercase())?;
                match sealed {
                    Some(true) => write!(f, ", sealed")?,
                    Some(false) => write!(f, ", unsealed")?,
                    None => {}
                }
                if *active {
                    write!(f, ", active")?;
                }
                // Shamir is the default; an auto-unseal seal is named.
                if let Some(t) = seal.as_deref().filter(|t| *t != "shamir") {
                    write!(f, ", {t} seal (auto-unseal)")?;
                }
                if let Some(e) = error {
                    write!(f, " ({e})")?;
                }
                Ok(())
            }
            Item::KeyStoreUnreadable { error } => write!(f, "{error}"),
            Item::Invalid {
                store,
                name,
                reason,
            } => write!(f, "{store}: invalid {name} ({reason})"),
            Item::StoreUnreadable { store, error } => write!(f, "{store}: {error}"),
            Item::Foreign {
                store,
                name,
                reason,
            } => write!(
                f,
                "{store}: foreign {name}: not counted, never deleted ({reason})"
            ),
            Item::KeyShapeMismatch {
                stored_shares,
                stored_threshold,
                policy_shares,
                policy_threshold,
            } => write!(
                f,
                "warning: spec.init says {policy_shares} shares, threshold {policy_threshold}, but the stored keys were made with {stored_shares} shares, threshold {stored_threshold}: using the stored shape; correct spec.init"
            ),
            Item::CannotAuthenticate { reason } => write!(
                f,
                "stored snapshots cannot be authenticated this run: {reason}; nothing is deleted"
            ),
            Item::UploadedUntagged { name, reason } => write!(
                f,
                "{name} uploaded without a tag ({reason}): it will be listed as foreign"
            ),
            Item::ListingFailed { store, error } => write!(f, "{store}: listing failed: {error}"),
            Item::TargetUnavailable { store, error } => write!(f, "{store}: {error}"),
            Item::RestoreMarkerUnreadable { error } => {
                write!(f, "local: cannot read the restore marker: {error}")
            }
            Item::RestoreInterrupted { marker } => {
                write!(f, "local: a restore was interrupted ({marker})")
            }
            Item::Streamed { name, node, bytes } => {
                write!(f, "streamed {name} ({bytes} bytes) from {node}")
            }
            Item::StreamedTo { target } => write!(f, "streamed to `{target}` at the same time"),
            Item::StreamDetached { target, reason } => write!(
                f,
                "`{target}` dropped out of the stream ({reason}): it uploads from the local file"
            ),
            Item::StreamCommitted { name } => {
                write!(
                    f,
                    "published {name} from the copy streamed during the snapshot"
                )
            }
            Item::CleanedUp { what } => write!(f, "cleaned up {what}"),
            Item::CleanupFailed { error } => write!(f, "cleanup of leftovers failed: {error}"),
            Item::Conflict { name } => write!(
                f,
                "not overwritten: {name} exists remotely with other content"
            ),
            Item::Uploaded { name, bytes } => {
                write!(f, "uploaded {name} ({bytes} bytes, confirmed)")
            }
            Item::WouldUpload { name, bytes } => write!(f, "would upload {name} ({bytes} bytes)"),
            Item::NotUploaded { name } => write!(
                f,
                "not uploaded {name}: the target's retention would delete it at once"
            ),
            Item::Deleted { name, reasons } => write!(f, "deleted {name} ({})", reasons.join(", ")),
            Item::WouldDelete { name, reasons } => {
                write!(f, "would delete {name} ({})", reasons.join(", "))
            }
            Item::RetainedByLock { name } => write!(f, "retained by lock: {name}"),
            Item::NotCounted { name, reason } => {
                write!(f, "invalid, not counted: {name} ({reason})")
            }
            Item::KeptUnmirrored { name } => write!(
                f,
                "kept {name}: exists on no target (guards.keepUnmirroredLocal)"
            ),
            Item::Unsealed { node, how } => match how {
                Unsealing::Stored | Unsealing::New => write!(f, "{node}: unsealed"),
                Unsealing::StoredAfterRestore => {
                    write!(f, "{node}: unsealed with the stored keys")
                }
                Unsealing::StoredAfterRestart => {
                    write!(f, "{node}: unsealed with the stored keys after the restart")
                }
                Unsealing::BySeal => write!(f, "{node}: unsealed by its seal"),
            },
            Item::SealMismatch {
                store,
                name,
                detail,
            } => write!(
                f,
                "{store}/{name} was taken under another seal key: {detail}"
            ),
            Item::AlreadyUnsealed { node } => write!(f, "{node}: already unsealed"),
            Item::WouldUnseal { node } => write!(f, "would unseal {node}"),
            Item::FetchFailed { store, name, error } => {
                write!(f, "{store}/{name}: fetch failed: {error}")
            }
            Item::Rejected {
                store,
                name,
                reason,
            } => write!(
                f,
                "{store}/{name}: invalid ({reason}), trying the next newest"
            ),
            Item::Chose {
                store,
                name,
                index,
                term,
            } => write!(f, "chose {store}/{name} (raft index {index}, term {term})"),
            Item::Authenticity {
                store,
                name,
                authenticity,
            } => write!(f, "{store}/{name}: {}", authenticity_words(*authenticity)),
            Item::NotCheckable {
                store,
                name,
                reason,
            } => write!(f, "{store}/{name}: authenticity not checkable ({reason})"),
            Item::Step { text } | Item::Would { text } => write!(f, "{text}"),
            Item::ClusterVerified {
                nodes,
                cluster_id,
                raft_index,
                want_index,
            } => write!(
                f,
                "{nodes} node(s) unsealed, cluster_id {cluster_id}, raft index {raft_index} ≥ {want_index}"
            ),
            Item::CanaryRead { path } => write!(f, "canary {path} readable"),
            Item::Restarted { node, why } => write!(
                f,
                "{node} rejected the stored keys ({why}); its pod was restarted"
            ),
            Item::NodeVerified {
                node,
                active,
                raft_applied_index,
                want_index,
                canary,
            } => {
                let role = if *active { "active" } else { "standby" };
                write!(
                    f,
                    "{node} ({role}): raft applied index {raft_applied_index} ≥ {want_index}"
                )?;
                match canary {
                    Some(path) => write!(f, ", canary {path} read on this node"),
                    None => Ok(()),
                }
            }
            Item::FollowerRestarted { node } => write!(
                f,
                "{node} was a standby of the temporary cluster (it would serve that cluster's in-memory state); its pod was restarted"
            ),
        }
    }
}

/// What a verdict means, for people.
pub fn authenticity_words(a: Authenticity) -> &'static str {
    match a {
        Authenticity::Authentic => "authentic (sealed by the stored keys)",
        Authenticity::OtherKeys => {
            "sealed with other keys (another cluster, or this one before or after a rekey)"
        }
        Authenticity::SumsMismatch => {
            "tampered: SHA256SUMS differs from the sums the stored keys sealed"
        }
    }
}

/// An item as the report writes it: its typed fields and the sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportItem {
    #[serde(flatten)]
    pub item: Item,
    pub text: String,
}

impl From<Item> for ReportItem {
    fn from(item: Item) -> Self {
        let text = item.to_string();
        Self { item, text }
    }
}

impl Item {
    pub fn step(text: impl Into<String>) -> Self {
        Item::Step { text: text.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_read_as_before_and_serialise_with_kind_fields_and_text() {
        let i = Item::WouldDelete {
            name: "openbao-20261128-021500.snap".into(),
            reasons: vec!["not kept by keepLast 1".into()],
        };
        assert_eq!(
            i.to_string(),
            "would delete openbao-20261128-021500.snap (not kept by keepLast 1)"
        );
        let v = serde_json::to_value(ReportItem::from(i)).unwrap();
        assert_eq!(v["kind"], "would-delete");
        assert_eq!(v["name"], "openbao-20261128-021500.snap");
        assert!(v["text"].as_str().unwrap().starts_with("would delete "));
        let n = Item::Node {
            name: "Bao-0".into(),
            init: InitState::Initialized,
            sealed: Some(false),
            active: true,
            seal: Some("shamir".into()),
            error: None,
        };
        assert_eq!(n.to_string(), "bao-0: initialized, unsealed, active");
    }
}
