//! Retention: which snapshots a store keeps, in restic's `forget` vocabulary.
//!
//! Stage: decision logic used by `plan` (what `prune` would delete), `list`
//! and the executor's `prune` nodes.
//!
//! **Pure**: no I/O, no clock. Nothing here reads "now" — every time window
//! counts back from the newest *valid* snapshot, so a stalled backup never
//! ages its own history away (README "Retention", invariant 3). Never panics, whatever
//! the input.
//!
//! # Semantics
//!
//! * Candidates are ordered by the one "newest" rule ([`newer`]): higher raft
//!   `(index, term)` wins, then the later time, then the greater id (only so
//!   the order is total and the output deterministic).
//! * Only valid candidates take part. Invalid ones get [`Verdict::Ignore`]
//!   with the reason `"invalid: not counted"`: they never fill a slot of any
//!   rule, never count as the newest, and are never kept or deleted by
//!   retention (removing broken files is the caller's decision).
//! * `keep_last = n` keeps the `n` newest valid snapshots.
//! * `keep_hourly/daily/weekly/monthly/yearly = n`: walking newest → oldest,
//!   the first snapshot met in each bucket not seen before is kept, until `n`
//!   buckets have been kept. Buckets are UTC: hour (`YYYY-MM-DD HHh`), day,
//!   ISO week (ISO week-year and week, `YYYY-Www`), month, year. A bucket is
//!   "seen" once, even if the raft order revisits it out of time order.
//! * `keep_within = d` keeps every valid snapshot whose time is at or after
//!   `newest_valid.time - d` (inclusive). A zero or negative `d` keeps
//!   nothing.
//! * The newest valid snapshot is always kept (reason
//!   `"newest valid snapshot"`), even when the rules keep nothing.
//! * A valid snapshot no rule keeps is [`Verdict::Delete`] with the reason
//!   `"not kept by any rule"`.
//!
//! Unlike restic, empty rules do **not** mean "keep everything": they keep
//! only the newest valid snapshot. Callers must check [`Rules::keeps_nothing`]
//! (policy validation is expected to reject such a retention). Also unlike
//! recent restic versions, a bucket rule with slots left over does not
//! additionally keep the oldest snapshot.
//!
//! # Durations
//!
//! [`parse_duration`] reads restic-style durations (`14d`, `36h`, `2y5m7d3h`)
//! plus `w` for weeks, using fixed calendar approximations: `y` = 365 days,
//! `m` = **months** = 30 days, `w` = 7 days, `d` = 24 hours, `h` = 1 hour.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// Reason given to invalid candidates.
pub const REASON_INVALID: &str = "invalid: not counted";
/// Reason given to the newest valid candidate.
pub const REASON_NEWEST: &str = "newest valid snapshot";
/// Reason given to a valid candidate that no rule keeps.
pub const REASON_NOT_KEPT: &str = "not kept by any rule";

/// Retention rules of one store, in restic's vocabulary.
///
/// Serialised in camelCase (`keepLast`, …, `keepWithin`), with `keepWithin`
/// as a duration string (see [`parse_duration`] / [`format_duration`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Counted back from the newest valid snapshot's time, never from now.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "within_serde"
    )]
    pub keep_within: Option<SignedDuration>,
}

impl Rules {
    /// True when no rule can keep anything: every count is unset or zero and
    /// `keep_within` is unset, zero or negative. [`apply`] then keeps only
    /// the newest valid snapshot.
    pub fn keeps_nothing(&self) -> bool {
        let counts = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        counts.iter().all(|c| c.unwrap_or(0) == 0)
            && !self.keep_within.is_some_and(|d| d.is_positive())
    }
}

/// One snapshot as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub time: Timestamp,
    /// Raft index from the snapshot's `meta.json`.
    pub index: u64,
    /// Raft term from the snapshot's `meta.json`.
    pub term: u64,
    /// Passed verification. Invalid candidates are never counted.
    pub valid: bool,
}

/// What retention does with one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Keep,
    Delete,
    /// Invalid: not retention's to keep or delete.
    Ignore,
}

/// The verdict on one candidate and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub id: String,
    pub verdict: Verdict,
    /// Every rule that kept it (restic-like wording), or the one reason it
    /// was deleted or ignored.
    pub reasons: Vec<String>,
}

/// The one "newest" rule: `Greater` means `a` is newer than `b`.
///
/// Higher raft `(index, term)` wins, then the later time, then the greater id
/// (a tie-break for determinism only). Validity plays no part here.
pub fn newer(a: &Candidate, b: &Candidate) -> Ordering {
    use crate::snapshot::newest_key;
    newest_key(a.index, a.term, a.time)
        .cmp(&newest_key(b.index, b.term, b.time))
        .then_with(|| a.id.cmp(&b.id))
}

/// [`newer`], made total over whole candidates so that sorting is independent
/// of input order even for duplicates: a valid copy sorts as newer.
fn sort_newer(a: &Candidate, b: &Candidate) -> Ordering {
    newer(a, b).then(a.valid.cmp(&b.valid))
}

/// A bucket rule: how many buckets to keep and which buckets were kept.
struct Bucketer {
    name: &'static str,
    limit: u32,
    kept: u32,
    seen: BTreeSet<String>,
    label: fn(&DateTime) -> String,
}

impl Bucketer {
    fn new(name: &'static str, limit: Option<u32>, label: fn(&DateTime) -> String) -> Self {
        Bucketer {
            name,
            limit: limit.unwrap_or(0),
            kept: 0,
            seen: BTreeSet::new(),
            label,
        }
    }

    /// The reason if this rule keeps a snapshot taken at `dt`.
    fn offer(&mut self, dt: &DateTime) -> Option<String> {
        if self.kept >= self.limit {
            return None;
        }
        let label = (self.label)(dt);
        if self.seen.contains(&label) {
            return None;
        }
        self.kept += 1;
        let reason = format!("{} {label}", self.name);
        self.seen.insert(label);
        Some(reason)
    }
}

fn hour_label(dt: &DateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}h",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour()
    )
}

fn day_label(dt: &DateTime) -> String {
    format!("{:04}-{:02}-{:02}", dt.year(), dt.month(), dt.day())
}

fn week_label(dt: &DateTime) -> String {
    let w = dt.date().iso_week_date();
    format!("{:04}-W{:02}", w.year(), w.week())
}

fn month_label(dt: &DateTime) -> String {
    format!("{:04}-{:02}", dt.year(), dt.month())
}

fn year_label(dt: &DateTime) -> String {
    format!("{:04}", dt.year())
}

/// Decides every candidate. Decisions come in newest-first order (by
/// [`newer`]), one per candidate. See the module docs for the semantics.
pub fn apply(rules: &Rules, candidates: &[Candidate]) -> Vec<Decision> {
    let mut order: Vec<&Candidate> = candidates.iter().collect();
    order.sort_by(|a, b| sort_newer(b, a));

    let newest = order.iter().position(|c| c.valid);
    let within = match (rules.keep_within, newest.and_then(|i| order.get(i))) {
        (Some(d), Some(n)) if d.is_positive() => {
            // A window reaching past the representable past keeps everything.
            let cutoff = n.time.checked_sub(d).unwrap_or(Timestamp::MIN);
            Some((
                cutoff,
                format!("within {} of newest ({})", format_duration(d), n.time),
            ))
        }
        _ => None,
    };

    let mut last_kept: u32 = 0;
    let last_limit = rules.keep_last.unwrap_or(0);
    let mut buckets = [
        Bucketer::new("hourly", rules.keep_hourly, hour_label),
        Bucketer::new("daily", rules.keep_daily, day_label),
        Bucketer::new("weekly", rules.keep_weekly, week_label),
        Bucketer::new("monthly", rules.keep_monthly, month_label),
        Bucketer::new("yearly", rules.keep_yearly, year_label),
    ];

    order
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if !c.valid {
                return Decision {
                    id: c.id.clone(),
                    verdict: Verdict::Ignore,
                    reasons: vec![REASON_INVALID.to_string()],
                };
            }
            let mut reasons = Vec::new();
            if last_kept < last_limit {
                last_kept += 1;
                reasons.push(format!("last snapshot #{last_kept}"));
            }
            let dt = TimeZone::UTC.to_datetime(c.time);
            reasons.extend(buckets.iter_mut().filter_map(|b| b.offer(&dt)));
            if let Some((cutoff, reason)) = &within
                && c.time >= *cutoff
            {
                reasons.push(reason.clone());
            }
            if newest == Some(i) {
                reasons.push(REASON_NEWEST.to_string());
            }
            if reasons.is_empty() {
                Decision {
                    id: c.id.clone(),
                    verdict: Verdict::Delete,
                    reasons: vec![REASON_NOT_KEPT.to_string()],
                }
            } else {
                Decision {
                    id: c.id.clone(),
                    verdict: Verdict::Keep,
                    reasons,
                }
            }
        })
        .collect()
}

/// Why a duration did not parse. Every message names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration: expected a number and a unit, e.g. 14d or 1y6m")]
    Empty,
    #[error("invalid duration {input:?}: durations cannot be negative")]
    Negative { input: String },
    #[error(
        "invalid duration {input:?}: expected a number, found {found:?} (write e.g. 14d or 1y6m)"
    )]
    ExpectedNumber { input: String, found: String },
    #[error(
        "invalid duration {input:?}: the number {number} has no unit (use y, m (months), w, d or h)"
    )]
    MissingUnit { input: String, number: u64 },
    #[error(
        "invalid duration {input:?}: unknown unit {unit:?} after {number} \
         (use whole numbers with y, m (months), w, d or h)"
    )]
    UnknownUnit {
        input: String,
        number: u64,
        unit: String,
    },
    #[error("invalid duration {input:?}: unit {unit:?} appears more than once")]
    DuplicateUnit { input: String, unit: char },
    #[error("invalid duration {input:?}: too large")]
    Overflow { input: String },
}

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// Seconds per unit: calendar approximations, like restic's units but fixed.
fn unit_secs(unit: &str) -> Option<(char, i64)> {
    match unit {
        "y" => Some(('y', 365 * DAY)),
        "m" => Some(('m', 30 * DAY)),
        "w" => Some(('w', 7 * DAY)),
        "d" => Some(('d', DAY)),
        "h" => Some(('h', HOUR)),
        _ => None,
    }
}

/// Parses a restic-like duration: one or more `<number><unit>` groups, units
/// `y` (365 days), `m` (**months**, 30 days), `w` (7 days), `d` (24 hours) and
/// `h` (hours), each unit at most once, in any order: `14d`, `36h`,
/// `2y5m7d3h`, `2w`. Whole non-negative numbers only; no spaces, no other
/// units. `0d` is accepted (a zero window keeps nothing).
pub fn parse_duration(s: &str) -> Result<SignedDuration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let input = || s.to_string();
    if s.starts_with('-') {
        return Err(DurationError::Negative { input: input() });
    }
    let overflow = || DurationError::Overflow { input: input() };
    let mut rest = s;
    let mut total: i64 = 0;
    let mut used = BTreeSet::new();
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        if digits.is_empty() {
            return Err(DurationError::ExpectedNumber {
                input: input(),
                found: unit.to_string(),
            });
        }
        let number = digits.bytes().try_fold(0u64, |n, b| {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        });
        let number = number.ok_or_else(overflow)?;
        if unit.is_empty() {
            return Err(DurationError::MissingUnit {
                input: input(),
                number,
            });
        }
        let (unit_char, secs) = unit_secs(unit).ok_or_else(|| DurationError::UnknownUnit {
            input: input(),
            number,
            unit: unit.to_string(),
        })?;
        if !used.insert(unit_char) {
            return Err(DurationError::DuplicateUnit {
                input: input(),
                unit: unit_char,
            });
        }
        let part = i64::try_from(number)
            .ok()
            .and_then(|n| n.checked_mul(secs))
            .ok_or_else(overflow)?;
        total = total.checked_add(part).ok_or_else(overflow)?;
        rest = next;
    }
    Ok(SignedDuration::from_secs(total))
}

/// Formats a duration for humans: whole days as `14d`, else whole hours as
/// `36h`, else seconds (`5400s`, `1.5s`). Negative durations get a leading
/// `-`. Every duration [`parse_duration`] returns formats to a string that
/// parses back to it.
pub fn format_duration(d: SignedDuration) -> String {
    let sign = if d.is_negative() { "-" } else { "" };
    let abs = d.unsigned_abs();
    let secs = abs.as_secs();
    let nanos = abs.subsec_nanos();
    let day = DAY.unsigned_abs();
    let hour = HOUR.unsigned_abs();
    if nanos == 0 && secs.is_multiple_of(day) {
        format!("{sign}{}d", secs / day)
    } else if nanos == 0 && secs.is_multiple_of(hour) {
        format!("{sign}{}h", secs / hour)
    } else if nanos == 0 {
        format!("{sign}{secs}s")
    } else {
        let frac = format!("{nanos:09}");
        format!("{sign}{secs}.{}s", frac.trim_end_matches('0'))
    }
}

/// `keepWithin` as a duration string in serde formats.
mod within_serde {
    use jiff::SignedDuration;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<SignedDuration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&super::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SignedDuration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| super::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
