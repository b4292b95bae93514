//! `spec.metrics`: the Pushgateway URL.
//!
//! Stage: validate. Pure.

use super::parse::{check_url, has_credentials};
use crate::diag::{Code, Finding};
use crate::policy::model::Metrics;

pub(super) fn check(m: Option<&Metrics>, out: &mut Vec<Finding>) {
    let Some(url) = m.and_then(|m| m.pushgateway.as_ref()) else {
        return;
    };
    match check_url(url) {
        Err(e) => out.push(
            Finding::error(Code::EndpointNotUrl, "/spec/metrics/pushgateway", e.to_string()).help(
                "write the Pushgateway's base URL, e.g. http://pushgateway.monitoring.svc:9091",
            ),
        ),
        // Basic auth is how a Pushgateway behind a proxy is reached, so
        // only a warning; snapward redacts it from what it prints.
        Ok(u) if has_credentials(&u) => out.push(
            Finding::warning(
                Code::CredentialsInUrl,
                "/spec/metrics/pushgateway",
                "the Pushgateway URL holds credentials (`user:password@`): the policy (a ConfigMap) stores them in clear",
            )
            .help("prefer a Pushgateway reachable without credentials inside the cluster (a NetworkPolicy limits who may push)"),
        ),
        Ok(_) => {}
    }
}
