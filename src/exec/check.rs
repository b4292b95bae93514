//! Preconditions, checked in one place: right before a node starts, the
//! executor asks [`check`] about each precondition the plan shows for it.
//! Every precondition is decided here, against the run state; none is
//! waved through to be enforced somewhere else.
//!
//! Stage: execute. Pure: reads the run state and the given clock only.

use crate::cluster::{InitState, SealKind};
use crate::plan::Precondition;
use crate::plan::guard::Branch;

use super::state::RunState;
use crate::snapshot::auth::Authenticity;

/// How far in the future a snapshot's name may lie (clocks of the nodes
/// and of the run differ a little) before its age is not trusted.
const CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// Does `pre` hold now? `None` = holds; `Some(reason)` = does not.
pub fn check(pre: &Precondition, s: &RunState) -> Option<String> {
    check_at(pre, s, jiff::Timestamp::now())
}

/// Preconditions whose failure is a guard's refusal (a human must act),
/// not a reason to retry: the run ends "refused".
pub fn refuses(pre: &Precondition) -> bool {
    matches!(
        pre,
        Precondition::SnapshotFreshEnough | Precondition::SnapshotAuthenticated
    )
}

/// [`check`] with the clock given.
pub fn check_at(pre: &Precondition, s: &RunState, now: jiff::Timestamp) -> Option<String> {
    use Precondition as P;
    let fail = |ok: bool, why: String| if ok { None } else { Some(why) };
    match pre {
        P::BranchChosen { branch } => {
            let Some(d) = &s.decision else {
                return Some("the guard has not decided".into());
            };
            let ok = d.branch == *branch || (*branch == Branch::Backup && d.backup_allowed);
            fail(
                ok,
                format!(
                    "branch `{}` not taken (guard: {})",
                    branch.name(),
                    d.branch.name()
                ),
            )
        }
        P::AllNodesKnown => fail(
            s.nodes.iter().all(|n| n.init != InitState::Unknown) && !s.nodes.is_empty(),
            "a node's state is unknown".into(),
        ),
        P::AllNodesUninitialized => fail(
            s.nodes.iter().all(|n| n.init == InitState::Uninitialized),
            "not every node is uninitialised".into(),
        ),
        P::ActiveNodeUnsealed => fail(s.active_node().is_some(), "no active, unsealed node".into()),
        // An auto-unseal cluster needs no keys to unseal or restore: its
        // seal does both (DESIGN.md §8).
        P::KeysPresent => fail(
            s.seal_kind() == SealKind::Auto || s.keys_present() == Some(true),
            "no unseal keys in the key store".into(),
        ),
        P::KeyStoreEmpty => fail(
            s.keys.is_some_and(|p| !p.any),
            "the key store already holds keys".into(),
        ),
        P::SnapshotVerified => fail(
            s.snapshot.is_some(),
            "no verified snapshot from this run".into(),
        ),
        P::UploadConfirmed { store } => fail(
            s.confirmed.contains_key(store),
            format!("this run's snapshot was not confirmed on `{store}`"),
        ),
        P::CredentialsPresent { target } => s
            .unavailable
            .get(target)
            .map(|why| format!("skipped: credentials absent ({why})")),
        // The prune applies the rule per snapshot; it can only do so with
        // every enabled target's listing in hand.
        P::MirroredElsewhere => fail(
            s.unlisted.is_empty(),
            format!(
                "the listing of {} could not be read, so no local snapshot can be shown to exist on a target",
                s.unlisted.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        ),
        P::InitAllowed => fail(s.init_allowed, "init is not allowed by the policy".into()),
        P::RestoreAuthorized => fail(
            s.restore_authorized,
            "restore mode is not auto and no human asked".into(),
        ),
        P::RestoreSnapshotVerified => fail(
            s.restore_from.is_some(),
            "no snapshot to restore was fetched and verified".into(),
        ),
        P::SnapshotFreshEnough => fresh_enough(s, now),
        P::SnapshotAuthenticated => authenticated(s),
        P::RestoreApplied => fail(s.restore_applied, "the restore was not applied".into()),
    }
}

/// No destructive step on a snapshot the stored keys cannot open (the
/// restore would leave node 0 initialised with a barrier they do not
/// unseal), unless a human passed `--allow-unauthenticated`.
fn authenticated(s: &RunState) -> Option<String> {
    let Some(src) = &s.restore_from else {
        return Some("no snapshot to restore was fetched and verified".into());
    };
    // Auto-unseal: the verified restore endpoint authenticates it under
    // the seal, and refuses a snapshot of another seal key (DESIGN.md §8).
    if src.authenticity == Some(Authenticity::Authentic)
        || s.allow_unauthenticated
        || s.seal_kind() == SealKind::Auto
    {
        return None;
    }
    let why = match (src.authenticity, &src.unchecked) {
        (Some(a), _) => crate::exec::item::authenticity_words(a).to_string(),
        (None, Some(reason)) => format!("not checkable: {reason}"),
        (None, None) => "not checked".to_string(),
    };
    Some(format!(
        "no snapshot in the restore sources is authenticated by the stored keys — the keys and the snapshots do not belong together (the newest valid one, {}/{}, is {why}). Nothing was changed. Check that the key store holds this cluster's current unseal keys (a rekey, another environment, a Secret restored from the wrong backup); `snapward verify --keys DIR FILE` checks a snapshot offline. To restore it anyway, run `snapward restore --allow-unauthenticated`",
        src.store, src.name
    ))
}

/// `guards.maxRestoreAge` holds back an automatic restore only: a human
/// running `snapward restore` has decided.
fn fresh_enough(s: &RunState, now: jiff::Timestamp) -> Option<String> {
    let max = s.max_restore_age?;
    if s.explicit_restore {
        return None;
    }
    let Some(src) = &s.restore_from else {
        return Some("no snapshot to restore was fetched and verified".into());
    };
    let age = now.duration_since(src.time);
    if -age > CLOCK_SKEW {
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
            crate::retention::format_duration(max)
        ))
    } else {
        None
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::state::RestoreSource;
    use crate::snapshot::Identity;
    use rstest::rstest;

    fn state_with(
        age_days: i64,
        max_days: Option<i64>,
        explicit: bool,
    ) -> (RunState, jiff::Timestamp) {
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let time = now - jiff::SignedDuration::from_hours(24 * age_days);
        let s = RunState {
            max_restore_age: max_days.map(|d| jiff::SignedDuration::from_hours(24 * d)),
            explicit_restore: explicit,
            restore_from: Some(RestoreSource {
                store: "local".into(),
                name: "openbao-x.snap".into(),
                path: "x".into(),
                identity: Identity {
                    index: 1,
                    term: 1,
                    version: 1,
                    state_size: 1,
                    file_size: 1,
                    sha256: String::new(),
                },
                time,
                temp: false,
                authenticity: Some(Authenticity::Authentic),
                unchecked: None,
            }),
            ..RunState::default()
        };
        (s, now)
    }

    #[rstest]
    #[case::no_limit(400, None, false, None)]
    #[case::young(3, Some(7), false, None)]
    #[case::old(30, Some(7), false, Some("more than guards.maxRestoreAge"))]
    #[case::old_but_a_human_asked(30, Some(7), true, None)]
    #[case::future(-400, Some(7), false, Some("a clock is wrong"))]
    fn snapshot_fresh_enough_is_checked_by_the_executor(
        #[case] age_days: i64,
        #[case] max_days: Option<i64>,
        #[case] explicit: bool,
        #[case] refusal: Option<&str>,
    ) {
        let (s, now) = state_with(age_days, max_days, explicit);
        let got = check_at(&Precondition::SnapshotFreshEnough, &s, now);
        match refusal {
            None => assert_eq!(got, None),
            Some(text) => assert!(got.as_deref().unwrap_or("").contains(text), "{got:?}"),
        }
    }

    #[test]
    fn credentials_present_fails_for_an_unavailable_target() {
        let mut s = RunState::default();
        let pre = Precondition::CredentialsPresent {
            target: "r2".into(),
        };
        assert_eq!(check(&pre, &s), None);
        s.unavailable.insert("r2".into(), "no such file".into());
        assert_eq!(
            check(&pre, &s).as_deref(),
            Some("skipped: credentials absent (no such file)")
        );
    }

    #[test]
    fn mirrored_elsewhere_needs_every_enabled_targets_listing() {
        let mut s = RunState::default();
        assert_eq!(check(&Precondition::MirroredElsewhere, &s), None);
        s.unlisted.insert("r2".into());
        assert!(
            check(&Precondition::MirroredElsewhere, &s)
                .is_some_and(|why| why.contains("the listing of r2 could not be read"))
        );
    }

    #[rstest]
    #[case::authentic(Some(Authenticity::Authentic), false, None)]
    #[case::other_keys(Some(Authenticity::OtherKeys), false, Some("sealed with other keys"))]
    #[case::tampered(Some(Authenticity::SumsMismatch), false, Some("tampered"))]
    #[case::unchecked(None, false, Some("do not belong together"))]
    #[case::a_human_accepts(Some(Authenticity::OtherKeys), true, None)]
    fn snapshot_authenticated_refuses_what_the_keys_do_not_open(
        #[case] authenticity: Option<Authenticity>,
        #[case] allow: bool,
        #[case] refusal: Option<&str>,
    ) {
        let (mut s, _) = state_with(1, None, false);
        if let Some(src) = s.restore_from.as_mut() {
            src.authenticity = authenticity;
        }
        s.allow_unauthenticated = allow;
        let got = check(&Precondition::SnapshotAuthenticated, &s);
        match refusal {
            None => assert_eq!(got, None),
            Some(text) => assert!(got.as_deref().unwrap_or("").contains(text), "{got:?}"),
        }
    }

    #[test]
    fn only_the_age_and_authenticity_rules_refuse() {
        assert!(refuses(&Precondition::SnapshotAuthenticated));
        assert!(refuses(&Precondition::SnapshotFreshEnough));
        assert!(!refuses(&Precondition::KeysPresent));
    }
}
