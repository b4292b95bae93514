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
    let identity = client_identity(c, out);
    identity?;
    Some(ClusterSettings {
        nodes: nodes?,
        auth: auth?,
        timeouts: timeouts?,
    })
}

/// `tls.certFile` and `tls.keyFile`: both or neither. The files are read
/// at run time (lint does no I/O beyond the policy).
fn client_identity(c: &Cluster, out: &mut Vec<Finding>) -> Option<()> {
    let Some(tls) = &c.tls else {
        return Some(());
    };
    let missing = match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => ("keyFile", "certFile"),
        (None, Some(_)) => ("certFile", "keyFile"),
        _ => return Some(()),
    };
    out.push(
        Finding::error(
            Code::InvalidValue,
            format!("/spec/cluster/tls/{}", missing.1),
            format!(
                "tls.{} is set without tls.{}: a client certificate needs its private key and the key its certificate",
                missing.1, missing.0
            ),
        )
        .help("set both tls.certFile (PEM certificate) and tls.keyFile (PEM private key), or neither"),
    );
    None
}

/// `auth.cert`: a login with the client certificate of `cluster.tls`,
/// which only exists over https.
fn cert_auth(c: &Cluster, cert: &model::CertAuth, out: &mut Vec<Finding>) -> Option<AuthSettings> {
    let start = out.len();
    let tls = c.tls.as_ref();
    if tls.is_none_or(|t| t.cert_file.is_none() || t.key_file.is_none()) {
        out.push(
            Finding::error(
                Code::InvalidValue,
                "/spec/cluster/auth/cert",
                "auth.cert logs in with the client certificate of cluster.tls, but tls.certFile and tls.keyFile are not both set",
            )
            .help("set spec.cluster.tls.certFile and keyFile to the certificate registered with the cert auth method and its key"),
        );
    }
    let http = c.nodes.iter().flatten().any(|n| {
        n.address
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("http://")
    }) || c
        .discovery
        .as_ref()
        .is_some_and(|d| d.kubernetes.scheme == model::Scheme::Http);
    if http {
        out.push(
            Finding::error(
                Code::InvalidValue,
                "/spec/cluster/auth/cert",
                "auth.cert needs https: over plain http no client certificate is presented",
            )
            .help("address the nodes with https:// (discovery: scheme https)"),
        );
    }
    clean_since(out, start).then(|| AuthSettings::Cert {
        mount: cert.mount.clone(),
        role: cert.role.clone(),
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
                format!("give exactly one auth method: `tokenFile`, `kubernetes`, `appRole`, `jwt` or `cert` ({which})"),
            )
            .help("tokenFile for a mounted token; kubernetes, appRole, jwt or cert for that OpenBao auth method"),
        );
        return None;
    }
    if let Some(cert) = &a.cert {
        return cert_auth(c, cert, out).map(Some);
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
        ("cert", a.cert.is_some()),
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
