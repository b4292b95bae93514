//! One run at a time per policy (invariant 10): the lock file beside the
//! local store, and the Kubernetes Lease `snapward-<policy>` when the API
//! is there. Both are taken before anything is read from the cluster.

use std::time::Duration;

use crate::backends::kube::{self as k8s, KubeError, LeaseGuard};
use crate::exit::Exit;
use crate::policy::ValidPolicy;
use crate::wiring::{Kube, env};

/// How long the run Lease lasts without renewal (renewed every third of
/// it): a crashed run blocks the next one for at most this long.
const LEASE_DURATION: Duration = Duration::from_secs(60);

/// What keeps other runs out while this one works.
pub(super) struct Held {
    pub _lock: Option<std::fs::File>,
    pub lease: Option<LeaseGuard>,
}

/// Take the lock file, then the Lease (dry runs write nothing and take
/// neither). `Err` is the exit code, with the reason already printed.
pub(super) async fn take(
    p: &ValidPolicy,
    kube: Option<&Kube>,
    dry_run: bool,
) -> Result<Held, Exit> {
    if dry_run {
        return Ok(Held {
            _lock: None,
            lease: None,
        });
    }
    let lock = match lock(p) {
        Ok(Some(f)) => f,
        Ok(None) => {
            crate::ewriteln!(
                "busy: another run of policy `{}` holds the lock; nothing was touched",
                p.name()
            );
            return Err(Exit::Busy);
        }
        Err(e) => {
            crate::ewriteln!(
                "error: cannot take the run lock in {} (spec.local.path): {e}; it must be a directory this user can create files in; nothing was touched",
                p.local.dir.display()
            );
            return Err(Exit::Retry);
        }
    };
    let lease = match kube {
        Some(k) => match lease(p, k).await {
            Ok(Some(g)) => Some(g),
            Ok(None) => {
                crate::ewriteln!(
                    "busy: another run of policy `{}` holds the Lease {}/snapward-{}; nothing was touched",
                    p.name(),
                    k.namespace,
                    p.name()
                );
                return Err(Exit::Busy);
            }
            Err(e) => {
                crate::ewriteln!("error: cannot take the run Lease: {e}");
                return Err(Exit::Retry);
            }
        },
        None => None,
    };
    Ok(Held {
        _lock: Some(lock),
        lease,
    })
}

/// Gives the run Lease back (the next run need not wait for its expiry).
pub(super) async fn release(lease: Option<LeaseGuard>) {
    if let Some(l) = lease
        && let Err(e) = l.release().await
    {
        tracing::warn!(error = %e, "cannot release the run Lease (it expires by itself)");
    }
}

/// The run Lease `snapward-<policy>` (single flight across pods).
/// `Ok(None)`: another run holds it.
async fn lease(p: &ValidPolicy, kube: &Kube) -> Result<Option<LeaseGuard>, KubeError> {
    let holder = k8s::holder_identity(env);
    k8s::LeaseLock::acquire(
        &kube.client,
        &kube.namespace,
        &format!("snapward-{}", p.name()),
        &holder,
        LEASE_DURATION,
    )
    .await
}

/// The lock file that keeps runs of one policy apart (filesystem shape).
fn lock(p: &ValidPolicy) -> Result<Option<std::fs::File>, std::io::Error> {
    let dir = p.local.dir.as_path();
    if dir.exists() && !dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "it exists but is not a directory",
        ));
    }
    std::fs::create_dir_all(dir)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!(".snapward-{}.lock", p.name())))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}
