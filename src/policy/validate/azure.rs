//! `spec.targets[].azure`: the endpoint is a URL without credentials (a
//! warning for plain http off loopback), the prefix ends with `/`, at most
//! one of the credential files, and no two targets share an account,
//! container and an overlapping prefix.
//!
//! Stage: validate. Pure.

use super::parse::{check_url, has_credentials, is_loopback_host};
use crate::diag::{Code, Finding};
use crate::policy::model::AzureTarget;

/// Where the Azure targets seen so far point: (target index, endpoint or
/// account, container, prefix).
pub(super) type Locations = Vec<(usize, String, String, String)>;

/// Checks one Azure target (`path` is `/spec/targets/<i>/azure`); true if
/// it has no error.
pub(super) fn check(
    i: usize,
    name: &str,
    az: &AzureTarget,
    path: &str,
    seen: &mut Locations,
    out: &mut Vec<Finding>,
) -> bool {
    let start = out.len();
    let mut location = format!("account:{}", az.account);
    if let Some(ep) = &az.endpoint {
        match check_url(ep) {
            Err(e) => out.push(
                Finding::error(Code::EndpointNotUrl, format!("{path}/endpoint"), e.to_string())
                    .help("write the endpoint as a URL, e.g. https://<account>.blob.core.usgovcloudapi.net or http://127.0.0.1:10000/devstoreaccount1 (Azurite)"),
            ),
            Ok(u) => {
                if has_credentials(&u) || u.query().is_some() {
                    out.push(
                        Finding::error(
                            Code::CredentialsInUrl,
                            format!("{path}/endpoint"),
                            "the endpoint holds credentials (`user:password@` or a `?` query such as a SAS token): they would end up in logs and reports",
                        )
                        .help("remove them: Azure credentials come from credentials.accountKeyFile/sasTokenFile or the standard Azure chain"),
                    );
                }
                location = format!("{}://{}{}", u.scheme(), u.authority(), u.path().trim_end_matches('/'));
                if u.scheme() == "http" && !is_loopback_host(u.host_str().unwrap_or("")) {
                    out.push(
                        Finding::warning(
                            Code::InsecureHttp,
                            format!("{path}/endpoint"),
                            format!("plain http to {}: snapshots and signed requests cross the network unencrypted", u.host_str().unwrap_or("")),
                        )
                        .help("use https://"),
                    );
                }
            }
        }
    }
    if let Some(c) = &az.credentials
        && c.account_key_file.is_some() == c.sas_token_file.is_some()
    {
        out.push(
            Finding::error(
                Code::TargetKind,
                format!("{path}/credentials"),
                format!("target `{name}` needs exactly one of `accountKeyFile` or `sasTokenFile` in `credentials`"),
            )
            .help("or omit `credentials` to use workload identity / managed identity"),
        );
    }
    if !az.prefix.is_empty() && !az.prefix.ends_with('/') {
        out.push(
            Finding::warning(
                Code::PrefixWithoutSlash,
                format!("{path}/prefix"),
                format!("prefix {:?} does not end with `/`", az.prefix),
            )
            .help(format!(
                "blob names become `{}<file name>`; write {:?} so the snapshots sit in their own folder",
                az.prefix,
                format!("{}/", az.prefix)
            )),
        );
    }
    for (j, loc, container, prefix) in seen.iter() {
        let overlap =
            az.prefix.starts_with(prefix.as_str()) || prefix.starts_with(az.prefix.as_str());
        if *loc == location && *container == az.container && overlap {
            out.push(
                Finding::error(
                    Code::SameBucketPrefix,
                    format!("{path}/container"),
                    format!(
                        "target `{name}` shares account `{}`, container `{}` and an overlapping prefix with target {j}",
                        az.account, az.container
                    ),
                )
                .help("each target's retention would delete the other's snapshots: give each its own prefix"),
            );
        }
    }
    seen.push((i, location, az.container.clone(), az.prefix.clone()));
    super::clean_since(out, start)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::diag::{Code, Severity};
    use crate::policy::TargetKind;

    fn policy(targets: Value) -> Value {
        json!({
            "apiVersion": "snapward.dev/v1alpha1",
            "kind": "SnapshotPolicy",
            "metadata": {"name": "t"},
            "spec": {
                "cluster": {"nodes": [{"address": "https://a.example:8200"}]},
                "local": {"path": "/snapshots", "retention": {"keepLast": 3}},
                "targets": targets,
            }
        })
    }

    fn azure(name: &str, az: Value) -> Value {
        json!({"name": name, "retention": {"keepLast": 3}, "azure": az})
    }

    fn findings(targets: Value) -> Vec<(Code, Severity, String)> {
        let (_, f) = super::super::validate(&policy(targets));
        f.into_iter()
            .map(|f| (f.code, f.severity, f.path))
            .collect()
    }

    #[test]
    fn a_plain_azure_target_is_valid_and_kept_as_written() {
        let az = json!({"account": "acct", "container": "snaps", "prefix": "a/"});
        let (v, f) = super::super::validate(&policy(json!([azure("az", az)])));
        let v = v.unwrap_or_else(|| panic!("valid: {f:#?}"));
        let TargetKind::Azure(a) = &v.targets[0].kind else {
            panic!("an azure target: {:?}", v.targets[0].kind);
        };
        assert_eq!((a.account.as_str(), a.prefix.as_str()), ("acct", "a/"));
    }

    #[test]
    fn endpoint_must_be_a_url_without_credentials() {
        let f = findings(json!([azure(
            "az",
            json!({"account": "acct", "container": "snaps", "endpoint": "not a url"})
        )]));
        assert!(
            f.contains(&(
                Code::EndpointNotUrl,
                Severity::Error,
                "/spec/targets/0/azure/endpoint".into()
            )),
            "{f:?}"
        );
        let f = findings(json!([azure(
            "az",
            json!({"account": "acct", "container": "snaps", "endpoint": "https://acct.blob.example/?sv=1&sig=x"})
        )]));
        assert!(
            f.iter()
                .any(|(c, s, _)| *c == Code::CredentialsInUrl && *s == Severity::Error),
            "{f:?}"
        );
    }

    #[test]
    fn prefix_without_slash_and_plain_http_warn() {
        let f = findings(json!([azure(
            "az",
            json!({"account": "acct", "container": "snaps", "prefix": "prod", "endpoint": "http://10.0.0.5:10000/acct"})
        )]));
        assert!(
            f.contains(&(
                Code::PrefixWithoutSlash,
                Severity::Warning,
                "/spec/targets/0/azure/prefix".into()
            )),
            "{f:?}"
        );
        assert!(
            f.iter()
                .any(|(c, s, _)| *c == Code::InsecureHttp && *s == Severity::Warning),
            "{f:?}"
        );
    }

    #[test]
    fn same_account_container_and_overlapping_prefix_is_an_error() {
        let f = findings(json!([
            azure(
                "a",
                json!({"account": "acct", "container": "snaps", "prefix": "prod/"})
            ),
            azure(
                "b",
                json!({"account": "acct", "container": "snaps", "prefix": "prod/x/"})
            ),
            azure(
                "c",
                json!({"account": "acct", "container": "snaps", "prefix": "dev/"})
            ),
            azure(
                "d",
                json!({"account": "other", "container": "snaps", "prefix": "prod/"})
            ),
        ]));
        let same: Vec<_> = f
            .iter()
            .filter(|(c, _, _)| *c == Code::SameBucketPrefix)
            .collect();
        assert_eq!(
            same,
            vec![&(
                Code::SameBucketPrefix,
                Severity::Error,
                "/spec/targets/1/azure/container".into()
            )]
        );
    }

    #[test]
    fn credentials_need_exactly_one_file_and_kinds_are_exclusive() {
        let f = findings(json!([azure(
            "az",
            json!({"account": "acct", "container": "snaps",
                   "credentials": {"accountKeyFile": "/k", "sasTokenFile": "/s"}})
        )]));
        assert!(
            f.contains(&(
                Code::TargetKind,
                Severity::Error,
                "/spec/targets/0/azure/credentials".into()
            )),
            "{f:?}"
        );
        let mut both = azure("az", json!({"account": "acct", "container": "snaps"}));
        both["filesystem"] = json!({"path": "/mnt"});
        let f = findings(json!([both]));
        assert!(
            f.contains(&(Code::TargetKind, Severity::Error, "/spec/targets/0".into())),
            "{f:?}"
        );
    }
}
