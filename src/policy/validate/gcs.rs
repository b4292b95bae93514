//! `spec.targets[].gcs`: the endpoint is an http(s) URL without
//! credentials (plain http only to a loopback emulator, else a warning),
//! the prefix ends with `/`, and no two GCS targets share a bucket with
//! overlapping prefixes (each one's retention would prune the other's
//! snapshots).
//!
//! Stage: validate. Pure.

use super::parse::{check_url, has_credentials, is_loopback_host};
use super::stores::s3_timeouts;
use crate::diag::{Code, Finding};
use crate::policy::model::GcsTarget;
use crate::policy::valid::GcsSettings;

/// A GCS target seen so far: its index, endpoint origin, bucket, prefix.
pub(super) struct Location {
    index: usize,
    endpoint: String,
    bucket: String,
    prefix: String,
}

/// Checks target `i` (`name`), records where it writes in `seen`; its
/// settings, `None` if its timeouts do not parse (every other finding is
/// in `out`: the caller counts errors).
pub(super) fn check(
    i: usize,
    name: &str,
    g: &GcsTarget,
    seen: &mut Vec<Location>,
    out: &mut Vec<Finding>,
) -> Option<GcsSettings> {
    let gp = format!("/spec/targets/{i}/gcs");
    let mut endpoint = "google".to_string();
    if let Some(ep) = &g.endpoint {
        match check_url(ep) {
            Err(e) => out.push(
                Finding::error(Code::EndpointNotUrl, format!("{gp}/endpoint"), e.to_string())
                    .help("write the endpoint as a URL, e.g. http://127.0.0.1:4443 for fake-gcs-server; omit it for Google itself"),
            ),
            Ok(u) => {
                if has_credentials(&u) {
                    out.push(
                        Finding::error(
                            Code::CredentialsInUrl,
                            format!("{gp}/endpoint"),
                            "the endpoint holds credentials (`user:password@`): they would end up in logs and reports",
                        )
                        .help("remove them: GCS credentials come from credentials.serviceAccountFile or the standard Google chain"),
                    );
                }
                endpoint = format!("{}://{}", u.scheme(), u.authority());
                if u.scheme() == "http" && !is_loopback_host(u.host_str().unwrap_or("")) {
                    out.push(
                        Finding::warning(
                            Code::InsecureHttp,
                            format!("{gp}/endpoint"),
                            format!("plain http to {}: snapshots and access tokens cross the network unencrypted", u.host_str().unwrap_or("")),
                        )
                        .help("use https://"),
                    );
                }
            }
        }
    }
    if !g.prefix.is_empty() && !g.prefix.ends_with('/') {
        out.push(
            Finding::warning(
                Code::PrefixWithoutSlash,
                format!("{gp}/prefix"),
                format!("prefix {:?} does not end with `/`", g.prefix),
            )
            .help(format!(
                "object names become `{}<file name>`; write {:?} so the snapshots sit in their own folder",
                g.prefix,
                format!("{}/", g.prefix)
            )),
        );
    }
    for other in seen.iter() {
        let overlap = g.prefix.starts_with(other.prefix.as_str())
            || other.prefix.starts_with(g.prefix.as_str());
        if other.endpoint == endpoint && other.bucket == g.bucket && overlap {
            out.push(
                Finding::error(
                    Code::SameBucketPrefix,
                    format!("{gp}/bucket"),
                    format!(
                        "target `{name}` shares bucket `{}` and an overlapping prefix with target {}",
                        g.bucket, other.index
                    ),
                )
                .help("each target's retention would delete the other's snapshots: give each its own prefix"),
            );
        }
    }
    seen.push(Location {
        index: i,
        endpoint,
        bucket: g.bucket.clone(),
        prefix: g.prefix.clone(),
    });
    let timeouts = s3_timeouts(g.timeouts.as_ref(), &gp, out)?;
    Some(GcsSettings {
        endpoint: g.endpoint.clone(),
        bucket: g.bucket.clone(),
        prefix: g.prefix.clone(),
        credentials: g.credentials.clone(),
        timeouts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Severity;

    fn target(endpoint: Option<&str>, bucket: &str, prefix: &str) -> GcsTarget {
        GcsTarget {
            endpoint: endpoint.map(str::to_owned),
            bucket: bucket.into(),
            prefix: prefix.into(),
            credentials: None,
            timeouts: None,
        }
    }

    /// The findings of checking `targets` in order, as (code, path, severity).
    fn findings(targets: &[GcsTarget]) -> Vec<(Code, String, Severity)> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for (i, g) in targets.iter().enumerate() {
            check(i, &format!("t{i}"), g, &mut seen, &mut out);
        }
        out.into_iter()
            .map(|f| (f.code, f.path.clone(), f.severity))
            .collect()
    }

    #[test]
    fn a_clean_gcs_target_has_no_findings() {
        let t = target(None, "snaps", "cluster-a/");
        assert_eq!(findings(&[t]), vec![]);
        let emu = target(Some("http://127.0.0.1:4443"), "snaps", "");
        assert_eq!(findings(&[emu]), vec![]);
    }

    #[test]
    fn an_endpoint_that_is_not_a_url_is_an_error() {
        for ep in ["storage.googleapis.com", "ftp://x", "not a url"] {
            let f = findings(&[target(Some(ep), "snaps", "a/")]);
            assert_eq!(
                f,
                vec![(
                    Code::EndpointNotUrl,
                    "/spec/targets/0/gcs/endpoint".into(),
                    Severity::Error
                )],
                "{ep}"
            );
        }
    }

    #[test]
    fn plain_http_off_loopback_is_a_warning_and_userinfo_an_error() {
        let f = findings(&[target(Some("http://gcs.internal:4443"), "b", "a/")]);
        assert_eq!(f[0].0, Code::InsecureHttp);
        assert_eq!(f[0].2, Severity::Warning);
        let f = findings(&[target(Some("https://u:p@gcs.internal"), "b", "a/")]);
        assert_eq!(f[0].0, Code::CredentialsInUrl);
        assert_eq!(f[0].2, Severity::Error);
    }

    #[test]
    fn a_prefix_without_a_trailing_slash_is_a_warning() {
        let f = findings(&[target(None, "snaps", "cluster-a")]);
        assert_eq!(
            f,
            vec![(
                Code::PrefixWithoutSlash,
                "/spec/targets/0/gcs/prefix".into(),
                Severity::Warning
            )]
        );
    }

    #[test]
    fn two_gcs_targets_with_one_bucket_and_overlapping_prefixes_are_an_error() {
        let f = findings(&[target(None, "snaps", "a/"), target(None, "snaps", "a/b/")]);
        assert_eq!(
            f,
            vec![(
                Code::SameBucketPrefix,
                "/spec/targets/1/gcs/bucket".into(),
                Severity::Error
            )]
        );
        // Disjoint prefixes, another bucket, another endpoint: fine.
        assert_eq!(
            findings(&[target(None, "snaps", "a/"), target(None, "snaps", "b/")]),
            vec![]
        );
        assert_eq!(
            findings(&[target(None, "snaps", "a/"), target(None, "other", "a/")]),
            vec![]
        );
        let emu = target(Some("http://127.0.0.1:4443"), "snaps", "a/");
        assert_eq!(findings(&[target(None, "snaps", "a/"), emu]), vec![]);
    }
}
