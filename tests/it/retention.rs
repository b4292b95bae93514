//! Retention engine: restic-style case tables over a fixed two-year history,
//! the safety cases of invariant 3 (README \"Guarantees\"), property tests, and the duration
//! parser. Expected kept sets are worked out by hand in the comments.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use rstest::rstest;
use snapward::retention::{
    Candidate, Decision, DurationError, Rules, Verdict, apply, format_duration, newer,
    parse_duration,
};

/// The fixed history: `s01` (oldest) … `s30` (newest), raft index = number,
/// term 1. Weekdays and ISO weeks are noted because the weekly cases rely on
/// them. Sparse in 2025, dense in November 2026 (several per day, two in one
/// hour), with a month boundary (s16/s17) and an ISO-year boundary
/// (s10 is calendar 2025 but ISO week 2026-W01, like s11).
const HISTORY: [&str; 30] = [
    "2025-01-03T08:00:00Z", // s01 Fri 2025-W01
    "2025-02-14T12:00:00Z", // s02 Fri 2025-W07
    "2025-03-30T23:30:00Z", // s03 Sun 2025-W13
    "2025-05-01T00:15:00Z", // s04 Thu 2025-W18
    "2025-06-15T09:00:00Z", // s05 Sun 2025-W24
    "2025-07-31T18:00:00Z", // s06 Thu 2025-W31
    "2025-09-10T06:00:00Z", // s07 Wed 2025-W37
    "2025-10-20T14:00:00Z", // s08 Mon 2025-W43
    "2025-11-30T22:00:00Z", // s09 Sun 2025-W48
    "2025-12-29T10:00:00Z", // s10 Mon 2026-W01 (year 2025)
    "2026-01-02T10:00:00Z", // s11 Fri 2026-W01
    "2026-03-15T04:00:00Z", // s12 Sun 2026-W11
    "2026-05-20T16:00:00Z", // s13 Wed 2026-W21
    "2026-08-08T08:00:00Z", // s14 Sat 2026-W32
    "2026-10-05T12:00:00Z", // s15 Mon 2026-W41
    "2026-10-31T23:59:00Z", // s16 Sat 2026-W44
    "2026-11-01T00:01:00Z", // s17 Sun 2026-W44
    "2026-11-10T03:00:00Z", // s18 Tue 2026-W46
    "2026-11-15T12:00:00Z", // s19 Sun 2026-W46
    "2026-11-16T01:00:00Z", // s20 Mon 2026-W47
    "2026-11-20T13:05:00Z", // s21 Fri 2026-W47
    "2026-11-20T13:40:00Z", // s22 Fri 2026-W47, same hour as s21
    "2026-11-20T22:00:00Z", // s23 Fri 2026-W47
    "2026-11-22T09:00:00Z", // s24 Sun 2026-W47
    "2026-11-24T02:00:00Z", // s25 Tue 2026-W48
    "2026-11-26T01:00:00Z", // s26 Thu 2026-W48
    "2026-11-26T23:00:00Z", // s27 Thu 2026-W48
    "2026-11-27T00:30:00Z", // s28 Fri 2026-W48
    "2026-11-27T01:00:00Z", // s29 Fri 2026-W48
    "2026-11-27T02:00:00Z", // s30 Fri 2026-W48, newest
];

fn ts(s: &str) -> Timestamp {
    s.parse().expect("test timestamp")
}

fn dur(s: &str) -> SignedDuration {
    parse_duration(s).expect("test duration")
}

fn id(n: u32) -> String {
    format!("s{n:02}")
}

fn cand(id: &str, time: &str, index: u64, term: u64, valid: bool) -> Candidate {
    Candidate {
        id: id.to_string(),
        time: ts(time),
        index,
        term,
        valid,
    }
}

fn history() -> Vec<Candidate> {
    (1u32..)
        .zip(HISTORY)
        .map(|(n, t)| cand(&id(n), t, u64::from(n), 1, true))
        .collect()
}

fn history_with_invalid(invalid: &[u32]) -> Vec<Candidate> {
    let mut h = history();
    for c in &mut h {
        if invalid.iter().any(|n| id(*n) == c.id) {
            c.valid = false;
        }
    }
    h
}

fn ids(ns: impl IntoIterator<Item = u32>) -> BTreeSet<String> {
    ns.into_iter().map(id).collect()
}

fn all_but(excluded: &[u32]) -> Vec<u32> {
    (1..=30).filter(|n| !excluded.contains(n)).collect()
}

fn with(verdict: Verdict, decisions: &[Decision]) -> BTreeSet<String> {
    decisions
        .iter()
        .filter(|d| d.verdict == verdict)
        .map(|d| d.id.clone())
        .collect()
}

fn kept(decisions: &[Decision]) -> BTreeSet<String> {
    with(Verdict::Keep, decisions)
}

fn decision<'a>(decisions: &'a [Decision], id: &str) -> &'a Decision {
    decisions
        .iter()
        .find(|d| d.id == id)
        .expect("a decision for every candidate")
}

/// One line per decision: `s30 keep: reason; reason`.
fn render(decisions: &[Decision]) -> String {
    decisions
        .iter()
        .map(|d| {
            let verdict = match d.verdict {
                Verdict::Keep => "keep",
                Verdict::Delete => "delete",
                Verdict::Ignore => "ignore",
            };
            format!("{} {verdict}: {}\n", d.id, d.reasons.join("; "))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Each rule alone and in combination, over the fixed history.
// ---------------------------------------------------------------------------

#[rstest]
// Rules that keep nothing still keep the newest valid snapshot.
#[case::empty(Rules::default(), vec![30])]
#[case::all_zero(
    Rules {
        keep_last: Some(0), keep_hourly: Some(0), keep_daily: Some(0), keep_weekly: Some(0),
        keep_monthly: Some(0), keep_yearly: Some(0), keep_within: Some(SignedDuration::ZERO),
    },
    vec![30]
)]
#[case::last_1(Rules { keep_last: Some(1), ..Rules::default() }, vec![30])]
#[case::last_3(Rules { keep_last: Some(3), ..Rules::default() }, vec![30, 29, 28])]
#[case::last_100(Rules { keep_last: Some(100), ..Rules::default() }, (1..=30).collect())]
#[case::hourly_1(Rules { keep_hourly: Some(1), ..Rules::default() }, vec![30])]
// 27 02h, 27 01h, 27 00h, 26 23h, 26 01h, 24 02h, 22 09h, 20 22h, 20 13h (s22; s21 is
// the same hour), 16 01h.
#[case::hourly_10(
    Rules { keep_hourly: Some(10), ..Rules::default() },
    vec![30, 29, 28, 27, 26, 25, 24, 23, 22, 20]
)]
// Every hour once: only s21 shares an hour (with the newer s22).
#[case::hourly_100(Rules { keep_hourly: Some(100), ..Rules::default() }, all_but(&[21]))]
// Days 27 (s30), 26 (s27), 24 (s25), 22 (s24), 20 (s23), 16 (s20), 15 (s19).
#[case::daily_7(Rules { keep_daily: Some(7), ..Rules::default() }, vec![30, 27, 25, 24, 23, 20, 19])]
// The newest of every day: s29/s28 lose to s30, s26 to s27, s22/s21 to s23.
#[case::daily_100(Rules { keep_daily: Some(100), ..Rules::default() }, all_but(&[29, 28, 26, 22, 21]))]
// W48 (s30), W47 (s24), W46 (s19), W44 (s17; s16 is the same week across the month end).
#[case::weekly_4(Rules { keep_weekly: Some(4), ..Rules::default() }, vec![30, 24, 19, 17])]
// All 18 weeks; s10 (2025-12-29) is in 2026-W01 with the newer s11, so it goes.
#[case::weekly_20(
    Rules { keep_weekly: Some(20), ..Rules::default() },
    vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 17, 19, 24, 30]
)]
// 2026-11 (s30; s17 at 00:01 on the 1st is the same month), 2026-10 (s16 at
// 23:59 on the 31st), 2026-08, 2026-05, 2026-03, 2026-01.
#[case::monthly_6(Rules { keep_monthly: Some(6), ..Rules::default() }, vec![30, 16, 14, 13, 12, 11])]
// 2026 (s30), 2025 (s10: the year is the calendar year, not the ISO week-year).
#[case::yearly_2(Rules { keep_yearly: Some(2), ..Rules::default() }, vec![30, 10])]
// Only two years exist: a larger count keeps no more.
#[case::yearly_5(Rules { keep_yearly: Some(5), ..Rules::default() }, vec![30, 10])]
// Cut-off 2026-10-28T02:00: s16 (10-31) onwards.
#[case::within_30d(Rules { keep_within: Some(dur("30d")), ..Rules::default() }, (16..=30).collect())]
// Cut-off 2026-11-24T02:00 is exactly s25's time: the bound is inclusive.
#[case::within_3d_inclusive(Rules { keep_within: Some(dur("3d")), ..Rules::default() }, (25..=30).collect())]
// Cut-off 01:00 is exactly s29's time.
#[case::within_1h(Rules { keep_within: Some(dur("1h")), ..Rules::default() }, vec![29, 30])]
// 365 days before 2026-11-27T02:00 is 2025-11-27T02:00: s09 (2025-11-30) onwards.
#[case::within_1y(Rules { keep_within: Some(dur("1y")), ..Rules::default() }, (9..=30).collect())]
// A negative window keeps nothing (and never reaches into the future).
#[case::within_negative(Rules { keep_within: Some(SignedDuration::from_hours(-24)), ..Rules::default() }, vec![30])]
// daily: 30 27 25 24 23 20 19; weekly: 30 24 19 17;
// monthly: 30 16 14 13 12 11 10 9 8 7 6 5.
#[case::daily7_weekly4_monthly12(
    Rules { keep_daily: Some(7), keep_weekly: Some(4), keep_monthly: Some(12), ..Rules::default() },
    vec![5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 20, 23, 24, 25, 27, 30]
)]
// The classic restic schedule: yearly adds s10, which monthly already keeps.
#[case::daily7_weekly4_monthly12_yearly75(
    Rules {
        keep_daily: Some(7), keep_weekly: Some(4), keep_monthly: Some(12), keep_yearly: Some(75),
        ..Rules::default()
    },
    vec![5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 20, 23, 24, 25, 27, 30]
)]
// last: 30 29; hourly: 30 29 28; daily: 30 27.
#[case::last2_hourly3_daily2(
    Rules { keep_last: Some(2), keep_hourly: Some(3), keep_daily: Some(2), ..Rules::default() },
    vec![30, 29, 28, 27]
)]
// last: 30..26; weekly: 30 24.
#[case::last5_weekly2(
    Rules { keep_last: Some(5), keep_weekly: Some(2), ..Rules::default() },
    vec![30, 29, 28, 27, 26, 24]
)]
// weekly: 30 24; yearly: 30 10.
#[case::weekly2_yearly3(
    Rules { keep_weekly: Some(2), keep_yearly: Some(3), ..Rules::default() },
    vec![30, 24, 10]
)]
// monthly: the newest of all 16 months (s15 loses 2026-10 to s16; s17..s29 lose
// 2026-11 to s30); within 7d (cut-off 2026-11-20T02:00): s21..s30.
#[case::monthly24_within7d(
    Rules { keep_monthly: Some(24), keep_within: Some(dur("7d")), ..Rules::default() },
    (1..=14).chain([16]).chain(21..=30).collect()
)]
fn history_cases(#[case] rules: Rules, #[case] expected: Vec<u32>) {
    let decisions = apply(&rules, &history());
    assert_eq!(
        kept(&decisions),
        ids(expected.iter().copied()),
        "{}",
        render(&decisions)
    );

    // Newest first, one decision each, and everything not kept is a Delete.
    let order: Vec<String> = decisions.iter().map(|d| d.id.clone()).collect();
    assert_eq!(order, (1..=30).rev().map(id).collect::<Vec<_>>());
    for d in &decisions {
        match d.verdict {
            Verdict::Keep => assert!(!d.reasons.is_empty(), "{d:?}"),
            Verdict::Delete => assert_eq!(d.reasons, ["not kept by any rule"]),
            Verdict::Ignore => panic!("all of the history is valid: {d:?}"),
        }
    }
    assert!(
        decision(&decisions, "s30")
            .reasons
            .contains(&"newest valid snapshot".to_string())
    );

    // The input order does not matter.
    let mut reversed = history();
    reversed.reverse();
    assert_eq!(apply(&rules, &reversed), decisions);
    let mut rotated = history();
    rotated.rotate_left(11);
    assert_eq!(apply(&rules, &rotated), decisions);
}

/// Every rule at once: the full decision list, reasons included, worked out
/// by hand like restic's golden files.
#[test]
fn every_rule_golden() {
    let rules = Rules {
        keep_last: Some(2),
        keep_hourly: Some(3),
        keep_daily: Some(4),
        keep_weekly: Some(3),
        keep_monthly: Some(3),
        keep_yearly: Some(2),
        keep_within: Some(dur("2d")),
    };
    let w = "within 2d of newest (2026-11-27T02:00:00Z)";
    let expected = format!(
        "\
s30 keep: last snapshot #1; hourly 2026-11-27 02h; daily 2026-11-27; weekly 2026-W48; monthly 2026-11; yearly 2026; {w}; newest valid snapshot
s29 keep: last snapshot #2; hourly 2026-11-27 01h; {w}
s28 keep: hourly 2026-11-27 00h; {w}
s27 keep: daily 2026-11-26; {w}
s26 keep: {w}
s25 keep: daily 2026-11-24
s24 keep: daily 2026-11-22; weekly 2026-W47
s23 delete: not kept by any rule
s22 delete: not kept by any rule
s21 delete: not kept by any rule
s20 delete: not kept by any rule
s19 keep: weekly 2026-W46
s18 delete: not kept by any rule
s17 delete: not kept by any rule
s16 keep: monthly 2026-10
s15 delete: not kept by any rule
s14 keep: monthly 2026-08
s13 delete: not kept by any rule
s12 delete: not kept by any rule
s11 delete: not kept by any rule
s10 keep: yearly 2025
s09 delete: not kept by any rule
s08 delete: not kept by any rule
s07 delete: not kept by any rule
s06 delete: not kept by any rule
s05 delete: not kept by any rule
s04 delete: not kept by any rule
s03 delete: not kept by any rule
s02 delete: not kept by any rule
s01 delete: not kept by any rule
"
    );
    assert_eq!(render(&apply(&rules, &history())), expected);
}

#[test]
fn bucket_reasons_name_their_bucket() {
    let rules = Rules {
        keep_hourly: Some(10),
        keep_weekly: Some(20),
        ..Rules::default()
    };
    let decisions = apply(&rules, &history());
    // s22 holds the 13h bucket of 2026-11-20; s21 (same hour) does not.
    assert_eq!(
        decision(&decisions, "s22").reasons,
        ["hourly 2026-11-20 13h"]
    );
    assert_eq!(decision(&decisions, "s21").verdict, Verdict::Delete);
    // The ISO week-year, not the calendar year.
    assert_eq!(decision(&decisions, "s11").reasons, ["weekly 2026-W01"]);
    assert_eq!(decision(&decisions, "s01").reasons, ["weekly 2025-W01"]);
}

#[test]
fn within_reason_names_the_window_and_the_newest() {
    let rules = Rules {
        keep_within: Some(dur("14d")),
        ..Rules::default()
    };
    let decisions = apply(&rules, &history());
    assert_eq!(
        decision(&decisions, "s20").reasons,
        ["within 14d of newest (2026-11-27T02:00:00Z)"]
    );
    assert_eq!(
        decision(&decisions, "s30").reasons,
        [
            "within 14d of newest (2026-11-27T02:00:00Z)",
            "newest valid snapshot"
        ]
    );
}

// ---------------------------------------------------------------------------
// invariant 3 (README \"Guarantees\"): never from "now", never the newest valid.
// ---------------------------------------------------------------------------

/// Daily snapshots 2020-03-01 … 2020-03-20 at noon (years before any real
/// "now"), raft index = day of month.
fn stalled_history() -> Vec<Candidate> {
    (1u32..=20)
        .map(|day| {
            cand(
                &format!("d{day:02}"),
                &format!("2020-03-{day:02}T12:00:00Z"),
                u64::from(day),
                1,
                true,
            )
        })
        .collect()
}

#[test]
fn within_counts_from_the_newest_snapshot_not_from_now() {
    let rules = Rules {
        keep_within: Some(dur("7d")),
        ..Rules::default()
    };
    let decisions = apply(&rules, &stalled_history());
    // Had it counted from now, nothing but the newest would survive. Counted
    // from 2020-03-20T12:00 the cut-off is 2020-03-13T12:00 (inclusive).
    let expected: BTreeSet<String> = (13..=20).map(|d| format!("d{d:02}")).collect();
    assert_eq!(kept(&decisions), expected);
    assert_eq!(
        decision(&decisions, "d13").reasons,
        ["within 7d of newest (2020-03-20T12:00:00Z)"]
    );
}

#[test]
fn decisions_do_not_depend_on_when_the_history_happened() {
    let rules = Rules {
        keep_last: Some(2),
        keep_daily: Some(3),
        keep_within: Some(dur("5d")),
        ..Rules::default()
    };
    let old = apply(&rules, &stalled_history());
    let shifted: Vec<Candidate> = stalled_history()
        .into_iter()
        .map(|mut c| {
            c.time = c
                .time
                .checked_add(SignedDuration::from_hours(24 * 365 * 6))
                .expect("in range");
            c
        })
        .collect();
    let new = apply(&rules, &shifted);
    let verdicts = |ds: &[Decision]| {
        ds.iter()
            .map(|d| (d.id.clone(), d.verdict))
            .collect::<Vec<_>>()
    };
    assert_eq!(verdicts(&old), verdicts(&new));
}

#[test]
fn newest_valid_is_kept_when_rules_are_empty() {
    let decisions = apply(&Rules::default(), &history());
    assert_eq!(kept(&decisions), ids([30]));
    assert_eq!(
        decision(&decisions, "s30").reasons,
        ["newest valid snapshot"]
    );
    assert_eq!(with(Verdict::Delete, &decisions), ids(1..=29));
}

#[test]
fn invalid_snapshots_are_ignored_and_take_no_keep_last_slot() {
    let rules = Rules {
        keep_last: Some(3),
        ..Rules::default()
    };
    let decisions = apply(&rules, &history_with_invalid(&[29, 27]));
    assert_eq!(kept(&decisions), ids([30, 28, 26]));
    assert_eq!(with(Verdict::Ignore, &decisions), ids([29, 27]));
    assert_eq!(
        decision(&decisions, "s29").reasons,
        ["invalid: not counted"]
    );
    assert_eq!(decision(&decisions, "s28").reasons, ["last snapshot #2"]);
    assert_eq!(decision(&decisions, "s26").reasons, ["last snapshot #3"]);
    // Still newest first, invalid ones in their place.
    let order: Vec<String> = decisions.iter().map(|d| d.id.clone()).collect();
    assert_eq!(order, (1..=30).rev().map(id).collect::<Vec<_>>());
}

#[test]
fn invalid_snapshots_take_no_bucket() {
    // s30 would hold day 2026-11-27; invalid, it leaves the day to s29.
    let rules = Rules {
        keep_daily: Some(2),
        ..Rules::default()
    };
    let decisions = apply(&rules, &history_with_invalid(&[30]));
    assert_eq!(kept(&decisions), ids([29, 27]));
    assert_eq!(
        decision(&decisions, "s29").reasons,
        ["daily 2026-11-27", "newest valid snapshot"]
    );
}

#[rstest]
#[case::no_rules(Rules::default(), vec![29])]
// The window counts from s29 (01:00), not the invalid s30 (02:00): the
// cut-off is 00:00, so s28 (00:30) stays.
#[case::within_1h(Rules { keep_within: Some(dur("1h")), ..Rules::default() }, vec![29, 28])]
#[case::last_1(Rules { keep_last: Some(1), ..Rules::default() }, vec![29])]
fn an_invalid_newer_snapshot_is_not_the_newest(#[case] rules: Rules, #[case] expected: Vec<u32>) {
    let decisions = apply(&rules, &history_with_invalid(&[30]));
    assert_eq!(kept(&decisions), ids(expected));
    assert_eq!(decision(&decisions, "s30").verdict, Verdict::Ignore);
    assert!(
        decision(&decisions, "s29")
            .reasons
            .contains(&"newest valid snapshot".to_string())
    );
}

#[test]
fn within_reason_names_the_newest_valid_time() {
    let rules = Rules {
        keep_within: Some(dur("1h")),
        ..Rules::default()
    };
    let decisions = apply(&rules, &history_with_invalid(&[30]));
    assert_eq!(
        decision(&decisions, "s28").reasons,
        ["within 1h of newest (2026-11-27T01:00:00Z)"]
    );
}

#[test]
fn all_invalid_means_nothing_kept_and_nothing_deleted() {
    let all: Vec<u32> = (1..=30).collect();
    let rules = Rules {
        keep_last: Some(5),
        keep_within: Some(dur("1y")),
        ..Rules::default()
    };
    let decisions = apply(&rules, &history_with_invalid(&all));
    assert_eq!(decisions.len(), 30);
    assert!(
        decisions
            .iter()
            .all(|d| d.verdict == Verdict::Ignore && d.reasons == ["invalid: not counted"])
    );
}

#[test]
fn no_candidates_no_decisions() {
    let rules = Rules {
        keep_last: Some(5),
        keep_within: Some(dur("1y")),
        ..Rules::default()
    };
    assert!(apply(&rules, &[]).is_empty());
}

// ---------------------------------------------------------------------------
// The one "newest" rule: (index, term), then time, then id.
// ---------------------------------------------------------------------------

#[rstest]
#[case::index_beats_time_and_term(
    cand("a", "2026-01-01T00:00:00Z", 10, 1, true),
    cand("b", "2026-06-01T00:00:00Z", 9, 7, true)
)]
#[case::term_breaks_an_index_tie(
    cand("a", "2026-01-01T00:00:00Z", 10, 3, true),
    cand("b", "2026-06-01T00:00:00Z", 10, 2, true)
)]
#[case::time_breaks_an_index_and_term_tie(
    cand("a", "2026-01-02T00:00:00Z", 10, 3, true),
    cand("b", "2026-01-01T00:00:00Z", 10, 3, true)
)]
#[case::id_breaks_a_full_tie(
    cand("b", "2026-01-01T00:00:00Z", 10, 3, true),
    cand("a", "2026-01-01T00:00:00Z", 10, 3, true)
)]
fn newer_orders_by_raft_identity_first(#[case] newest: Candidate, #[case] older: Candidate) {
    assert_eq!(newer(&newest, &older), std::cmp::Ordering::Greater);
    assert_eq!(newer(&older, &newest), std::cmp::Ordering::Less);
    assert_eq!(newer(&newest, &newest), std::cmp::Ordering::Equal);

    let rules = Rules {
        keep_last: Some(1),
        ..Rules::default()
    };
    for input in [
        vec![newest.clone(), older.clone()],
        vec![older.clone(), newest.clone()],
    ] {
        let decisions = apply(&rules, &input);
        assert_eq!(decisions[0].id, newest.id);
        assert_eq!(
            decisions[0].reasons,
            ["last snapshot #1", "newest valid snapshot"]
        );
        assert_eq!(decisions[1].verdict, Verdict::Delete);
    }
}

#[test]
fn raft_order_decides_buckets_and_the_window() {
    // a has the highest raft index but the oldest time of its day; b is later
    // in time with a lower index.
    let cands = [
        cand("a", "2026-01-10T01:00:00Z", 10, 1, true),
        cand("b", "2026-01-10T20:00:00Z", 9, 1, true),
        cand("c", "2026-01-09T12:00:00Z", 8, 1, true),
        cand("d", "2026-01-02T12:00:00Z", 7, 1, true),
    ];
    // The day 2026-01-10 goes to a, the raft-newest of that day.
    let daily = apply(
        &Rules {
            keep_daily: Some(2),
            ..Rules::default()
        },
        &cands,
    );
    assert_eq!(kept(&daily), ["a", "c"].map(String::from).into());
    // The window counts back from a's time (the newest), cut-off 2026-01-09T01:00.
    let within = apply(
        &Rules {
            keep_within: Some(dur("1d")),
            ..Rules::default()
        },
        &cands,
    );
    assert_eq!(kept(&within), ["a", "b", "c"].map(String::from).into());
    assert_eq!(
        decision(&within, "b").reasons,
        ["within 1d of newest (2026-01-10T01:00:00Z)"]
    );
}

// ---------------------------------------------------------------------------
// Rules helpers and serde.
// ---------------------------------------------------------------------------

#[rstest]
#[case::default(Rules::default(), true)]
#[case::zero_counts(Rules { keep_last: Some(0), keep_yearly: Some(0), ..Rules::default() }, true)]
#[case::zero_window(Rules { keep_within: Some(SignedDuration::ZERO), ..Rules::default() }, true)]
#[case::negative_window(Rules { keep_within: Some(SignedDuration::from_hours(-1)), ..Rules::default() }, true)]
#[case::last_1(Rules { keep_last: Some(1), ..Rules::default() }, false)]
#[case::yearly_1(Rules { keep_yearly: Some(1), ..Rules::default() }, false)]
#[case::within_1h(Rules { keep_within: Some(dur("1h")), ..Rules::default() }, false)]
fn keeps_nothing(#[case] rules: Rules, #[case] expected: bool) {
    assert_eq!(rules.keeps_nothing(), expected);
}

#[test]
fn rules_serde_uses_restic_names_and_duration_strings() {
    let rules = Rules {
        keep_last: Some(3),
        keep_within: Some(dur("14d")),
        ..Rules::default()
    };
    let json = serde_json::to_string(&rules).expect("serialise");
    assert_eq!(json, r#"{"keepLast":3,"keepWithin":"14d"}"#);
    let back: Rules = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, rules);
    assert_eq!(
        serde_json::from_str::<Rules>("{}").expect("empty"),
        Rules::default()
    );
    let err = serde_json::from_str::<Rules>(r#"{"keepWithin":"14x"}"#).expect_err("bad unit");
    assert!(err.to_string().contains("\"14x\""), "{err}");
}

#[test]
fn decisions_serialise_in_kebab_case() {
    let decisions = apply(&Rules::default(), &history_with_invalid(&[1])[..3]);
    let json = serde_json::to_value(&decisions).expect("serialise");
    assert_eq!(
        json,
        serde_json::json!([
            {"id": "s03", "verdict": "keep", "reasons": ["newest valid snapshot"]},
            {"id": "s02", "verdict": "delete", "reasons": ["not kept by any rule"]},
            {"id": "s01", "verdict": "ignore", "reasons": ["invalid: not counted"]},
        ])
    );
}

// ---------------------------------------------------------------------------
// Durations.
// ---------------------------------------------------------------------------

const H: i64 = 3600;
const D: i64 = 24 * H;

#[rstest]
#[case::days("14d", 14 * D)]
#[case::hours("36h", 36 * H)]
#[case::weeks("2w", 14 * D)]
#[case::months_are_30_days("1m", 30 * D)]
#[case::years_are_365_days("1y", 365 * D)]
#[case::year_and_months("1y6m", 365 * D + 6 * 30 * D)]
#[case::restic_combination("2y5m7d3h", 2 * 365 * D + 5 * 30 * D + 7 * D + 3 * H)]
#[case::any_order("3h1d", D + 3 * H)]
#[case::all_units("1y1m1w1d1h", 365 * D + 30 * D + 7 * D + D + H)]
#[case::leading_zeros("007d", 7 * D)]
#[case::zero("0d", 0)]
fn parse_duration_accepts(#[case] input: &str, #[case] secs: i64) {
    assert_eq!(parse_duration(input), Ok(SignedDuration::from_secs(secs)));
}

#[rstest]
#[case::empty("", DurationError::Empty)]
#[case::negative("-1d", DurationError::Negative { input: "-1d".into() })]
#[case::no_unit("14", DurationError::MissingUnit { input: "14".into(), number: 14 })]
#[case::trailing_number("1d12", DurationError::MissingUnit { input: "1d12".into(), number: 12 })]
#[case::no_number("d", DurationError::ExpectedNumber { input: "d".into(), found: "d".into() })]
#[case::leading_space(" 14d", DurationError::ExpectedNumber { input: " 14d".into(), found: " ".into() })]
#[case::plus_sign("+14d", DurationError::ExpectedNumber { input: "+14d".into(), found: "+".into() })]
#[case::unknown_unit("14x", DurationError::UnknownUnit { input: "14x".into(), number: 14, unit: "x".into() })]
#[case::minutes_are_not_a_unit("5min", DurationError::UnknownUnit { input: "5min".into(), number: 5, unit: "min".into() })]
#[case::seconds_are_not_a_unit("30s", DurationError::UnknownUnit { input: "30s".into(), number: 30, unit: "s".into() })]
#[case::upper_case("14D", DurationError::UnknownUnit { input: "14D".into(), number: 14, unit: "D".into() })]
#[case::inner_space("14 d", DurationError::UnknownUnit { input: "14 d".into(), number: 14, unit: " d".into() })]
#[case::fraction("1.5d", DurationError::UnknownUnit { input: "1.5d".into(), number: 1, unit: ".".into() })]
#[case::repeated_unit("1d2d", DurationError::DuplicateUnit { input: "1d2d".into(), unit: 'd' })]
#[case::number_overflow("99999999999999999999d", DurationError::Overflow { input: "99999999999999999999d".into() })]
#[case::product_overflow("300000000000y", DurationError::Overflow { input: "300000000000y".into() })]
#[case::sum_overflow(
    "292471208677y292471208677h",
    DurationError::Overflow { input: "292471208677y292471208677h".into() }
)]
fn parse_duration_rejects(#[case] input: &str, #[case] expected: DurationError) {
    let err = parse_duration(input).expect_err("must not parse");
    assert_eq!(err, expected);
    let message = err.to_string();
    if input.is_empty() {
        assert!(message.contains("empty"), "{message}");
    } else {
        assert!(
            message.contains(&format!("{input:?}")),
            "message must name the input: {message}"
        );
    }
}

#[rstest]
#[case::days(SignedDuration::from_hours(14 * 24), "14d")]
#[case::hours(SignedDuration::from_hours(36), "36h")]
#[case::year(SignedDuration::from_hours(365 * 24), "365d")]
#[case::zero(SignedDuration::ZERO, "0d")]
#[case::minutes(SignedDuration::from_mins(90), "5400s")]
#[case::fraction(SignedDuration::from_millis(1500), "1.5s")]
#[case::negative(SignedDuration::from_hours(-48), "-2d")]
#[case::min(SignedDuration::MIN, "-9223372036854775808.999999999s")]
fn format_duration_cases(#[case] d: SignedDuration, #[case] expected: &str) {
    assert_eq!(format_duration(d), expected);
}

// ---------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------

fn arb_time() -> impl Strategy<Value = Timestamp> {
    let base = ts("2026-01-01T00:00:00Z").as_second();
    prop_oneof![
        // Hour-aligned over ~60 days: many shared hours, days and weeks.
        4 => (0i64..60 * 24).prop_map(move |h| base + h * 3600),
        // Anywhere within three years.
        2 => (0i64..3 * 365 * 86400).prop_map(move |s| base + s),
        // The extremes jiff can represent.
        1 => prop_oneof![
            Just(Timestamp::MIN.as_second()),
            Just(Timestamp::MAX.as_second()),
            Timestamp::MIN.as_second()..=Timestamp::MAX.as_second(),
        ],
    ]
    .prop_map(|s| Timestamp::from_second(s).expect("in range"))
}

fn arb_candidates() -> impl Strategy<Value = Vec<Candidate>> {
    prop::collection::vec(
        (arb_time(), 0u64..6, 0u64..3, prop::bool::weighted(0.8)),
        0..40,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (time, index, term, valid))| Candidate {
                id: format!("c{i:02}"),
                time,
                index,
                term,
                valid,
            })
            .collect()
    })
}

fn arb_count() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![Just(None), (0u32..8).prop_map(Some), Just(Some(u32::MAX))]
}

fn arb_rules() -> impl Strategy<Value = Rules> {
    let within = prop_oneof![
        Just(None),
        (-48i64..2000).prop_map(|h| Some(SignedDuration::from_hours(h))),
        any::<i64>().prop_map(|s| Some(SignedDuration::from_secs(s))),
        Just(Some(SignedDuration::MAX)),
    ];
    (
        arb_count(),
        arb_count(),
        arb_count(),
        arb_count(),
        arb_count(),
        arb_count(),
        within,
    )
        .prop_map(
            |(
                keep_last,
                keep_hourly,
                keep_daily,
                keep_weekly,
                keep_monthly,
                keep_yearly,
                keep_within,
            )| Rules {
                keep_last,
                keep_hourly,
                keep_daily,
                keep_weekly,
                keep_monthly,
                keep_yearly,
                keep_within,
            },
        )
}

fn newest_valid(cands: &[Candidate]) -> Option<&Candidate> {
    cands.iter().filter(|c| c.valid).max_by(|a, b| newer(a, b))
}

proptest! {
    #[test]
    fn newest_valid_is_always_kept_and_never_deleted(rules in arb_rules(), cands in arb_candidates()) {
        let decisions = apply(&rules, &cands);
        let marked: Vec<&Decision> =
            decisions.iter().filter(|d| d.reasons.iter().any(|r| r == "newest valid snapshot")).collect();
        match newest_valid(&cands) {
            Some(newest) => {
                prop_assert_eq!(marked.len(), 1);
                prop_assert_eq!(&marked[0].id, &newest.id);
                prop_assert_eq!(marked[0].verdict, Verdict::Keep);
                for d in decisions.iter().filter(|d| d.verdict == Verdict::Delete) {
                    prop_assert_ne!(&d.id, &newest.id);
                }
            }
            None => {
                prop_assert!(marked.is_empty());
                prop_assert!(decisions.iter().all(|d| d.verdict == Verdict::Ignore));
            }
        }
    }

    #[test]
    fn one_decision_per_candidate_newest_first(rules in arb_rules(), cands in arb_candidates()) {
        let decisions = apply(&rules, &cands);
        prop_assert_eq!(decisions.len(), cands.len());
        let want: BTreeSet<&str> = cands.iter().map(|c| c.id.as_str()).collect();
        let got: BTreeSet<&str> = decisions.iter().map(|d| d.id.as_str()).collect();
        prop_assert_eq!(got, want);
        let by_id = |id: &str| cands.iter().find(|c| c.id == id).expect("known id");
        for pair in decisions.windows(2) {
            prop_assert_eq!(newer(by_id(&pair[0].id), by_id(&pair[1].id)), std::cmp::Ordering::Greater);
        }
    }

    #[test]
    fn apply_is_deterministic_and_ignores_input_order(
        rules in arb_rules(),
        (cands, shuffled) in arb_candidates().prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
    ) {
        let decisions = apply(&rules, &cands);
        prop_assert_eq!(&apply(&rules, &cands), &decisions);
        prop_assert_eq!(&apply(&rules, &shuffled), &decisions);
    }

    #[test]
    fn invalid_candidates_are_only_ever_ignored(rules in arb_rules(), cands in arb_candidates()) {
        let decisions = apply(&rules, &cands);
        for c in &cands {
            let d = decision(&decisions, &c.id);
            if c.valid {
                prop_assert_ne!(d.verdict, Verdict::Ignore);
            } else {
                prop_assert_eq!(d.verdict, Verdict::Ignore);
                prop_assert_eq!(&d.reasons, &["invalid: not counted"]);
            }
        }
    }

    #[test]
    fn verdicts_agree_with_reasons_and_rules(rules in arb_rules(), cands in arb_candidates()) {
        let decisions = apply(&rules, &cands);
        let valid = cands.iter().filter(|c| c.valid).count();
        let keeps = decisions.iter().filter(|d| d.verdict == Verdict::Keep).count();
        for d in &decisions {
            match d.verdict {
                Verdict::Keep => prop_assert!(!d.reasons.is_empty()),
                Verdict::Delete => prop_assert_eq!(&d.reasons, &["not kept by any rule"]),
                Verdict::Ignore => {}
            }
        }
        // keepLast n keeps at least n (or all) valid snapshots.
        let last = usize::try_from(rules.keep_last.unwrap_or(0)).unwrap_or(usize::MAX);
        prop_assert!(keeps >= last.min(valid));
        if rules.keeps_nothing() {
            prop_assert_eq!(keeps, valid.min(1));
        }
        // Everything inside the window is kept.
        if let (Some(w), Some(newest)) = (rules.keep_within, newest_valid(&cands))
            && w.is_positive()
        {
            let cutoff = newest.time.checked_sub(w).unwrap_or(Timestamp::MIN);
            for c in cands.iter().filter(|c| c.valid && c.time >= cutoff) {
                prop_assert_eq!(decision(&decisions, &c.id).verdict, Verdict::Keep);
            }
        }
    }

    #[test]
    fn format_then_parse_round_trips_whole_hours(hours in 0i64..=i64::MAX / 3600) {
        let d = SignedDuration::from_hours(hours);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn parse_duration_never_panics(s in "[0-9ymwdhs +.-]{0,24}|\\PC{0,12}") {
        if let Ok(d) = parse_duration(&s) {
            prop_assert!(!d.is_negative());
        }
    }
}
