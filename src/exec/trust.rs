//! Which stored snapshots snapward can vouch for: the claims a listing
//! makes (name, size, SHA-256, raft index and term, cluster id) are
//! authenticated with the stored keys before retention, mirroring, the
//! guard or a restore count them (issue 18: a bucket writer must not be
//! able to steer what prune deletes).
//!
//! Two proofs, one key: the unseal key the stored shares combine to.
//! - An S3 object carries a tag written at upload
//!   ([`crate::snapshot::auth::tag`]): a HEAD is enough.
//! - A file that is read in full anyway (the local store, a filesystem
//!   target) is authenticated by its content: its sealed sums
//!   ([`crate::snapshot::auth`]).
//!
//! Stage: execute, but pure: no I/O. The keys are read by the actions.

use zeroize::Zeroizing;

use crate::backends::local::LocalSnapshot;
use crate::backends::{RemoteSnapshot, Trust, UploadTag};
use crate::snapshot::Identity;
use crate::snapshot::auth::tag::{Claims, ObjectKey};
use crate::snapshot::auth::{self, Authenticity};

/// The keys a run authenticates and tags with (wiped on drop).
pub struct Keys {
    /// The unseal key (Shamir): opens a snapshot's sealed sums. `None` for
    /// an auto-unseal cluster's recovery key, which cannot: its snapshots
    /// are checked by the server's verified restore (DESIGN.md §8).
    unseal: Option<Zeroizing<Vec<u8>>>,
    object: ObjectKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

impl Keys {
    /// From the unseal key the stored shares combine to.
    pub fn new(unseal: Zeroizing<Vec<u8>>) -> Self {
        let object = ObjectKey::derive(&unseal);
        Self {
            unseal: Some(unseal),
            object,
        }
    }

    /// From the recovery key the stored recovery shares combine to (an
    /// auto-unseal cluster): tags only; files are left unchecked.
    pub fn recovery(recovery: Zeroizing<Vec<u8>>) -> Self {
        Self {
            object: ObjectKey::derive(&recovery),
            unseal: None,
        }
    }
}

/// Why a snapshot's sealed sums do not authenticate it, as a reason.
fn content_verdict(sealed: &[u8], sums: &[u8], keys: &Keys) -> Trust {
    let Some(unseal) = &keys.unseal else {
        return Trust::Unchecked;
    };
    match auth::authenticate_with_key(sealed, sums, unseal) {
        Ok(Authenticity::Authentic) => Trust::Authentic,
        Ok(Authenticity::OtherKeys) => {
            Trust::OtherKeys("its sealed sums do not open under the stored keys".into())
        }
        Ok(Authenticity::SumsMismatch) => {
            Trust::OtherKeys("its SHA256SUMS differs from the sealed copy".into())
        }
        Err(e) => Trust::OtherKeys(format!("its sealed sums cannot be checked: {e}")),
    }
}

/// The claims a remote object makes, if it makes all of them.
fn claims(r: &RemoteSnapshot) -> Option<Claims<'_>> {
    Some(Claims {
        name: &r.name,
        size: r.size,
        sha256: r.sha256.as_deref()?,
        index: r.index?,
        term: r.term?,
        cluster_id: r.cluster_id.as_deref().unwrap_or(""),
    })
}

/// Judge one listed object: its sealed sums if the target read it in full,
/// else its tag.
pub fn judge_remote(r: &RemoteSnapshot, keys: &Keys) -> Trust {
    let Some(c) = claims(r) else {
        return Trust::Foreign("no snapward metadata (sha256, raft index and term)".into());
    };
    if let Some(s) = &r.sums {
        return content_verdict(&s.sealed, &s.sums, keys);
    }
    match &r.tag {
        None => Trust::Foreign("no snapward tag (not written by snapward 0.2 or later)".into()),
        Some(t) if keys.object.verify(&c, t) => Trust::Authentic,
        Some(_) => Trust::Foreign("its tag does not verify under the stored keys".into()),
    }
}

/// Judge one local file by its content.
pub fn judge_local(s: &LocalSnapshot, keys: &Keys) -> Trust {
    match &s.sums {
        _ if s.identity.is_none() => Trust::Foreign("it does not verify".into()),
        Some((sums, sealed)) => content_verdict(sealed, sums, keys),
        None => Trust::OtherKeys("it has no sealed sums".into()),
    }
}

/// Every object of a listing judged (no keys: left unchecked).
pub fn judge_listing(list: &mut [RemoteSnapshot], keys: Option<&Keys>) {
    if let Some(k) = keys {
        for r in list {
            r.trust = judge_remote(r, k);
        }
    }
}

/// Every local file judged (no keys: left unchecked).
pub fn judge_inventory(inv: &mut [LocalSnapshot], keys: Option<&Keys>) {
    if let Some(k) = keys {
        for s in inv {
            s.trust = judge_local(s, k);
        }
    }
}

/// What an upload of `name` records so that a HEAD can authenticate it.
pub fn upload_tag(
    name: &str,
    identity: &Identity,
    cluster_id: &str,
    keys: Option<&Keys>,
) -> UploadTag {
    let tag = keys.map(|k| {
        k.object.tag(&Claims {
            name,
            size: identity.file_size,
            sha256: &identity.sha256,
            index: identity.index,
            term: identity.term,
            cluster_id,
        })
    });
    UploadTag {
        cluster_id: cluster_id.to_string(),
        tag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: u8) -> Keys {
        Keys::new(Zeroizing::new(vec![b; 32]))
    }

    fn identity() -> Identity {
        Identity {
            index: 40,
            term: 2,
            version: 1,
            state_size: 100,
            file_size: 512,
            sha256: "ab".repeat(32),
        }
    }

    fn listed(name: &str, tag: &UploadTag) -> RemoteSnapshot {
        let id = identity();
        RemoteSnapshot {
            name: name.into(),
            size: id.file_size,
            sha256: Some(id.sha256),
            index: Some(id.index),
            term: Some(id.term),
            time: "2026-12-01T02:00:00Z".parse().unwrap(),
            cluster_id: Some(tag.cluster_id.clone()).filter(|c| !c.is_empty()),
            tag: tag.tag.clone(),
            sums: None,
            trust: Trust::Unchecked,
        }
    }

    #[test]
    fn an_upload_tag_authenticates_the_listing_of_that_upload() {
        let k = keys(1);
        let name = "openbao-20261201-020000.snap";
        let t = upload_tag(name, &identity(), "cid-1", Some(&k));
        assert_eq!(judge_remote(&listed(name, &t), &k), Trust::Authentic);
        // Without a cluster id, too.
        let t = upload_tag(name, &identity(), "", Some(&k));
        assert_eq!(judge_remote(&listed(name, &t), &k), Trust::Authentic);
    }

    #[test]
    fn forged_or_altered_claims_are_foreign() {
        let k = keys(1);
        let name = "openbao-20261201-020000.snap";
        let t = upload_tag(name, &identity(), "cid-1", Some(&k));
        let mut huge = listed(name, &t);
        huge.index = Some(u64::MAX);
        assert!(judge_remote(&huge, &k).is_foreign());
        let renamed = listed("openbao-20991231-000000.snap", &t);
        assert!(judge_remote(&renamed, &k).is_foreign());
        let mut other_cluster = listed(name, &t);
        other_cluster.cluster_id = Some("cid-2".into());
        assert!(judge_remote(&other_cluster, &k).is_foreign());
        let untagged = listed(name, &UploadTag::default());
        assert!(judge_remote(&untagged, &k).is_foreign());
        assert!(judge_remote(&listed(name, &t), &keys(2)).is_foreign());
    }

    #[test]
    fn without_keys_a_listing_stays_unchecked() {
        let mut l = vec![listed(
            "openbao-20261201-020000.snap",
            &UploadTag::default(),
        )];
        judge_listing(&mut l, None);
        assert_eq!(l[0].trust, Trust::Unchecked);
        judge_listing(&mut l, Some(&keys(1)));
        assert!(l[0].trust.is_foreign());
    }
}
