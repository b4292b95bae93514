//! What the unseal, init and restore actions share: polling for a state
//! the server reaches by itself, and sending key shares the way OpenBao
//! wants them (exactly the threshold; followers only once they joined).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Actions;
use crate::backends::{BaoError, Ceremony, SealState};
use crate::exec::{Item, Unsealing};
use crate::secret::Secret;

/// Poll `f` until it yields `Some`, the deadline passes, or the run is
/// cancelled. The first waits are short (a tenth of `every`, doubling up to
/// `every`): most states the ceremony waits for arrive within a few dozen
/// milliseconds, a slow one is then polled every `every`.
pub(super) async fn poll<T, F, Fut>(
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

pub(super) const POLL: Duration = Duration::from_millis(250);

/// The server rejected the stored keys because the temporary barrier had
/// another shape (docs/openbao.md): only a restart of its process helps.
pub(super) fn invalid_key_size(e: &BaoError) -> bool {
    matches!(e, BaoError::InvalidKeySize { .. })
}

/// Send key shares until the node reports unsealed (or keys run out).
pub(super) async fn unseal_with(
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

/// Why the followers could not be unsealed.
#[derive(Debug, thiserror::Error)]
pub(super) enum FollowerError {
    #[error("{node} did not join within {waited:?}")]
    NotJoined { node: String, waited: Duration },
    #[error("{node}: {source}")]
    Bao {
        node: String,
        #[source]
        source: BaoError,
    },
    #[error("{node} is still sealed after {keys} key(s)")]
    StillSealed { node: String, keys: usize },
    #[error(
        "{node} was not unsealed by its seal within {waited:?}: check that the seal (KMS, transit server, key file) is reachable from it and accepts it"
    )]
    SealDidNotUnseal { node: String, waited: Duration },
}

impl Actions {
    /// Auto-unseal: wait until each node from `from` on is unsealed by its
    /// seal (followers once they joined); no key is ever sent.
    pub(super) async fn await_unsealed_by_seal(
        &self,
        from: usize,
        cancel: &CancellationToken,
        items: &mut Vec<Item>,
    ) -> Result<(), FollowerError> {
        let c = self.ceremony.as_ref();
        for (node, name) in self.bao.node_names().iter().enumerate().skip(from) {
            let wait = if node == 0 {
                self.policy.restore.apply_timeout
            } else {
                self.policy.restore.join_timeout
            };
            let unsealed = poll(wait, POLL, cancel, || async move {
                c.seal_status(node)
                    .await
                    .ok()
                    .filter(|s| s.initialized && !s.sealed)
            })
            .await;
            if unsealed.is_none() {
                return Err(FollowerError::SealDidNotUnseal {
                    node: name.clone(),
                    waited: wait,
                });
            }
            items.push(Item::Unsealed {
                node: name.clone(),
                how: Unsealing::BySeal,
            });
        }
        Ok(())
    }

    /// Followers: once joined (initialised), unseal them with `keys`.
    pub(super) async fn unseal_followers(
        &self,
        keys: &[Secret],
        how: Unsealing,
        cancel: &CancellationToken,
        items: &mut Vec<Item>,
    ) -> Result<(), FollowerError> {
        let c = self.ceremony.as_ref();
        let names = self.bao.node_names();
        for (node, name) in names.iter().enumerate().skip(1) {
            let joined = poll(
                self.policy.restore.join_timeout,
                POLL,
                cancel,
                || async move { c.seal_status(node).await.ok().filter(|s| s.initialized) },
            )
            .await;
            let Some(status) = joined else {
                return Err(FollowerError::NotJoined {
                    node: name.clone(),
                    waited: self.policy.restore.join_timeout,
                });
            };
            if !status.sealed {
                items.push(Item::AlreadyUnsealed { node: name.clone() });
                continue;
            }
            // Keys sent before a follower has joined are lost: it has joined now.
            let s = unseal_with(c, node, keys, self.policy.restore.join_timeout, cancel)
                .await
                .map_err(|source| FollowerError::Bao {
                    node: name.clone(),
                    source,
                })?;
            if s.sealed {
                return Err(FollowerError::StillSealed {
                    node: name.clone(),
                    keys: keys.len(),
                });
            }
            items.push(Item::Unsealed {
                node: name.clone(),
                how,
            });
        }
        Ok(())
    }
}
