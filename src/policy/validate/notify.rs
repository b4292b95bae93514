//! `spec.notify`: ping and webhook URLs (http(s), no credentials inside),
//! their timeouts.
//!
//! Stage: validate. Pure.

use super::parse::{check_url, has_credentials};
use crate::diag::{Code, Finding};
use crate::policy::model::{Endpoint, Notify};

pub(super) fn check(n: Option<&Notify>, out: &mut Vec<Finding>) {
    let Some(n) = n else { return };
    if let Some(p) = &n.ping {
        endpoint(p, "/spec/notify/ping", out);
    }
    for (i, w) in n.webhooks.iter().enumerate() {
        endpoint(w, &format!("/spec/notify/webhooks/{i}"), out);
    }
}

fn endpoint(e: &Endpoint, at: &str, out: &mut Vec<Finding>) {
    let url_at = format!("{at}/url");
    match check_url(&e.url) {
        // The URL itself is never quoted: its path may be the secret.
        Err(err) => out.push(
            Finding::error(Code::EndpointNotUrl, &url_at, err.to_string().replace(&e.url, "the URL"))
                .help("write an http:// or https:// URL, e.g. https://hc-ping.com/<uuid> for a ping"),
        ),
        Ok(u) if has_credentials(&u) => out.push(
            Finding::error(
                Code::CredentialsInUrl,
                &url_at,
                "the notification URL holds credentials (`user:password@`): the policy (a ConfigMap) would store them in clear",
            )
            .help("remove them from the URL and put an `Authorization: ...` line in a file named by `headersFile` (a mounted Secret)"),
        ),
        Ok(_) => {}
    }
    if let Some(t) = &e.timeout {
        super::timeout(t, &format!("{at}/timeout"), "10s", out);
    }
}
