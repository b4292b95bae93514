//! The stores: `spec.local`, `spec.targets` and their retention.
//!
//! Stage: validate. Pure.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jiff::SignedDuration;

use super::parse::{self, TimeoutError, check_url, has_credentials, is_loopback_host};
use super::{clean_since, gcs, timeout};
use crate::diag::{Code, Finding};
use crate::policy::StoreId;
use crate::policy::model::{self, LocalStore, Retention, Target};
use crate::policy::valid::{LocalSettings, S3Settings, S3Timeouts, TargetKind, ValidTarget};
use crate::retention::{self, Rules};

pub(super) fn local(
    l: &LocalStore,
    interval: Option<Duration>,
    out: &mut Vec<Finding>,
) -> Option<LocalSettings> {
    let file_mode = match parse::file_mode(&l.file_mode) {
        Ok(mode) if mode & 0o7000 != 0 => {
            out.push(
                Finding::error(
                    Code::FileModeSpecialBits,
                    "/spec/local/fileMode",
                    format!("mode {mode:04o} sets the setuid, setgid or sticky bit on snapshot files"),
                )
                .help("snapshots are data, never programs: use the permission bits only, e.g. \"0640\""),
            );
            None
        }
        Ok(mode) => {
            if mode & 0o006 != 0 {
                out.push(
                    Finding::warning(
                        Code::FileModeWorldAccessible,
                        "/spec/local/fileMode",
                        format!("mode {mode:04o} lets every user on the node read or write the snapshots (they hold the whole barrier, encrypted)"),
                    )
                    .help("give access to the group only (the next container's fsGroup): use \"0640\""),
                );
            }
            if mode & 0o040 == 0 && mode & 0o004 == 0 {
                out.push(
                    Finding::warning(
                        Code::FileModeUnreadable,
                        "/spec/local/fileMode",
                        format!("mode {mode:04o} lets only the writing user read the snapshots"),
                    )
                    .help("the next container (another UID, same fsGroup) cannot read them: use \"0640\""),
                );
            }
            Some(mode)
        }
        // The schema's pattern keeps this from happening.
        Err(e) => {
            out.push(
                Finding::error(Code::InvalidValue, "/spec/local/fileMode", e.to_string())
                    .help("write the mode in octal, as a string: fileMode: \"0640\""),
            );
            None
        }
    };
    let rules = retention_rules(
        &l.retention,
        "/spec/local/retention",
        StoreId::LOCAL,
        interval,
        out,
    );
    Some(LocalSettings {
        dir: PathBuf::from(&l.path),
        prefix: l.prefix.clone(),
        file_mode: file_mode?,
        rules: rules?,
    })
}

/// The targets, in order; `None` if any of them has an error.
pub(super) fn targets(
    targets: &[Target],
    local_path: &str,
    interval: Option<Duration>,
    out: &mut Vec<Finding>,
) -> Option<Vec<ValidTarget>> {
    let mut names = BTreeMap::new();
    let mut s3_locations: Vec<(usize, String, String, String)> = Vec::new();
    let mut azure_locations = super::azure::Locations::new();
    let mut gcs_locations: Vec<gcs::Location> = Vec::new();
    let mut paths: BTreeMap<String, String> = BTreeMap::new();
    paths.insert(
        local_path.trim_end_matches('/').to_string(),
        StoreId::LOCAL.into(),
    );
    let mut valid = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let start = out.len();
        let p = format!("/spec/targets/{i}");
        if t.name == StoreId::LOCAL {
            out.push(
                Finding::error(
                    Code::ReservedTargetName,
                    format!("{p}/name"),
                    "`local` is reserved for the local store",
                )
                .help("give the target another name"),
            );
        }
        if let Some(first) = names.insert(t.name.clone(), i) {
            out.push(
                Finding::error(
                    Code::DuplicateTarget,
                    format!("{p}/name"),
                    format!("target name `{}` is already used by target {first}", t.name),
                )
                .help("target names must be unique: reports, metrics and restore sources refer to them"),
            );
        }
        let kinds = [
            t.s3.is_some(),
            t.azure.is_some(),
            t.gcs.is_some(),
            t.filesystem.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            out.push(
                Finding::error(
                    Code::TargetKind,
                    p.clone(),
                    format!(
                        "target `{}` needs exactly one of `s3`, `azure`, `gcs` or `filesystem`",
                        t.name
                    ),
                )
                .help("split it into several targets if you want more than one"),
            );
        }
        let azure_ok = t.azure.as_ref().is_some_and(|az| {
            super::azure::check(
                i,
                &t.name,
                az,
                &format!("{p}/azure"),
                &mut azure_locations,
                out,
            )
        });
        let mut s3_settings = None;
        if let Some(s3) = &t.s3 {
            let sp = format!("{p}/s3");
            let mut endpoint_key = "aws".to_string();
            if let Some(ep) = &s3.endpoint {
                match check_url(ep) {
                    Err(e) => out.push(
                        Finding::error(Code::EndpointNotUrl, format!("{sp}/endpoint"), e.to_string())
                            .help("write the endpoint as a URL, e.g. https://<account>.r2.cloudflarestorage.com"),
                    ),
                    Ok(u) => {
                        if has_credentials(&u) {
                            out.push(
                                Finding::error(
                                    Code::CredentialsInUrl,
                                    format!("{sp}/endpoint"),
                                    "the endpoint holds credentials (`user:password@`): they would end up in logs and reports",
                                )
                                .help("remove them: S3 credentials come from credentials.accessKeyIdFile/secretAccessKeyFile or the standard AWS chain"),
                            );
                        }
                        endpoint_key = format!("{}://{}", u.scheme(), u.authority());
                        if u.scheme() == "http" && !is_loopback_host(u.host_str().unwrap_or("")) {
                            out.push(
                                Finding::warning(
                                    Code::InsecureHttp,
                                    format!("{sp}/endpoint"),
                                    format!("plain http to {}: snapshots and signed requests cross the network unencrypted", u.host_str().unwrap_or("")),
                                )
                                .help("use https://"),
                            );
                        }
                    }
                }
            }
            if !s3.prefix.is_empty() && !s3.prefix.ends_with('/') {
                out.push(
                    Finding::warning(
                        Code::PrefixWithoutSlash,
                        format!("{sp}/prefix"),
                        format!("prefix {:?} does not end with `/`", s3.prefix),
                    )
                    .help(format!("keys become `{}<file name>`; write {:?} so the snapshots sit in their own folder", s3.prefix, format!("{}/", s3.prefix))),
                );
            }
            for (j, ep, bucket, prefix) in &s3_locations {
                let overlap = s3.prefix.starts_with(prefix.as_str())
                    || prefix.starts_with(s3.prefix.as_str());
                if *ep == endpoint_key && *bucket == s3.bucket && overlap {
                    out.push(
                        Finding::error(
                            Code::SameBucketPrefix,
                            format!("{sp}/bucket"),
                            format!("target `{}` shares bucket `{}` and an overlapping prefix with target {j}", t.name, s3.bucket),
                        )
                        .help("each target's retention would delete the other's snapshots: give each its own prefix"),
                    );
                }
            }
            s3_locations.push((i, endpoint_key, s3.bucket.clone(), s3.prefix.clone()));
            s3_settings = s3_timeouts(s3.timeouts.as_ref(), &sp, out).map(|t| settings(s3, t));
        }
        let gcs_settings = t
            .gcs
            .as_ref()
            .and_then(|g| gcs::check(i, &t.name, g, &mut gcs_locations, out));
        if let Some(fs) = &t.filesystem {
            let key = fs.path.trim_end_matches('/').to_string();
            if let Some(other) = paths.insert(key, t.name.clone()) {
                out.push(
                    Finding::error(
                        Code::SamePath,
                        format!("{p}/filesystem/path"),
                        format!("target `{}` uses the same path as `{other}`", t.name),
                    )
                    .help("a copy on the same path is no copy: point it at another mount"),
                );
            }
        }
        let rules = retention_rules(
            &t.retention,
            &format!("{p}/retention"),
            &t.name,
            interval,
            out,
        );
        let kind = match (s3_settings, gcs_settings, &t.azure, &t.filesystem) {
            (Some(s3), None, None, None) if t.gcs.is_none() => Some(TargetKind::S3(Box::new(s3))),
            (None, Some(g), None, None) if t.s3.is_none() => Some(TargetKind::Gcs(Box::new(g))),
            (None, None, Some(az), None) if t.s3.is_none() && t.gcs.is_none() && azure_ok => {
                Some(TargetKind::Azure(Box::new(az.clone())))
            }
            (None, None, None, Some(fs)) if t.s3.is_none() && t.gcs.is_none() => {
                Some(TargetKind::Filesystem(fs.clone()))
            }
            _ => None,
        };
        if let (Some(rules), Some(kind), true) = (rules, kind, clean_since(out, start)) {
            valid.push(ValidTarget {
                name: t.name.clone(),
                optional: t.optional,
                rules,
                kind,
            });
        }
    }
    (valid.len() == targets.len()).then_some(valid)
}

/// `timeouts` of an S3 (or GCS) target, each positive; the defaults when absent.
pub(super) fn s3_timeouts(
    t: Option<&model::S3Timeouts>,
    path: &str,
    out: &mut Vec<Finding>,
) -> Option<S3Timeouts> {
    let t = t.cloned().unwrap_or_default();
    let connect = timeout(&t.connect, &format!("{path}/timeouts/connect"), "10s", out);
    let request = timeout(&t.request, &format!("{path}/timeouts/request"), "10s", out);
    Some(S3Timeouts {
        connect: connect?,
        request: request?,
    })
}

fn settings(s3: &model::S3Target, timeouts: S3Timeouts) -> S3Settings {
    S3Settings {
        endpoint: s3.endpoint.clone(),
        region: s3.region.clone(),
        bucket: s3.bucket.clone(),
        prefix: s3.prefix.clone(),
        path_style: s3.path_style,
        credentials: s3.credentials.clone(),
        server_side_encryption: s3.server_side_encryption.clone(),
        object_lock: s3.object_lock.clone(),
        timeouts,
        stream: s3.stream,
    }
}

/// One S3 target's settings on its own, timeouts parsed (defaults when
/// absent) — for code that builds a target without a whole policy (tests,
/// tools). Checks nothing else: the endpoint, prefix and bucket rules need
/// the whole policy (`validate`).
impl TryFrom<&model::S3Target> for S3Settings {
    type Error = TimeoutError;

    fn try_from(s3: &model::S3Target) -> Result<Self, TimeoutError> {
        let t = s3.timeouts.clone().unwrap_or_default();
        let timeouts = S3Timeouts {
            connect: parse::parse_timeout(&t.connect)?,
            request: parse::parse_timeout(&t.request)?,
        };
        Ok(settings(s3, timeouts))
    }
}

/// A store's retention as `Rules`; `None` if it has an error.
fn retention_rules(
    r: &Retention,
    path: &str,
    store: &str,
    interval: Option<Duration>,
    out: &mut Vec<Finding>,
) -> Option<Rules> {
    let start = out.len();
    let within = r
        .keep_within
        .as_ref()
        .and_then(|w| match retention::parse_duration(w) {
            Ok(d) => Some(d),
            Err(e) => {
                out.push(
                    Finding::error(
                        Code::BadDuration,
                        format!("{path}/keepWithin"),
                        e.to_string(),
                    )
                    .help("use restic units: y, m (months), w, d, h — e.g. 14d or 1y6m"),
                );
                None
            }
        });
    let rules = Rules {
        keep_last: r.keep_last,
        keep_hourly: r.keep_hourly,
        keep_daily: r.keep_daily,
        keep_weekly: r.keep_weekly,
        keep_monthly: r.keep_monthly,
        keep_yearly: r.keep_yearly,
        keep_within: within,
    };
    let unparsed_within = r.keep_within.is_some() && within.is_none();
    if rules.keeps_nothing() && !unparsed_within {
        out.push(
            Finding::error(
                Code::RetentionKeepsNothing,
                path.to_string(),
                format!("retention of `{store}` keeps nothing but the newest snapshot"),
            )
            .help("set at least one of keepLast, keepDaily, ..., keepWithin to a value above 0"),
        );
    }
    if let (Some(w), Some(iv)) = (within, interval) {
        let iv = SignedDuration::try_from(iv).unwrap_or(SignedDuration::MAX);
        if w < iv {
            out.push(
                Finding::error(
                    Code::KeepWithinShorterThanSchedule,
                    format!("{path}/keepWithin"),
                    format!(
                        "keepWithin {} is shorter than the schedule's interval ({})",
                        r.keep_within.as_deref().unwrap_or(""),
                        retention::format_duration(iv)
                    ),
                )
                .help("a window shorter than the time between runs never holds more than one snapshot: make it at least the interval"),
            );
        }
    }
    clean_since(out, start).then_some(rules)
}
