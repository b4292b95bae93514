//! The parsers validation uses, each with a small typed error whose
//! `Display` is the text the diagnostic shows.
//!
//! Stage: validate. Pure.

use std::time::Duration;

/// A timeout that is not a positive duration (`5s`, `2m`, `1h30m`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("bad duration {text:?}")]
pub struct TimeoutError {
    /// As written.
    pub text: String,
    /// Why humantime refused it; `None`: it parsed, but is zero.
    #[source]
    pub cause: Option<humantime::DurationError>,
}

/// A positive duration such as `5s`, `2m` or `1h30m` (surrounding blanks
/// ignored). Zero is an error: a zero timeout would fail every request.
pub fn parse_timeout(s: &str) -> Result<Duration, TimeoutError> {
    match humantime::parse_duration(s.trim()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(TimeoutError {
            text: s.to_owned(),
            cause: None,
        }),
        Err(e) => Err(TimeoutError {
            text: s.to_owned(),
            cause: Some(e),
        }),
    }
}

/// A URL that is not an http(s) URL with a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{text:?} is not a URL: {source}")]
    NotAUrl {
        text: String,
        #[source]
        source: url::ParseError,
    },
    #[error("{text:?} must use http:// or https://")]
    Scheme { text: String },
    #[error("{text:?} has no host")]
    NoHost { text: String },
}

/// Parse an http(s) URL with a host.
pub fn check_url(s: &str) -> Result<url::Url, UrlError> {
    let u = url::Url::parse(s).map_err(|source| UrlError::NotAUrl {
        text: s.to_owned(),
        source,
    })?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(UrlError::Scheme { text: s.to_owned() });
    }
    if u.host_str().is_none() {
        return Err(UrlError::NoHost { text: s.to_owned() });
    }
    Ok(u)
}

/// Does the URL carry `user:password@`? (Never echo them.)
pub fn has_credentials(u: &url::Url) -> bool {
    !u.username().is_empty() || u.password().is_some()
}

pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// A cron schedule whose interval cannot be told.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    Cron(#[from] croner::errors::CronError),
    #[error("internal: bad reference time")]
    ReferenceTime,
    #[error("{expr:?} never runs")]
    Never { expr: String },
}

/// Longest gap between consecutive runs over the next 400 occurrences
/// after a fixed reference time (deterministic: never reads the clock).
pub fn schedule_interval(expr: &str) -> Result<Duration, ScheduleError> {
    let cron: croner::Cron = expr.parse()?;
    let start = chrono::DateTime::from_timestamp(1_767_225_600, 0) // 2026-01-01T00:00:00Z
        .ok_or(ScheduleError::ReferenceTime)?;
    let times: Vec<_> = cron.iter_after(start).take(400).collect();
    times
        .windows(2)
        .filter_map(|w| match w {
            [a, b] => (*b - *a).to_std().ok(),
            _ => None,
        })
        .max()
        .ok_or_else(|| ScheduleError::Never {
            expr: expr.to_owned(),
        })
}

/// An octal file mode that is not one (the schema's pattern keeps it from
/// happening: `^0?[0-7]{3,4}$`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an octal file mode")]
pub struct FileModeError {
    pub text: String,
    #[source]
    pub source: std::num::ParseIntError,
}

/// `"0640"`, `"640"`, `"0000"` → the mode bits.
pub fn file_mode(s: &str) -> Result<u32, FileModeError> {
    let digits = s.trim_start_matches('0');
    u32::from_str_radix(if digits.is_empty() { "0" } else { digits }, 8).map_err(|source| {
        FileModeError {
            text: s.to_owned(),
            source,
        }
    })
}

/// The option closest to `word`, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, options: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    options
        .map(|o| (strsim_distance(word, o), o))
        .filter(|(d, o)| *d <= (o.len() / 3).max(2))
        .min()
        .map(|(_, o)| o)
}

/// Levenshtein distance, case-insensitive (field names are short).
fn strsim_distance(a: &str, b: &str) -> usize {
    strsim::levenshtein(&a.to_lowercase(), &b.to_lowercase())
}
