//! Pure choices the actions make on what the stores hold: which remote
//! objects count as snapshots (one definition), which local snapshots a
//! copy-only mirror uploads, and in which order a restore tries snapshots.
//!
//! Stage: execute, but pure: no I/O, no clock. Unit-tested with tables.

use std::collections::BTreeMap;

use crate::backends::RemoteSnapshot;
use crate::backends::local::LocalSnapshot;
use crate::exec::state::TakenSnapshot;
use crate::policy::StoreId;
use crate::retention::{self, Candidate, Rules, Verdict};

/// The one definition of a valid remote snapshot: snapward wrote it, so its
/// metadata carries the SHA-256 and the raft identity (index and term), and
/// — where the stored keys could check it — those claims authenticate
/// (`exec::trust`). Anything else under the prefix is never counted, never
/// restored.
pub fn remote_valid(r: &RemoteSnapshot) -> bool {
    claims_complete(r) && !r.trust.is_foreign()
}

/// The object carries every identity claim snapward writes.
fn claims_complete(r: &RemoteSnapshot) -> bool {
    r.index.is_some() && r.term.is_some() && r.sha256.is_some()
}

/// A local file that verified: a restore candidate (its claims are its own
/// content; the restore authenticates it, invariant 11).
pub fn local_valid(s: &LocalSnapshot) -> bool {
    s.identity.is_some() && !s.trust.is_foreign()
}

/// A remote object as a retention candidate: counted only when its claims
/// authenticated (or could not be checked at all: no key store).
pub fn remote_candidate(r: &RemoteSnapshot) -> Candidate {
    Candidate {
        id: r.name.clone(),
        time: r.time,
        index: r.index.unwrap_or(0),
        term: r.term.unwrap_or(0),
        valid: claims_complete(r) && r.trust.counts(),
    }
}

/// A verified snapshot (this run's, or a valid local one) as a candidate.
pub fn taken_candidate(tr: &TakenSnapshot) -> Candidate {
    Candidate {
        id: tr.name.clone(),
        time: tr.time,
        index: tr.identity.index,
        term: tr.identity.term,
        valid: true,
    }
}

/// A local file as a candidate (invalid files are not valid candidates).
pub fn local_candidate(s: &LocalSnapshot) -> Candidate {
    Candidate {
        id: s.name.clone(),
        time: s.time,
        index: s.identity.as_ref().map(|i| i.index).unwrap_or(0),
        term: s.identity.as_ref().map(|i| i.term).unwrap_or(0),
        valid: s.identity.is_some() && s.trust.counts(),
    }
}

/// What a copy-only mirror to one target should do.
#[derive(Debug, Default, PartialEq, Eq)]
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

/// A snapshot a restore may try, and the store that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreCandidate {
    pub store: String,
    pub candidate: Candidate,
    /// What the listing claims (remote only): a download must match it.
    pub claimed: Option<Claimed>,
}

/// A remote object's claims, which the fetched file must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub size: u64,
    pub sha256: String,
    /// The cluster it was taken from, if recorded at upload.
    pub cluster_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    #[error(
        "snapshot `{name}` is not a valid snapshot in any restore source ({sources}): check the name with `snapward list`"
    )]
    NotFound { name: String, sources: String },
}

/// Every valid snapshot in the restore sources, in the order a restore
/// tries them: newest first by the one rule (raft index, term, then time);
/// among equals, the policy's source order. Stores not in `sources` are
/// ignored. `only`: `snapward restore --snapshot NAME`.
pub fn restore_candidates(
    sources: &[StoreId],
    local: &[LocalSnapshot],
    remote: &BTreeMap<String, Vec<RemoteSnapshot>>,
    only: Option<&str>,
) -> Result<Vec<RestoreCandidate>, ChoiceError> {
    // A snapshot a human names is a candidate even when the keys did not
    // authenticate its claims: the restore still authenticates its content.
    let named = |name: &str| only == Some(name);
    let mut out: Vec<RestoreCandidate> = local
        .iter()
        .filter(|s| local_valid(s) || (s.identity.is_some() && named(&s.name)))
        .map(|s| RestoreCandidate {
            store: StoreId::LOCAL.into(),
            candidate: local_candidate(s),
            claimed: None,
        })
        .collect();
    for (store, list) in remote {
        out.extend(
            list.iter()
                .filter(|r| remote_valid(r) || (claims_complete(r) && named(&r.name)))
                .map(|r| RestoreCandidate {
                    store: store.clone(),
                    candidate: remote_candidate(r),
                    claimed: Some(Claimed {
                        size: r.size,
                        sha256: r.sha256.clone().unwrap_or_default(),
                        cluster_id: r.cluster_id.clone(),
                    }),
                }),
        );
    }
    let order = |store: &str| sources.iter().position(|s| s == store);
    out.retain(|c| order(&c.store).is_some());
    if let Some(name) = only {
        out.retain(|c| c.candidate.id == name);
        if out.is_empty() {
            return Err(ChoiceError::NotFound {
                name: name.to_string(),
                sources: sources
                    .iter()
                    .map(StoreId::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    out.sort_by(|a, b| {
        retention::newer(&b.candidate, &a.candidate).then(order(&a.store).cmp(&order(&b.store)))
    });
    Ok(out)
}

/// The first source (in policy order) holding a valid snapshot.
pub fn newest_source(sources: &[StoreId], holders: &BTreeMap<String, bool>) -> Option<String> {
    sources
        .iter()
        .find(|s| holders.get(s.as_str()).copied().unwrap_or(false))
        .map(ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Identity;
    use rstest::rstest;

    fn t(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn remote(
        name: &str,
        index: Option<u64>,
        term: Option<u64>,
        sha: Option<&str>,
    ) -> RemoteSnapshot {
        RemoteSnapshot {
            name: name.into(),
            size: 10,
            sha256: sha.map(str::to_string),
            index,
            term,
            time: t("2026-11-28T02:00:00Z"),
            cluster_id: None,
            tag: None,
            sums: None,
            trust: crate::backends::Trust::Unchecked,
        }
    }

    fn identity(index: u64, sha: &str) -> Identity {
        Identity {
            index,
            term: 1,
            version: 1,
            state_size: 1,
            file_size: 10,
            sha256: sha.into(),
        }
    }

    fn local(name: &str, time: &str, index: Option<u64>) -> LocalSnapshot {
        LocalSnapshot {
            name: name.into(),
            time: t(time),
            identity: index.map(|i| identity(i, "aa")),
            invalid: index.is_none().then(|| "gzip: bad".to_string()),
            sums: None,
            trust: crate::backends::Trust::Unchecked,
        }
    }

    fn taken(name: &str, time: &str, index: u64, sha: &str) -> TakenSnapshot {
        TakenSnapshot {
            name: name.into(),
            path: name.into(),
            identity: identity(index, sha),
            time: t(time),
        }
    }

    #[rstest]
    #[case::complete(Some(5), Some(1), Some("ab"), true)]
    #[case::no_sha(Some(5), Some(1), None, false)]
    #[case::no_term(Some(5), None, Some("ab"), false)]
    #[case::no_index(None, Some(1), Some("ab"), false)]
    #[case::foreign(None, None, None, false)]
    fn a_remote_snapshot_is_valid_only_with_full_identity(
        #[case] index: Option<u64>,
        #[case] term: Option<u64>,
        #[case] sha: Option<&str>,
        #[case] valid: bool,
    ) {
        let r = remote("openbao-20261128-020000.snap", index, term, sha);
        assert_eq!(remote_valid(&r), valid);
        assert_eq!(remote_candidate(&r).valid, valid);
    }

    #[test]
    fn a_foreign_object_is_never_valid_and_never_fills_a_slot() {
        let mut forged = remote(
            "openbao-20991231-000000.snap",
            Some(u64::MAX),
            Some(9),
            Some("99"),
        );
        forged.trust = crate::backends::Trust::Foreign("no snapward tag".into());
        assert!(!remote_valid(&forged));
        assert!(!remote_candidate(&forged).valid);
        // It would age the local snapshot out if it counted (`aged_out`).
        let plan = mirror_plan(
            &keep_last(1),
            &[forged.clone()],
            &[taken("a-1", "2026-11-28T02:00:00Z", 1, "aa")],
        );
        assert_eq!(
            plan.upload
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["a-1"]
        );
        // Not a restore candidate either, unless a human names it.
        let rem = BTreeMap::from([("s3".to_string(), vec![forged.clone()])]);
        let sources = [StoreId::from_name("s3")];
        assert!(
            restore_candidates(&sources, &[], &rem, None)
                .unwrap()
                .is_empty()
        );
        let named = restore_candidates(&sources, &[], &rem, Some(&forged.name)).unwrap();
        assert_eq!(named.len(), 1);
    }

    fn keep_last(n: u32) -> Rules {
        Rules {
            keep_last: Some(n),
            ..Rules::default()
        }
    }

    #[rstest]
    // Nothing remote: the newest `keepLast` are uploaded, newest first.
    #[case::empty_target(2, vec![], vec![("a-1", 1), ("a-2", 2), ("a-3", 3)], vec!["a-3", "a-2"], vec!["a-1"], vec![])]
    // Already there with the same content: nothing to do.
    #[case::already_there(5, vec![("a-2", Some("aa"))], vec![("a-2", 2)], vec![], vec![], vec![])]
    // Same name, other content: a conflict, never overwritten.
    #[case::conflict(5, vec![("a-2", Some("ff"))], vec![("a-2", 2)], vec![], vec![], vec!["a-2"])]
    // A newer remote history leaves no slot for an old local one.
    #[case::aged_out(1, vec![("a-9", Some("99"))], vec![("a-1", 1)], vec![], vec!["a-1"], vec![])]
    fn mirror_uploads_what_the_target_would_keep(
        #[case] keep: u32,
        #[case] remote_list: Vec<(&str, Option<&str>)>,
        #[case] locals: Vec<(&str, u64)>,
        #[case] upload: Vec<&str>,
        #[case] not_uploaded: Vec<&str>,
        #[case] conflicts: Vec<&str>,
    ) {
        let rem: Vec<RemoteSnapshot> = remote_list
            .iter()
            .map(|(n, sha)| {
                let index = n.trim_start_matches("a-").parse().unwrap();
                RemoteSnapshot {
                    time: t(&format!("2026-11-{:02}T00:00:00Z", index)),
                    ..remote(n, Some(index), Some(1), *sha)
                }
            })
            .collect();
        let loc: Vec<TakenSnapshot> = locals
            .iter()
            .map(|(n, i)| taken(n, &format!("2026-11-{:02}T00:00:00Z", i), *i, "aa"))
            .collect();
        let plan = mirror_plan(&keep_last(keep), &rem, &loc);
        let names: Vec<&str> = plan.upload.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, upload);
        assert_eq!(plan.not_uploaded, not_uploaded);
        assert_eq!(plan.conflicts, conflicts);
    }

    #[rstest]
    // Highest raft index first, whatever the store order.
    #[case::newest_first(&["local", "s3"], None, Ok(vec!["s3/b", "local/a"]))]
    // Stores outside restore.sources are never tried.
    #[case::sources_only(&["local"], None, Ok(vec!["local/a"]))]
    // `--snapshot NAME` restricts to that one.
    #[case::only(&["local", "s3"], Some("a"), Ok(vec!["local/a"]))]
    #[case::only_missing(&["local", "s3"], Some("zz"), Err(()))]
    fn restore_tries_the_newest_valid_snapshot_first(
        #[case] sources: &[&str],
        #[case] only: Option<&str>,
        #[case] want: Result<Vec<&str>, ()>,
    ) {
        let sources: Vec<StoreId> = sources.iter().map(|s| StoreId::from_name(s)).collect();
        let loc = vec![
            local("a", "2026-11-28T02:00:00Z", Some(5)),
            local("broken", "2026-11-29T02:00:00Z", None),
        ];
        let rem: BTreeMap<String, Vec<RemoteSnapshot>> = [(
            "s3".to_string(),
            vec![
                remote("b", Some(9), Some(1), Some("bb")),
                remote("foreign", None, None, None),
            ],
        )]
        .into();
        let got = restore_candidates(&sources, &loc, &rem, only)
            .map(|v| {
                v.into_iter()
                    .map(|c| format!("{}/{}", c.store, c.candidate.id))
                    .collect::<Vec<_>>()
            })
            .map_err(|_| ());
        let want = want.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
        assert_eq!(got, want);
    }

    #[test]
    fn equal_snapshots_follow_the_source_order() {
        let loc = vec![local("a", "2026-11-28T02:00:00Z", Some(5))];
        let mut r = remote("a", Some(5), Some(1), Some("aa"));
        r.time = t("2026-11-28T02:00:00Z");
        let rem: BTreeMap<String, Vec<RemoteSnapshot>> = [("s3".to_string(), vec![r])].into();
        for (sources, first) in [(["local", "s3"], "local"), (["s3", "local"], "s3")] {
            let s: Vec<StoreId> = sources.iter().map(|s| StoreId::from_name(s)).collect();
            let got = restore_candidates(&s, &loc, &rem, None).unwrap();
            assert_eq!(got[0].store, first);
        }
    }
}
