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
