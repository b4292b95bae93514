//! `spec.cluster`: nodes or discovery, node addresses, auth, timeouts.
//!
//! Stage: validate. Pure.

use std::collections::BTreeMap;

use super::parse::{check_url, has_credentials, is_loopback_host};
use super::{clean_since, timeout};
use crate::diag::{Code, Finding};
use crate::policy::model::{self, Cluster};
use crate::policy::valid::{AuthSettings, ClusterSettings, ClusterTimeouts, ListedNode, Nodes};

pub(super) fn check(c: &Cluster, out: &mut Vec<Finding>) -> Option<ClusterSettings> {
    let nodes = nodes(c, out);
    let auth = auth(c, out);
    let timeouts = timeouts(&c.timeouts, out);
    Some(ClusterSettings {
        nodes: nodes?,
        auth: auth?,
        timeouts: timeouts?,
    })
}

fn nodes(c: &Cluster, out: &mut Vec<Finding>) -> Option<Nodes> {
    let start = out.len();
    match (&c.nodes, &c.discovery) {
        (Some(_), Some(_)) | (None, None) => out.push(
            Finding::error(
                Code::NodesOrDiscovery,
                "/spec/cluster",
                "give exactly one of `nodes` or `discovery`",
            )
            .help("list the nodes (one address per pod) or discover them by label selector"),
        ),
        (Some(nodes), None) if nodes.is_empty() => out.push(
            Finding::error(
                Code::NodesOrDiscovery,
                "/spec/cluster/nodes",
                "no nodes listed",
            )
            .help("list at least one node; node 0 is the one snapward initialises"),
        ),
        _ => {}
    }
    let mut listed = Vec::new();
    let mut seen_addr = BTreeMap::new();
    for (i, n) in c.nodes.iter().flatten().enumerate() {
        let p = format!("/spec/cluster/nodes/{i}/address");
        match check_url(&n.address) {
            Err(e) => out.push(
                Finding::error(Code::NodeAddress, p.clone(), e.to_string()).help(
                    "write the node's base URL, e.g. https://openbao-0.openbao-internal:8200",
                ),
            ),
            Ok(u) => {
                if has_credentials(&u) {
                    out.push(
                        Finding::error(
                            Code::CredentialsInUrl,
                            p.clone(),
                            "the node address holds credentials (`user:password@`): they would end up in logs and reports",
                        )
                        .help("remove them: snapward authenticates with cluster.auth (a token file or Kubernetes auth)"),
                    );
                }
                if u.scheme() == "http" && !is_loopback_host(u.host_str().unwrap_or("")) {
                    out.push(insecure_http(
                        c,
                        p.clone(),
                        format!("plain http to {}", u.host_str().unwrap_or("")),
                    ));
                }
                listed.push(ListedNode {
                    name: n
                        .name
                        .clone()
                        .unwrap_or_else(|| model::default_node_name(i)),
                    address: u,
                });
            }
        }
        let key = n.address.trim_end_matches('/').to_string();
        if let Some(first) = seen_addr.insert(key, i) {
            out.push(
                Finding::error(
                    Code::DuplicateNode,
                    p,
                    format!("node {i} has the same address as node {first}"),
                )
                .help("each node must be addressed directly (one address per pod)"),
            );
        }
    }
    if let Some(d) = &c.discovery
        && d.kubernetes.scheme == model::Scheme::Http
    {
        out.push(insecure_http(
            c,
            "/spec/cluster/discovery/kubernetes/scheme".into(),
            "discovered pods are addressed with plain http".into(),
        ));
    }
    if !clean_since(out, start) {
        return None;
    }
    match (&c.nodes, &c.discovery) {
        (Some(_), None) => Some(Nodes::Listed(listed)),
        (None, Some(d)) => Some(Nodes::Discovered(d.kubernetes.clone())),
        _ => None,
    }
}

/// Plain http to a node that is not loopback: an error, unless
/// `allowInsecureHttp` says the network is trusted (then a warning). The
/// run-time check is in the OpenBao client.
fn insecure_http(c: &Cluster, path: String, what: String) -> Finding {
    let message = format!(
        "{what}: unseal keys, the root token, the login token and snapshots would cross the network unencrypted"
    );
    if c.allow_insecure_http {
        Finding::warning(Code::InsecureHttp, path, message).help(
            "allowed by spec.cluster.allowInsecureHttp; use https:// with tls.caFile where you can",
        )
    } else {
        Finding::error(Code::InsecureHttp, path, message).help(
            "use https:// with tls.caFile, or set spec.cluster.allowInsecureHttp: true if the network to the nodes is trusted (snapward refuses to send keys or tokens over it otherwise)",
        )
    }
}

/// `Some(None)`: no auth; `None`: an error was reported.
fn auth(c: &Cluster, out: &mut Vec<Finding>) -> Option<Option<AuthSettings>> {
    let Some(a) = &c.auth else {
        return Some(None);
    };
    let set = auth_methods(a);
    if set.len() != 1 {
        let which = match set.as_slice() {
            [] => "none is set".to_string(),
            _ => format!("{} are set", set.join(" and ")),
        };
        out.push(
            Finding::error(
                Code::AuthKind,
                "/spec/cluster/auth",
                format!("give exactly one auth method: `tokenFile`, `kubernetes`, `appRole` or `jwt` ({which})"),
            )
            .help("tokenFile for a mounted token; kubernetes, appRole or jwt for that OpenBao auth method"),
        );
        return None;
    }
    if let Some(r) = &a.app_role {
        return Some(Some(AuthSettings::AppRole {
            mount: r.mount.clone(),
            role_id_file: (&r.role_id_file).into(),
            secret_id_file: (&r.secret_id_file).into(),
        }));
    }
    if let Some(j) = &a.jwt {
        return Some(Some(AuthSettings::Jwt {
            mount: j.mount.clone(),
            role: j.role.clone(),
            jwt_file: (&j.jwt_file).into(),
        }));
    }
    match (&a.token_file, &a.kubernetes) {
        (Some(file), None) => Some(Some(AuthSettings::TokenFile(file.into()))),
        (None, Some(k))
            if k.audience.is_some() && k.jwt_file == model::KubernetesAuth::DEFAULT_JWT_FILE =>
        {
            out.push(
                Finding::error(
                    Code::InvalidValue,
                    "/spec/cluster/auth/kubernetes/jwtFile",
                    format!(
                        "audience {:?} is set, but jwtFile is the pod's default token, whose audience is the API server",
                        k.audience.as_deref().unwrap_or_default()
                    ),
                )
                .help("mount a projected serviceAccountToken with that audience (e.g. at /var/run/secrets/openbao/token) and set jwtFile to it"),
            );
            None
        }
        (None, Some(k)) => Some(Some(AuthSettings::Kubernetes {
            role: k.role.clone(),
            mount: k.mount.clone(),
            jwt_file: (&k.jwt_file).into(),
        })),
        _ => {
            out.push(
                Finding::error(
                    Code::AuthKind,
                    "/spec/cluster/auth",
                    "give exactly one of `tokenFile` or `kubernetes`",
                )
                .help("tokenFile for a mounted token; kubernetes for the Kubernetes auth method"),
            );
            None
        }
    }
}

/// The auth methods `a` sets, by their policy names.
fn auth_methods(a: &model::Auth) -> Vec<&'static str> {
    [
        ("tokenFile", a.token_file.is_some()),
        ("kubernetes", a.kubernetes.is_some()),
        ("appRole", a.app_role.is_some()),
        ("jwt", a.jwt.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

fn timeouts(t: &model::Timeouts, out: &mut Vec<Finding>) -> Option<ClusterTimeouts> {
    let mut timeout = |val: &str, path: &str| timeout(val, path, "5s", out);
    let connect = timeout(&t.connect, "/spec/cluster/timeouts/connect");
    let request = timeout(&t.request, "/spec/cluster/timeouts/request");
    let stream_idle = timeout(&t.stream_idle, "/spec/cluster/timeouts/streamIdle");
    Some(ClusterTimeouts {
        connect: connect?,
        request: request?,
        stream_idle: stream_idle?,
    })
}
