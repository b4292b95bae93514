//! Validate: JSON Schema (the committed one) plus semantic rules, every
//! problem a `Finding` with a stable code and a JSON pointer; a clean policy
//! becomes a `ValidPolicy`, the only thing the compiler accepts.
//!
//! Stage: validate. Pure: no I/O (file paths in the policy are not opened
//! here — they may only exist inside the Job's pod).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::SignedDuration;
use serde_json::Value;

mod json_schema;
mod parse;

use json_schema::schema_findings;
/// Still named by `backends/s3.rs`, which re-parses its target's timeouts.
pub use parse::{TimeoutError, parse_timeout};
use parse::{check_url, closest, has_credentials, is_loopback_host, schedule_interval};

use super::model::{PolicyDocument, RestoreMode, Retention};
use crate::diag::{Code, Finding, Severity};
use crate::retention::{self, Rules};

/// A policy that passed every check. Durations and modes are parsed.
#[derive(Debug, Clone)]
pub struct ValidPolicy {
    pub doc: PolicyDocument,
    pub local_rules: Rules,
    /// One per `doc.spec.targets`, same order.
    pub target_rules: Vec<Rules>,
    /// Local snapshot file mode.
    pub file_mode: u32,
    /// Restore sources in search order (`local` or target names).
    pub sources: Vec<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub apply_timeout: Duration,
    pub join_timeout: Duration,
    pub max_restore_age: Option<SignedDuration>,
    /// Longest gap between two scheduled runs, if a schedule is given.
    pub schedule_interval: Option<Duration>,
}

impl ValidPolicy {
    pub fn name(&self) -> &str {
        &self.doc.metadata.name
    }
}

/// Validate a JSON value (from YAML). Returns the policy if there are no
/// errors, and every finding (warnings included) either way.
pub fn validate(value: &Value) -> (Option<ValidPolicy>, Vec<Finding>) {
    let mut findings = schema_findings(value);
    // Unknown fields alone must not hide semantic problems: drop them and
    // try the typed view anyway.
    let mut pruned = value.clone();
    for f in &findings {
        if f.code == Code::UnknownField {
            remove_pointer(&mut pruned, &f.path);
        }
    }
    let typed = if findings.iter().all(|f| f.code == Code::UnknownField) {
        Some(serde_json::from_value::<PolicyDocument>(pruned))
    } else {
        None
    };
    let mut valid = None;
    let mut type_error = None;
    let typed = match typed {
        Some(Ok(doc)) => Some(doc),
        Some(Err(e)) => {
            type_error = Some(e.to_string());
            None
        }
        None => None,
    };
    if let Some(doc) = typed {
        let mut sem = Vec::new();
        let v = semantic(doc, &mut sem);
        findings.extend(sem);
        if !findings.iter().any(|f| f.severity == Severity::Error) {
            valid = v;
        }
    } else if findings.is_empty() {
        // The schema should catch every such problem with its location;
        // if one slips through, at least say what serde saw.
        findings.push(
            Finding::error(
                Code::Schema,
                "",
                format!(
                    "the policy does not match snapward's types: {}",
                    type_error.as_deref().unwrap_or("unknown reason")
                ),
            )
            .help("compare the policy with `snapward schema`"),
        );
    }
    (valid, findings)
}

fn remove_pointer(v: &mut Value, ptr: &str) {
    let Some((parent, last)) = ptr.rsplit_once('/') else {
        return;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    if let Some(Value::Object(m)) = v.pointer_mut(parent) {
        m.remove(&key);
    }
}

fn retention_rules(
    r: &Retention,
    path: &str,
    store: &str,
    interval: Option<Duration>,
    out: &mut Vec<Finding>,
) -> Rules {
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
    rules
}

fn semantic(doc: PolicyDocument, out: &mut Vec<Finding>) -> Option<ValidPolicy> {
    let spec = &doc.spec;

    // schedule
    let interval = spec
        .schedule
        .as_ref()
        .and_then(|s| match schedule_interval(s) {
            Ok(i) => Some(i),
            Err(e) => {
                out.push(
                    Finding::error(
                        Code::BadSchedule,
                        "/spec/schedule",
                        format!("bad cron schedule: {e}"),
                    )
                    .help("use the CronJob's 5-field form, e.g. \"0 2 * * *\""),
                );
                None
            }
        });

    // cluster
    let c = &spec.cluster;
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
                    out.push(
                        Finding::warning(
                            Code::InsecureHttp,
                            p.clone(),
                            format!("plain http to {}: tokens and snapshots cross the network unencrypted", u.host_str().unwrap_or("")),
                        )
                        .help("use https:// with tls.caFile"),
                    );
                }
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
    if let Some(a) = &c.auth
        && a.token_file.is_some() == a.kubernetes.is_some()
    {
        out.push(
            Finding::error(
                Code::AuthKind,
                "/spec/cluster/auth",
                "give exactly one of `tokenFile` or `kubernetes`",
            )
            .help("tokenFile for a mounted token; kubernetes for the Kubernetes auth method"),
        );
    }
    let mut timeout = |val: &str, path: &str| match parse_timeout(val) {
        Ok(d) => d,
        Err(e) => {
            out.push(
                Finding::error(Code::BadDuration, path, e.to_string())
                    .help("write a positive duration such as 5s, 2m or 1h"),
            );
            Duration::ZERO
        }
    };
    let connect_timeout = timeout(&c.timeouts.connect, "/spec/cluster/timeouts/connect");
    let request_timeout = timeout(&c.timeouts.request, "/spec/cluster/timeouts/request");
    let stream_idle_timeout = timeout(&c.timeouts.stream_idle, "/spec/cluster/timeouts/streamIdle");
    let apply_timeout = timeout(&spec.restore.apply_timeout, "/spec/restore/applyTimeout");
    let join_timeout = timeout(&spec.restore.join_timeout, "/spec/restore/joinTimeout");

    // local store
    let file_mode = match parse::file_mode(&spec.local.file_mode) {
        Ok(mode) => mode,
        // The schema's pattern keeps this from happening.
        Err(e) => {
            out.push(
                Finding::error(Code::InvalidValue, "/spec/local/fileMode", e.to_string())
                    .help("write the mode in octal, as a string: fileMode: \"0640\""),
            );
            0o640
        }
    };
    if file_mode & 0o040 == 0 && file_mode & 0o004 == 0 {
        out.push(
            Finding::warning(
                Code::FileModeUnreadable,
                "/spec/local/fileMode",
                format!(
                    "mode {:04o} lets only the writing user read the snapshots",
                    file_mode
                ),
            )
            .help("the next container (another UID, same fsGroup) cannot read them: use \"0640\""),
        );
    }
    let local_rules = retention_rules(
        &spec.local.retention,
        "/spec/local/retention",
        "local",
        interval,
        out,
    );

    // targets
    let mut names = BTreeMap::new();
    let mut s3_locations: Vec<(usize, String, String, String)> = Vec::new();
    let mut paths: BTreeMap<String, String> = BTreeMap::new();
    paths.insert(
        spec.local.path.trim_end_matches('/').to_string(),
        "local".into(),
    );
    let mut target_rules = Vec::new();
    for (i, t) in spec.targets.iter().enumerate() {
        let p = format!("/spec/targets/{i}");
        if t.name == "local" {
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
        match (&t.s3, &t.filesystem) {
            (Some(_), Some(_)) | (None, None) => out.push(
                Finding::error(
                    Code::TargetKind,
                    p.clone(),
                    format!(
                        "target `{}` needs exactly one of `s3` or `filesystem`",
                        t.name
                    ),
                )
                .help("split it into two targets if you want both"),
            ),
            _ => {}
        }
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
            if let Some(t) = &s3.timeouts {
                for (field, val) in [("connect", &t.connect), ("request", &t.request)] {
                    if let Err(e) = parse_timeout(val) {
                        out.push(
                            Finding::error(
                                Code::BadDuration,
                                format!("{sp}/timeouts/{field}"),
                                e.to_string(),
                            )
                            .help("write a positive duration such as 10s, 2m or 1h"),
                        );
                    }
                }
            }
        }
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
        target_rules.push(retention_rules(
            &t.retention,
            &format!("{p}/retention"),
            &t.name,
            interval,
            out,
        ));
    }

    // unseal keys
    if let Some(k) = &spec.unseal_keys
        && k.kubernetes_secret.is_some() == k.files.is_some()
    {
        out.push(
            Finding::error(
                Code::KeyStoreKind,
                "/spec/unsealKeys",
                "give exactly one of `kubernetesSecret` or `files`",
            )
            .help("in Kubernetes use a Secret; `files` is for the local/CI shape"),
        );
    }

    // restore
    let mut sources = Vec::new();
    if spec.restore.sources.is_empty() {
        sources.push("local".to_string());
        sources.extend(spec.targets.iter().map(|t| t.name.clone()));
    } else {
        let mut seen = BTreeSet::new();
        for (i, s) in spec.restore.sources.iter().enumerate() {
            let p = format!("/spec/restore/sources/{i}");
            if s != "local" && !names.contains_key(s) {
                let known: Vec<&str> = std::iter::once("local")
                    .chain(names.keys().map(String::as_str))
                    .collect();
                let mut help = format!("known stores: {}", known.join(", "));
                if let Some(c) = closest(s, known.iter().copied()) {
                    help = format!("did you mean `{c}`? {help}");
                }
                out.push(
                    Finding::error(
                        Code::UnknownSource,
                        p,
                        format!("restore source `{s}` is not a store of this policy"),
                    )
                    .help(help),
                );
            } else if !seen.insert(s.clone()) {
                out.push(
                    Finding::error(
                        Code::DuplicateSource,
                        p,
                        format!("restore source `{s}` is listed twice"),
                    )
                    .help("list each store once, in search order"),
                );
            } else {
                sources.push(s.clone());
            }
        }
    }
    if spec.restore.mode == RestoreMode::Auto && spec.unseal_keys.is_none() {
        out.push(
            Finding::error(Code::RestoreAutoWithoutKeys, "/spec/restore/mode", "restore mode `auto` needs `spec.unsealKeys`")
                .help("a restored cluster is sealed with its original keys: say where they live (unsealKeys.kubernetesSecret or unsealKeys.files)"),
        );
    }
    if spec.restore.restart_pod && spec.cluster.discovery.is_none() {
        out.push(
            Finding::error(
                Code::RestartPodNeedsDiscovery,
                "/spec/restore/restartPod",
                "`restartPod` needs `cluster.discovery.kubernetes`",
            )
            .help("snapward restarts node 0 by deleting the pod it discovered: use cluster.discovery, or set restartPod: false and restart node 0 by hand when asked"),
        );
    }
    let max_restore_age =
        spec.guards
            .max_restore_age
            .as_ref()
            .and_then(|s| match retention::parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    out.push(
                        Finding::error(
                            Code::BadDuration,
                            "/spec/guards/maxRestoreAge",
                            e.to_string(),
                        )
                        .help("use restic units: y, m (months), w, d, h — e.g. 7d"),
                    );
                    None
                }
            });

    // init
    let init = &spec.init;
    if init.shares < 1 || init.threshold < 1 || init.threshold > init.shares {
        out.push(
            Finding::error(
                Code::InitThreshold,
                "/spec/init/threshold",
                format!(
                    "threshold {} with {} shares is impossible",
                    init.threshold, init.shares
                ),
            )
            .help("need 1 ≤ threshold ≤ shares (e.g. shares 5, threshold 3)"),
        );
    }
    if init.allowed && spec.unseal_keys.is_none() {
        out.push(
            Finding::error(
                Code::InitWithoutKeys,
                "/spec/init/allowed",
                "init is allowed but `spec.unsealKeys` says nowhere to store the keys",
            )
            .help("add spec.unsealKeys: the keys are stored there, create-only"),
        );
    }

    // metrics
    if let Some(url) = spec.metrics.as_ref().and_then(|m| m.pushgateway.as_ref()) {
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

    // guards that cannot be switched off
    let g = &spec.guards;
    for (on, field, what) in [
        (
            g.require_confirmed_upload,
            "requireConfirmedUpload",
            "prune only after a confirmed upload",
        ),
        (
            g.copy_only_mirror,
            "copyOnlyMirror",
            "mirroring never deletes",
        ),
        (
            g.refuse_on_unknown_node,
            "refuseOnUnknownNode",
            "no destructive step while a node's state is unknown",
        ),
        (
            g.refuse_init_over_keys,
            "refuseInitOverKeys",
            "never initialise over surviving unseal keys",
        ),
    ] {
        if !on {
            out.push(
                Finding::error(
                    Code::GuardAlways,
                    format!("/spec/guards/{field}"),
                    format!("guard `{field}` ({what}) cannot be switched off"),
                )
                .help("remove the line; this guard is always on"),
            );
        }
    }

    Some(ValidPolicy {
        local_rules,
        target_rules,
        file_mode,
        sources,
        connect_timeout,
        request_timeout,
        stream_idle_timeout,
        apply_timeout,
        join_timeout,
        max_restore_age,
        schedule_interval: interval,
        doc,
    })
}
