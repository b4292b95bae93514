//! deploy/: what CI can prove about the Kubernetes manifests without a
//! cluster (`scripts/validate-deploy.sh` runs this file after building every
//! overlay).
//!
//! - every kustomization (`deploy/base`, `deploy/overlays/*`) builds with
//!   `kubectl kustomize`, and every component is built by some overlay;
//! - every built object parses as its Kubernetes type (k8s-openapi, the
//!   newest API it knows) and loses no field on the way back — k8s-openapi
//!   ignores unknown fields, so a dropped field is a typo or a field of
//!   another kind;
//! - the embedded policies (the generated ConfigMaps) and every policy file
//!   under deploy/ lint clean with the real binary (`snapward lint`);
//! - the invariants the manifests promise: the CronJob's schedule is the
//!   policy's, the CronJob and the one-shot Job run the same pod, every path
//!   the policy names is mounted (and every Secret key it reads exists), RBAC
//!   is least privilege (pod delete only for openbao-0, only with pod restart
//!   enabled), every pod is non-root with a read-only root filesystem and
//!   passes Pod Security "restricted" (`restricted_violations`), every
//!   overlay runs the image it names, the internet egress rule leaves out
//!   private and shared ranges, and every in-cluster network flow is open on
//!   both sides;
//! - the ValidatingAdmissionPolicy (base/admission.yaml): its CEL, read from
//!   the rendered YAML, is evaluated with the `cel` crate (`admit`) on
//!   sample requests and on what snapward's own code sends;
//! - the Dockerfile is multi-stage, non-root and pins every base image by
//!   digest; the OpenBao policy grants only `read` on the snapshot.
//!
//! kubectl is `$SNAPWARD_TEST_KUBECTL`, else `kubectl` on PATH
//! (`scripts/validate-deploy.sh --print-env` finds or installs one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use snapward::policy::ValidPolicy;
use snapward::policy::yaml::{self, Lines};

use crate::support::root;

fn deploy() -> PathBuf {
    root().join("deploy")
}

fn kubectl() -> PathBuf {
    if let Some(k) = std::env::var_os("SNAPWARD_TEST_KUBECTL").filter(|k| !k.is_empty()) {
        let k = PathBuf::from(k);
        assert!(
            k.is_file(),
            "SNAPWARD_TEST_KUBECTL={} is not a file; run: eval \"$(scripts/validate-deploy.sh --print-env)\"",
            k.display()
        );
        return k;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("kubectl"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "no kubectl: these tests build deploy/ with `kubectl kustomize`. \
             Run: eval \"$(scripts/validate-deploy.sh --print-env)\" (finds or installs one)"
        )
    })
}

/// Parse every YAML document of `text` (snapward's own YAML loader: YAML 1.2,
/// the same conversion to JSON the policy linter uses).
fn parse_docs(what: &str, text: &str) -> Vec<Value> {
    let docs = yaml::parse(text, &Lines::new(text))
        .unwrap_or_else(|e| panic!("{what}: YAML syntax error: {}", e.message));
    docs.into_iter()
        .map(|d| d.value)
        .filter(|v| !v.is_null())
        .collect()
}

/// One kustomization built.
struct Build {
    /// `base`, `overlays/local`, ...
    name: String,
    dir: PathBuf,
    yaml: String,
    docs: Vec<Value>,
}

fn kustomization_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![deploy().join("base")];
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(deploy().join("overlays"))
        .expect("deploy/overlays")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    overlays.sort();
    dirs.extend(overlays);
    dirs
}

fn builds() -> &'static [Build] {
    static BUILDS: OnceLock<Vec<Build>> = OnceLock::new();
    BUILDS.get_or_init(|| {
        let kubectl = kubectl();
        kustomization_dirs()
            .into_iter()
            .map(|dir| {
                let name = dir.strip_prefix(deploy()).unwrap().display().to_string();
                let out = Command::new(&kubectl)
                    .arg("kustomize")
                    .arg(&dir)
                    .output()
                    .unwrap_or_else(|e| panic!("run {}: {e}", kubectl.display()));
                assert!(
                    out.status.success(),
                    "kubectl kustomize deploy/{name} failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let yaml = String::from_utf8(out.stdout).expect("utf-8 output");
                let docs = parse_docs(&name, &yaml);
                Build {
                    name,
                    dir,
                    yaml,
                    docs,
                }
            })
            .collect()
    })
}

fn build(name: &str) -> &'static Build {
    builds()
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("no build deploy/{name}"))
}

fn s<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn kind(v: &Value) -> &str {
    s(v, "/kind").unwrap_or("")
}

fn name(v: &Value) -> &str {
    s(v, "/metadata/name").unwrap_or("")
}

fn namespace(v: &Value) -> &str {
    s(v, "/metadata/namespace").unwrap_or("")
}

fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn str_list(v: &Value, ptr: &str) -> Vec<String> {
    arr(v, ptr)
        .iter()
        .filter_map(|x| x.as_str().map(String::from))
        .collect()
}

impl Build {
    fn of_kind(&self, k: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| kind(d) == k).collect()
    }

    fn one(&self, k: &str, n: &str) -> &Value {
        let found: Vec<_> = self
            .docs
            .iter()
            .filter(|d| kind(d) == k && name(d) == n)
            .collect();
        assert_eq!(found.len(), 1, "deploy/{}: {k}/{n}", self.name);
        found[0]
    }

    fn cronjob(&self) -> &Value {
        self.one("CronJob", "snapward")
    }

    fn job(&self) -> &Value {
        self.one("Job", "snapward-init-restore")
    }

    /// The policy embedded in the generated ConfigMap, validated.
    fn policy(&self) -> ValidPolicy {
        let r = snapward::policy::lint_text(&self.name, &self.yaml, true);
        assert_eq!(
            r.policies.len(),
            1,
            "deploy/{}: exactly one valid embedded policy expected; diagnostics: {:?}",
            self.name,
            r.diagnostics
                .iter()
                .map(|d| (&d.code, &d.message))
                .collect::<Vec<_>>()
        );
        r.policies.into_iter().next().unwrap()
    }

    /// The snapward pod specs: the CronJob's and the Job's.
    fn snapward_pods(&self) -> [(&'static str, &Value); 2] {
        [
            (
                "CronJob/snapward",
                self.cronjob()
                    .pointer("/spec/jobTemplate/spec/template/spec")
                    .expect("CronJob pod spec"),
            ),
            (
                "Job/snapward-init-restore",
                self.job()
                    .pointer("/spec/template/spec")
                    .expect("Job pod spec"),
            ),
        ]
    }

    /// Every pod spec in the build, with a label for messages.
    fn all_pods(&self) -> Vec<(String, &Value)> {
        self.docs
            .iter()
            .filter_map(|d| {
                let ptr = match kind(d) {
                    "CronJob" => "/spec/jobTemplate/spec/template/spec",
                    "Job" | "Deployment" | "StatefulSet" | "DaemonSet" => "/spec/template/spec",
                    "Pod" => "/spec",
                    _ => return None,
                };
                Some((format!("{}/{}", kind(d), name(d)), d.pointer(ptr)?))
            })
            .collect()
    }
}

fn container<'a>(pod: &'a Value, n: &str) -> &'a Value {
    arr(pod, "/containers")
        .iter()
        .find(|c| s(c, "/name") == Some(n))
        .unwrap_or_else(|| panic!("no container {n}"))
}

// ---------------------------------------------------------------------------
// Builds

#[test]
fn every_kustomization_builds() {
    let names: Vec<&str> = builds().iter().map(|b| b.name.as_str()).collect();
    for expected in [
        "base",
        "overlays/local",
        "overlays/prod",
        "overlays/prod-default-deny",
    ] {
        assert!(names.contains(&expected), "{expected} not built: {names:?}");
    }
    for b in builds() {
        assert!(!b.docs.is_empty(), "deploy/{} built nothing", b.name);
        for d in &b.docs {
            assert!(
                !name(d).is_empty() && !kind(d).is_empty() && s(d, "/apiVersion").is_some(),
                "deploy/{}: object without apiVersion/kind/name: {d}",
                b.name
            );
        }
    }
}

/// Components cannot be built alone: each must be pulled in by an overlay
/// (so the builds above cover it).
#[test]
fn every_component_is_used_by_an_overlay() {
    let mut used = std::collections::BTreeSet::new();
    for b in builds() {
        let k = std::fs::read_to_string(b.dir.join("kustomization.yaml")).unwrap();
        let doc = &parse_docs("kustomization", &k)[0];
        for c in str_list(doc, "/components") {
            let p = b.dir.join(c).canonicalize().unwrap();
            used.insert(p);
        }
    }
    for e in std::fs::read_dir(deploy().join("components")).unwrap() {
        let p = e.unwrap().path().canonicalize().unwrap();
        assert!(
            used.contains(&p),
            "{} is not used by any overlay, so no build checks it",
            p.display()
        );
    }
}

// ---------------------------------------------------------------------------
// Types

/// Deserialize `doc` as `T`, serialize it back, and list every field that
/// did not survive (k8s-openapi skips fields it does not know).
fn roundtrip<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut lost = Vec::new();
    diff(doc, &back, "", &mut lost);
    if lost.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fields unknown to the type or changed: {}",
            lost.join(", ")
        ))
    }
}

fn diff(orig: &Value, back: &Value, path: &str, out: &mut Vec<String>) {
    match (orig, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = format!("{path}/{k}");
                match b.get(k) {
                    Some(w) => diff(v, w, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                diff(v, w, &format!("{path}/{i}"), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path} ({a} became {b})")),
    }
}

fn check_type(doc: &Value) -> Result<(), String> {
    use k8s_openapi::api::{admissionregistration as adm, apps, batch, core, networking, rbac};
    match (s(doc, "/apiVersion").unwrap_or(""), kind(doc)) {
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy") => {
            roundtrip::<adm::v1::ValidatingAdmissionPolicy>(doc)
        }
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding") => {
            roundtrip::<adm::v1::ValidatingAdmissionPolicyBinding>(doc)
        }
        ("v1", "ConfigMap") => roundtrip::<core::v1::ConfigMap>(doc),
        ("v1", "PersistentVolume") => roundtrip::<core::v1::PersistentVolume>(doc),
        ("v1", "Namespace") => roundtrip::<core::v1::Namespace>(doc),
        ("v1", "PersistentVolumeClaim") => roundtrip::<core::v1::PersistentVolumeClaim>(doc),
        ("v1", "Secret") => roundtrip::<core::v1::Secret>(doc),
        ("v1", "Service") => roundtrip::<core::v1::Service>(doc),
        ("v1", "ServiceAccount") => roundtrip::<core::v1::ServiceAccount>(doc),
        ("apps/v1", "Deployment") => roundtrip::<apps::v1::Deployment>(doc),
        ("batch/v1", "CronJob") => roundtrip::<batch::v1::CronJob>(doc),
        ("batch/v1", "Job") => roundtrip::<batch::v1::Job>(doc),
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            roundtrip::<networking::v1::NetworkPolicy>(doc)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => roundtrip::<rbac::v1::Role>(doc),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => roundtrip::<rbac::v1::RoleBinding>(doc),
        // Not a k8s-openapi type: the Prometheus Operator's CRD (components/alerts).
        ("monitoring.coreos.com/v1", "PrometheusRule") => crate::alerts::check_prometheus_rule(doc),
        (api, k) => Err(format!(
            "{api} {k} is not a kind this test knows: add it to check_type"
        )),
    }
}

#[test]
fn built_objects_parse_as_their_kubernetes_types() {
    let mut failures = Vec::new();
    for b in builds() {
        for d in &b.docs {
            if let Err(e) = check_type(d) {
                failures.push(format!("deploy/{}: {} {}: {e}", b.name, kind(d), name(d)));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The roundtrip really catches a misspelt field.
#[test]
fn type_check_catches_unknown_fields() {
    let mut cj = build("base").cronjob().clone();
    cj["spec"]["concurencyPolicy"] = Value::from("Forbid");
    let e = check_type(&cj).unwrap_err();
    assert!(e.contains("/spec/concurencyPolicy"), "{e}");
    let mut np = build("base").one("NetworkPolicy", "snapward").clone();
    np["spec"]["egress"][0]["ports"][0]["port"] = Value::from(true);
    assert!(check_type(&np).is_err());
}

/// Example Secrets (not applied): valid Secrets, placeholders only.
#[test]
fn example_secrets_parse_and_hold_placeholders_only() {
    let mut seen = 0;
    for f in example_secret_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        for d in parse_docs(&f.display().to_string(), &text) {
            check_type(&d).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert_eq!(kind(&d), "Secret", "{}", f.display());
            assert!(
                d.get("data").is_none(),
                "{}: use stringData placeholders",
                f.display()
            );
            for (k, v) in d["stringData"].as_object().unwrap() {
                assert!(
                    v.as_str().unwrap().contains("REPLACE"),
                    "{}: {}/{k} must be an obvious placeholder",
                    f.display(),
                    name(&d)
                );
            }
            seen += 1;
        }
    }
    assert!(seen >= 1, "no example secrets under deploy/");
}

fn example_secret_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for b in kustomization_dirs() {
        let f = b.join("secrets.example.yaml");
        if f.is_file() {
            out.push(f);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Policies

fn lint(paths: &[&Path]) -> (i32, Vec<Value>) {
    let out = crate::support::cmd::snapward()
        .arg("lint")
        .arg("--format")
        .arg("json")
        .args(paths)
        .output()
        .unwrap();
    let diags: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "lint --format json: {e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), diags)
}

/// Only the local overlay talks plain http (inside a throwaway cluster):
/// `insecure-http` warnings are expected there and nowhere else.
fn allowed(context: &str, diag: &Value) -> bool {
    context.contains("overlays/local")
        && s(diag, "/code") == Some("policy::insecure-http")
        && s(diag, "/severity") == Some("warning")
}

fn policy_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml")
                && std::fs::read_to_string(&p)
                    .unwrap()
                    .contains("kind: SnapshotPolicy")
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&deploy(), &mut out);
    out.sort();
    out
}

#[test]
fn policy_files_under_deploy_lint_clean() {
    let files = policy_files();
    assert!(files.len() >= 3, "base, local and prod policies: {files:?}");
    for f in files {
        let (code, diags) = lint(&[&f]);
        let rel = f.strip_prefix(root()).unwrap().display().to_string();
        let bad: Vec<_> = diags.iter().filter(|d| !allowed(&rel, d)).collect();
        assert!(bad.is_empty(), "{rel}: {bad:#?}");
        assert_eq!(code, 0, "{rel}: lint exit code");
        let text = std::fs::read_to_string(&f).unwrap();
        let schema = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# yaml-language-server: $schema="))
            .unwrap_or_else(|| panic!("{rel}: first line must be the schema modeline"));
        assert!(
            schema.ends_with("schemas/snapshot-policy.schema.json")
                && f.parent().unwrap().join(schema).is_file(),
            "{rel}: the modeline must point at the committed schema: {schema}"
        );
    }
}

#[test]
fn built_configmaps_lint_clean() {
    let dir = tempfile::tempdir().unwrap();
    for b in builds() {
        let f = dir
            .path()
            .join(format!("{}.yaml", b.name.replace('/', "-")));
        std::fs::write(&f, &b.yaml).unwrap();
        let (code, diags) = lint(&[&f]);
        let bad: Vec<_> = diags.iter().filter(|d| !allowed(&b.name, d)).collect();
        assert!(bad.is_empty(), "deploy/{}: {bad:#?}", b.name);
        assert_eq!(code, 0, "deploy/{}: lint exit code", b.name);
        // Exactly one policy ConfigMap, under the key the pod reads.
        let cms: Vec<_> = b
            .of_kind("ConfigMap")
            .into_iter()
            .filter(|c| name(c).starts_with("snapward-policy-"))
            .collect();
        assert_eq!(cms.len(), 1, "deploy/{}", b.name);
        assert!(
            s(cms[0], "/data/policy.yaml").is_some_and(|p| p.contains("kind: SnapshotPolicy")),
            "deploy/{}: data.policy.yaml",
            b.name
        );
        let _ = b.policy();
    }
}

/// The overlays' policies are the examples' shapes: prod is
/// policies/production-3-node.yaml's, local is policies/local-ci.yaml's.
#[test]
fn overlay_policies_follow_the_examples() {
    let prod = build("overlays/prod").policy();
    let spec = &prod.doc.spec;
    assert!(spec.cluster.discovery.is_some(), "prod discovers its pods");
    assert!(
        spec.unseal_keys
            .as_ref()
            .is_some_and(|k| k.kubernetes_secret.is_some()),
        "prod keeps the keys in a Secret"
    );
    let kinds: Vec<&str> = spec
        .targets
        .iter()
        .map(|t| if t.s3.is_some() { "s3" } else { "filesystem" })
        .collect();
    assert_eq!(kinds, ["s3", "filesystem"]);
    let r2 = spec.targets[0].s3.as_ref().unwrap();
    assert!(
        r2.endpoint
            .as_deref()
            .unwrap()
            .ends_with(".r2.cloudflarestorage.com")
    );
    // R2's S3 API rejects SSE-KMS headers and per-object Object Lock: the
    // example must not set them (every upload would fail).
    assert!(r2.server_side_encryption.is_none() && r2.object_lock.is_none());
    assert!(spec.restore.restart_pod, "prod restarts node 0 when needed");

    let local = build("overlays/local").policy();
    let spec = &local.doc.spec;
    assert!(spec.cluster.nodes.as_ref().is_some_and(|n| n.len() == 1));
    let minio = spec.targets[0].s3.as_ref().unwrap();
    assert!(minio.path_style);
    assert!(minio.endpoint.as_deref().unwrap().contains(".svc"));
}

// ---------------------------------------------------------------------------
// The CronJob and the Job

#[test]
fn cronjob_runs_the_policy_schedule_one_at_a_time() {
    for b in builds() {
        let p = b.policy();
        let cj = b.cronjob();
        let ctx = format!("deploy/{}", b.name);
        assert_eq!(
            s(cj, "/spec/schedule"),
            p.doc.spec.schedule.as_deref(),
            "{ctx}: the CronJob's schedule must be the policy's spec.schedule"
        );
        assert_eq!(s(cj, "/spec/timeZone"), Some("Etc/UTC"), "{ctx}");
        assert_eq!(s(cj, "/spec/concurrencyPolicy"), Some("Forbid"), "{ctx}");
        assert!(
            cj.pointer("/spec/startingDeadlineSeconds")
                .and_then(Value::as_i64)
                .is_some_and(|d| d > 0),
            "{ctx}: startingDeadlineSeconds"
        );
        for (what, spec) in [
            ("CronJob", cj.pointer("/spec/jobTemplate/spec").unwrap()),
            ("Job", b.job().pointer("/spec").unwrap()),
        ] {
            let deadline = spec["activeDeadlineSeconds"].as_i64();
            assert!(
                deadline.is_some_and(|d| (600..=4 * 3600).contains(&d)),
                "{ctx}: {what} activeDeadlineSeconds {deadline:?}"
            );
            let backoff = spec["backoffLimit"].as_i64();
            assert!(
                backoff.is_some_and(|n| (0..=4).contains(&n)),
                "{ctx}: {what} backoffLimit {backoff:?}"
            );
            // Exit 1/2/3 (invalid, usage, refused by a guard) and 6 (backed
            // up, restore test failed) fail the Job at once: retrying
            // cannot help (a retry of 6 only takes another backup).
            let rules = arr(spec, "/podFailurePolicy/rules");
            for code in [3, 6] {
                assert!(
                    rules.iter().any(|r| s(r, "/action") == Some("FailJob")
                        && s(r, "/onExitCodes/operator") == Some("In")
                        && arr(r, "/onExitCodes/values").contains(&Value::from(code))),
                    "{ctx}: {what} must not retry exit {code}"
                );
            }
        }
    }
}

#[test]
fn cronjob_and_job_run_the_same_pod() {
    for b in builds() {
        let [(_, cron), (_, job)] = b.snapward_pods();
        let mut lost = Vec::new();
        diff(cron, job, "", &mut lost);
        diff(job, cron, "", &mut lost);
        assert!(
            lost.is_empty(),
            "deploy/{}: the CronJob's and the Job's pod specs differ at {lost:?} — patch both",
            b.name
        );
    }
}

#[test]
fn snapward_pod_runs_the_policy_from_its_configmap() {
    for b in builds() {
        let cm = b
            .of_kind("ConfigMap")
            .into_iter()
            .find(|c| name(c).starts_with("snapward-policy-"))
            .map(|c| name(c).to_string())
            .unwrap();
        for (what, pod) in b.snapward_pods() {
            let ctx = format!("deploy/{} {what}", b.name);
            let c = container(pod, "snapward");
            let args = str_list(c, "/args");
            assert_eq!(args[..3], ["run", "-f", "/etc/snapward"], "{ctx}");
            let pair = |flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
            assert_eq!(pair("--log-format").as_deref(), Some("json"), "{ctx}");
            assert_eq!(
                pair("--report").as_deref(),
                Some("/tmp/report.json"),
                "{ctx}"
            );
            assert!(!args.iter().any(|a| a == "--dry-run"), "{ctx}");

            let policy_mount = mount_at(pod, "/etc/snapward").expect("policy mount");
            assert_eq!(
                s(policy_mount.volume, "/configMap/name"),
                Some(cm.as_str()),
                "{ctx}"
            );
            assert_eq!(policy_mount.mount["readOnly"], true, "{ctx}");

            let tmp = mount_at(pod, "/tmp").expect("/tmp mount");
            assert!(
                tmp.volume.pointer("/emptyDir/sizeLimit").is_some(),
                "{ctx}: /tmp is a size-limited emptyDir"
            );

            for (var, field) in [
                ("POD_NAME", "metadata.name"),
                ("POD_NAMESPACE", "metadata.namespace"),
            ] {
                let e = arr(c, "/env")
                    .iter()
                    .find(|e| s(e, "/name") == Some(var))
                    .unwrap_or_else(|| panic!("{ctx}: env {var}"));
                assert_eq!(s(e, "/valueFrom/fieldRef/fieldPath"), Some(field), "{ctx}");
            }
            assert_eq!(s(pod, "/serviceAccountName"), Some("snapward"), "{ctx}");
            assert_eq!(s(pod, "/restartPolicy"), Some("Never"), "{ctx}");
        }
    }
}

/// A volume mount and the volume behind it.
struct Mounted<'a> {
    mount: &'a Value,
    volume: &'a Value,
}

fn mounts<'a>(pod: &'a Value) -> Vec<Mounted<'a>> {
    let c = container(pod, "snapward");
    arr(c, "/volumeMounts")
        .iter()
        .map(|m| {
            let vol = arr(pod, "/volumes")
                .iter()
                .find(|v| s(v, "/name") == s(m, "/name"))
                .unwrap_or_else(|| panic!("mount {m} has no volume"));
            Mounted {
                mount: m,
                volume: vol,
            }
        })
        .collect()
}

fn mount_at<'a>(pod: &'a Value, path: &str) -> Option<Mounted<'a>> {
    mounts(pod)
        .into_iter()
        .find(|m| s(m.mount, "/mountPath") == Some(path))
}

/// The mount that holds `path`, and `path` relative to it.
fn mount_holding<'a>(pod: &'a Value, path: &str) -> Option<(Mounted<'a>, String)> {
    mounts(pod)
        .into_iter()
        .filter_map(|m| {
            let at = s(m.mount, "/mountPath")?.trim_end_matches('/').to_string();
            let rel = if path == at {
                String::new()
            } else {
                path.strip_prefix(&format!("{at}/"))?.to_string()
            };
            Some((at.len(), m, rel))
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, m, rel)| (m, rel))
}

const SA_TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Every file or directory the policy reads or writes is on a mounted
/// volume (not the read-only root filesystem), and every Secret key it
/// reads exists in the Secret (in the build, or in a secrets.example.yaml).
#[test]
fn every_path_the_policy_names_is_mounted() {
    let examples: Vec<Value> = example_secret_files()
        .iter()
        .flat_map(|f| parse_docs("example", &std::fs::read_to_string(f).unwrap()))
        .collect();
    for b in builds() {
        let p = b.policy();
        let spec = &p.doc.spec;
        let mut files: Vec<(&str, String)> = Vec::new(); // (what, path)
        let mut dirs: Vec<(&str, String)> = vec![("local.path", spec.local.path.clone())];
        if let Some(tls) = &spec.cluster.tls
            && let Some(ca) = &tls.ca_file
        {
            files.push(("cluster.tls.caFile", ca.clone()));
        }
        if let Some(auth) = &spec.cluster.auth {
            if let Some(t) = &auth.token_file {
                files.push(("cluster.auth.tokenFile", t.clone()));
            }
            if let Some(k) = &auth.kubernetes {
                files.push(("cluster.auth.kubernetes.jwtFile", k.jwt_file.clone()));
            }
        }
        for t in &spec.targets {
            if let Some(c) = t.s3.as_ref().and_then(|s3| s3.credentials.as_ref()) {
                files.push(("s3 accessKeyIdFile", c.access_key_id_file.clone()));
                files.push(("s3 secretAccessKeyFile", c.secret_access_key_file.clone()));
                if let Some(st) = &c.session_token_file {
                    files.push(("s3 sessionTokenFile", st.clone()));
                }
            }
            if let Some(fs) = &t.filesystem {
                dirs.push(("filesystem target", fs.path.clone()));
            }
        }
        if let Some(k) = spec.unseal_keys.as_ref().and_then(|k| k.files.as_ref()) {
            dirs.push(("unsealKeys.files.directory", k.directory.clone()));
        }
        if let Some(c) = &spec.restore.canary {
            files.push(("restore.canary.tokenFile", c.token_file.clone()));
        }
        if let Some(t) = spec.metrics.as_ref().and_then(|m| m.textfile.as_ref()) {
            files.push(("metrics.textfile", t.clone()));
        }
        if let Some(w) = spec.restore_test.as_ref().and_then(|t| t.work_dir.as_ref()) {
            dirs.push(("restoreTest.workDir", w.clone()));
        }

        for (what, pod) in b.snapward_pods() {
            let ctx = format!("deploy/{} {what}", b.name);
            // The snapshot store is the PVC itself, mounted at local.path.
            let local = mount_at(pod, &spec.local.path).unwrap_or_else(|| {
                panic!("{ctx}: nothing mounted at local.path {}", spec.local.path)
            });
            assert_eq!(
                s(local.volume, "/persistentVolumeClaim/claimName"),
                Some("snapward-snapshots"),
                "{ctx}"
            );
            for (field, path) in &dirs {
                assert!(
                    mount_holding(pod, path).is_some_and(|(m, _)| m.mount["readOnly"] != true),
                    "{ctx}: {field} {path} is not on a writable mounted volume"
                );
            }
            for (field, path) in &files {
                if let Some(rel) = path.strip_prefix(&format!("{SA_TOKEN_DIR}/")) {
                    assert_eq!(rel, "token", "{ctx}: {field}");
                    assert_ne!(pod["automountServiceAccountToken"], false, "{ctx}: {field}");
                    continue;
                }
                let (m, rel) = mount_holding(pod, path)
                    .unwrap_or_else(|| panic!("{ctx}: {field} {path} is not on a mounted volume"));
                // The login token: a projected token for the policy's
                // audience, never the API server's (issue 18, item 3).
                if *field == "cluster.auth.kubernetes.jwtFile" {
                    let audience = spec
                        .cluster
                        .auth
                        .as_ref()
                        .and_then(|a| a.kubernetes.as_ref())
                        .and_then(|k| k.audience.clone())
                        .unwrap_or_else(|| panic!("{ctx}: the OpenBao login names no audience"));
                    let projected = arr(m.volume, "/projected/sources")
                        .iter()
                        .find(|src| s(src, "/serviceAccountToken/path") == Some(rel.as_str()))
                        .unwrap_or_else(|| {
                            panic!("{ctx}: {field} {path} is not a projected service-account token")
                        });
                    assert_eq!(
                        s(projected, "/serviceAccountToken/audience"),
                        Some(audience.as_str()),
                        "{ctx}: {field}"
                    );
                    assert_ne!(audience, "", "{ctx}");
                }
                if let Some(secret) = s(m.volume, "/secret/secretName") {
                    let items = arr(m.volume, "/secret/items");
                    let key = if items.is_empty() {
                        rel.clone()
                    } else {
                        let item = items
                            .iter()
                            .find(|i| s(i, "/path") == Some(rel.as_str()))
                            .unwrap_or_else(|| {
                                panic!("{ctx}: {field} {path}: no item {rel} in {secret}")
                            });
                        s(item, "/key").unwrap().to_string()
                    };
                    let known = b
                        .of_kind("Secret")
                        .into_iter()
                        .chain(examples.iter())
                        .find(|d| name(d) == secret)
                        .unwrap_or_else(|| {
                            panic!("{ctx}: Secret {secret} is neither built nor in a secrets.example.yaml")
                        });
                    assert!(
                        known.pointer(&format!("/data/{key}")).is_some()
                            || known.pointer(&format!("/stringData/{key}")).is_some(),
                        "{ctx}: {field} {path} needs key {key} in Secret {secret}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Pod security

fn quantity_bytes(q: &str) -> u64 {
    let (num, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: u64 = num.parse().unwrap();
    n * match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        u => panic!("unit {u}"),
    }
}

#[test]
fn every_pod_is_non_root_with_a_read_only_root() {
    for b in builds() {
        for (what, pod) in b.all_pods() {
            let ctx = format!("deploy/{} {what}", b.name);
            assert_eq!(
                s(pod, "/securityContext/seccompProfile/type"),
                Some("RuntimeDefault"),
                "{ctx}"
            );
            for c in arr(pod, "/containers")
                .iter()
                .chain(arr(pod, "/initContainers"))
            {
                let ctx = format!("{ctx} container {}", s(c, "/name").unwrap());
                let non_root = c
                    .pointer("/securityContext/runAsNonRoot")
                    .or(pod.pointer("/securityContext/runAsNonRoot"));
                assert_eq!(non_root, Some(&Value::Bool(true)), "{ctx}: runAsNonRoot");
                let sc = &c["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{ctx}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{ctx}");
                assert_eq!(str_list(sc, "/capabilities/drop"), ["ALL"], "{ctx}");
                assert!(sc.pointer("/capabilities/add").is_none(), "{ctx}");
                assert!(sc.get("privileged").is_none_or(|p| p == false), "{ctx}");
                assert!(
                    s(c, "/resources/limits/memory").is_some(),
                    "{ctx}: memory limit"
                );
                assert!(
                    !s(c, "/image").unwrap().ends_with(":latest"),
                    "{ctx}: pin the image"
                );
            }
        }
        for (what, pod) in b.snapward_pods() {
            let ctx = format!("deploy/{} {what}", b.name);
            let psc = &pod["securityContext"];
            for f in ["runAsUser", "runAsGroup", "fsGroup"] {
                assert_eq!(psc[f], 65532, "{ctx}: {f} (distroless nonroot)");
            }
            let mem = s(container(pod, "snapward"), "/resources/limits/memory").unwrap();
            // A restore test runs the throwaway OpenBao in this container.
            let rehearses = b.policy().doc.spec.restore_test.is_some();
            let most: u64 = if rehearses { 1 << 30 } else { 256 << 20 };
            assert!(
                quantity_bytes(mem) <= most,
                "{ctx}: the upload is streamed; a memory limit of {mem} hides a leak"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// RBAC

#[test]
fn rbac_is_least_privilege() {
    for b in builds() {
        let ctx = format!("deploy/{}", b.name);
        let p = b.policy();
        for k in ["ClusterRole", "ClusterRoleBinding"] {
            assert!(b.of_kind(k).is_empty(), "{ctx}: no {k}");
        }
        let roles = b.of_kind("Role");
        for r in &roles {
            // Bound to snapward's service account, and only that.
            let bindings: Vec<_> = b
                .of_kind("RoleBinding")
                .into_iter()
                .filter(|rb| {
                    s(rb, "/roleRef/name") == Some(name(r)) && namespace(rb) == namespace(r)
                })
                .collect();
            assert_eq!(bindings.len(), 1, "{ctx}: Role {} bound once", name(r));
            let subjects = arr(bindings[0], "/subjects");
            assert_eq!(subjects.len(), 1, "{ctx}");
            assert_eq!(s(&subjects[0], "/kind"), Some("ServiceAccount"), "{ctx}");
            assert_eq!(s(&subjects[0], "/name"), Some("snapward"), "{ctx}");
            assert_eq!(
                s(&subjects[0], "/namespace"),
                Some(namespace(b.cronjob())),
                "{ctx}"
            );

            for rule in arr(r, "/rules") {
                check_rule(
                    &format!("{ctx}: Role {} rule {rule}", name(r)),
                    name(r),
                    rule,
                    &p,
                );
            }
        }
        // Pod restart is a separate, optional Role: prod only.
        let restart = roles.iter().any(|r| name(r) == "snapward-pod-restart");
        assert_eq!(
            restart,
            b.name.starts_with("overlays/prod"),
            "{ctx}: pod-restart component"
        );
        if restart {
            assert_eq!(
                p.doc.spec.restore.mode,
                snapward::policy::model::RestoreMode::Auto,
                "{ctx}: pod restart without automatic restore"
            );
        }
    }
}

/// One rule of a Role: only what snapward needs, as narrowly as Kubernetes
/// allows.
fn check_rule(rctx: &str, role: &str, rule: &Value, p: &ValidPolicy) {
    let verbs = str_list(rule, "/verbs");
    let resources = str_list(rule, "/resources");
    let names = str_list(rule, "/resourceNames");
    let groups = str_list(rule, "/apiGroups");
    let mut all = [&verbs, &resources, &groups].into_iter().flatten();
    assert!(!all.any(|x| x.contains('*')), "{rctx}: wildcard");
    assert_eq!(resources.len(), 1, "{rctx}: one resource per rule");
    assert_eq!(groups.len(), 1, "{rctx}: one API group per rule");
    match (groups[0].as_str(), resources[0].as_str()) {
        ("", "secrets") if verbs == ["get"] => {
            let key_secret = p
                .doc
                .spec
                .unseal_keys
                .as_ref()
                .and_then(|k| k.kubernetes_secret.as_ref());
            match key_secret {
                Some(ks) => assert_eq!(names, [ks.name.as_str()], "{rctx}: only the key Secret"),
                None => assert_eq!(names.len(), 1, "{rctx}: one named Secret"),
            }
        }
        ("", "secrets") => {
            // `create` cannot be limited by name (the name is in the body):
            // the ValidatingAdmissionPolicy does (admission_policy_* below).
            assert_eq!(
                verbs,
                ["create"],
                "{rctx}: Secrets are read by name or created, never changed"
            );
            assert!(names.is_empty(), "{rctx}");
        }
        ("", "pods") if verbs.iter().any(|v| v == "delete") => {
            assert_eq!(verbs, ["delete"], "{rctx}");
            assert_eq!(names, ["openbao-0"], "{rctx}: delete only node 0");
            assert_eq!(role, "snapward-pod-restart", "{rctx}: a Role of its own");
        }
        // Discovery lists, the restart GETs (it polls: no `watch`).
        ("", "pods") => assert_eq!(verbs, ["get", "list"], "{rctx}"),
        ("coordination.k8s.io", "leases") if verbs == ["create"] => {
            assert!(names.is_empty(), "{rctx}")
        }
        ("coordination.k8s.io", "leases") => {
            assert_eq!(verbs, ["get", "update"], "{rctx}");
            let lease = format!("snapward-{}", p.name());
            assert_eq!(names, [lease.as_str()], "{rctx}: only the policy's Lease");
        }
        // A fresh kube Recorder per Event creates, never patches a series;
        // nothing writes the core/v1 Event API.
        ("events.k8s.io", "events") => assert_eq!(verbs, ["create"], "{rctx}"),
        _ => panic!("{rctx}: not something snapward needs"),
    }
}

// ---------------------------------------------------------------------------
// Network policies

fn labels_of(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// `selector` (matchLabels only; matchExpressions are not used here)
/// selects `labels`.
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    assert!(
        selector.get("matchExpressions").is_none(),
        "matchExpressions: extend this test"
    );
    labels_of(selector.get("matchLabels"))
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

fn ns_labels(ns: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("kubernetes.io/metadata.name".to_string(), ns.to_string())])
}

/// A NetworkPolicy peer admits pods with `labels` in namespace `ns`; the
/// policy itself lives in `own_ns`.
fn peer_admits(peer: &Value, own_ns: &str, ns: &str, labels: &BTreeMap<String, String>) -> bool {
    if peer.get("ipBlock").is_some() {
        return false; // never count an address range as an in-cluster flow
    }
    let ns_ok = match peer.get("namespaceSelector") {
        None => own_ns == ns,
        Some(sel) => selects(sel, &ns_labels(ns)),
    };
    let pod_ok = peer
        .get("podSelector")
        .is_none_or(|sel| selects(sel, labels));
    ns_ok && pod_ok
}

fn ports_allow(rule: &Value, port: i64) -> bool {
    let ports = arr(rule, "/ports");
    ports.is_empty()
        || ports.iter().any(|p| {
            p["port"].as_i64() == Some(port) && s(p, "/protocol").unwrap_or("TCP") == "TCP"
        })
}

/// In-cluster servers snapward's egress names: (namespace, pod labels, port).
fn egress_servers(np: &Value) -> Vec<(String, BTreeMap<String, String>, i64)> {
    let own = namespace(np).to_string();
    let mut out = Vec::new();
    for rule in arr(np, "/spec/egress") {
        for peer in arr(rule, "/to") {
            if peer.get("ipBlock").is_some() {
                continue;
            }
            let ns = match peer.get("namespaceSelector") {
                None => own.clone(),
                Some(sel) => labels_of(sel.get("matchLabels"))
                    .get("kubernetes.io/metadata.name")
                    .cloned()
                    .expect("namespaceSelector by kubernetes.io/metadata.name"),
            };
            let labels = labels_of(peer.pointer("/podSelector/matchLabels"));
            for p in arr(rule, "/ports") {
                if s(p, "/protocol").unwrap_or("TCP") == "TCP" {
                    out.push((ns.clone(), labels.clone(), p["port"].as_i64().unwrap()));
                }
            }
        }
    }
    out
}

#[test]
fn network_flows_are_open_on_both_sides() {
    for b in builds() {
        let ctx = format!("deploy/{}", b.name);
        let pod_labels = labels_of(
            b.cronjob()
                .pointer("/spec/jobTemplate/spec/template/metadata/labels"),
        );
        let snapward_ns = namespace(b.cronjob()).to_string();
        let np = b.one("NetworkPolicy", "snapward");
        assert!(
            selects(&np["spec"]["podSelector"], &pod_labels),
            "{ctx}: selects snapward pods"
        );
        assert_eq!(
            str_list(np, "/spec/policyTypes"),
            ["Ingress", "Egress"],
            "{ctx}"
        );
        assert!(
            arr(np, "/spec/ingress").is_empty(),
            "{ctx}: nothing connects to snapward"
        );

        let servers = egress_servers(np);
        let dns = servers.iter().filter(|(ns, l, p)| {
            ns == "kube-system"
                && l.get("k8s-app").map(String::as_str) == Some("kube-dns")
                && *p == 53
        });
        assert_eq!(dns.count(), 1, "{ctx}: DNS over TCP (and UDP)");
        assert!(
            servers.iter().any(|(ns, l, p)| *ns == snapward_ns
                && l.get("app.kubernetes.io/name").map(String::as_str) == Some("openbao")
                && *p == 8200),
            "{ctx}: egress to OpenBao :8200"
        );
        assert!(
            arr(np, "/spec/egress").iter().any(|r| ports_allow(r, 6443)
                && arr(r, "/to").iter().any(|p| p.get("ipBlock").is_some())),
            "{ctx}: egress to the API server"
        );

        let ingress_policies: Vec<&Value> = b
            .of_kind("NetworkPolicy")
            .into_iter()
            .filter(|p| {
                name(p) != "snapward"
                    && str_list(p, "/spec/policyTypes").contains(&"Ingress".to_string())
            })
            .collect();

        // Client side -> server side: where a server is isolated by a
        // policy in this build, one of its policies admits snapward.
        for (ns, labels, port) in &servers {
            if ns == "kube-system" {
                continue;
            }
            let isolating: Vec<_> = ingress_policies
                .iter()
                .filter(|p| namespace(p) == ns && selects(&p["spec"]["podSelector"], labels))
                .collect();
            if isolating.is_empty() {
                continue;
            }
            assert!(
                isolating
                    .iter()
                    .any(|p| arr(p, "/spec/ingress").iter().any(|r| {
                        ports_allow(r, *port)
                            && arr(r, "/from").iter().any(|peer| {
                                peer_admits(peer, namespace(p), &snapward_ns, &pod_labels)
                            })
                    })),
                "{ctx}: snapward may leave for {ns} {labels:?} :{port}, but that server's ingress does not admit it"
            );
        }
        // Server side -> client side: every ingress rule for snapward has
        // snapward's matching egress.
        for p in &ingress_policies {
            let server_labels = labels_of(p.pointer("/spec/podSelector/matchLabels"));
            for r in arr(p, "/spec/ingress") {
                if !arr(r, "/from")
                    .iter()
                    .any(|peer| peer_admits(peer, namespace(p), &snapward_ns, &pod_labels))
                {
                    continue;
                }
                for port in arr(r, "/ports") {
                    let port = port["port"].as_i64().unwrap();
                    assert!(
                        arr(np, "/spec/egress").iter().any(|e| ports_allow(e, port)
                            && arr(e, "/to").iter().any(|peer| peer_admits(
                                peer,
                                &snapward_ns,
                                namespace(p),
                                &server_labels
                            ))),
                        "{ctx}: {} admits snapward on :{port} but snapward's egress does not allow it",
                        name(p)
                    );
                }
            }
        }

        // Which server sides each build ships: the in-cluster MinIO always
        // (local); OpenBao's and the Pushgateway's only where the namespace
        // is default-deny (a policy that selects pods isolates them).
        let has = |n: &str| ingress_policies.iter().any(|p| name(p) == n);
        match b.name.as_str() {
            "overlays/local" => {
                assert!(has("minio-allow-snapward"), "{ctx}: MinIO's ingress side");
                assert!(has("openbao-allow-snapward"), "{ctx}");
            }
            "overlays/prod-default-deny" => {
                assert!(
                    has("openbao-allow-snapward") && has("pushgateway-allow-snapward"),
                    "{ctx}"
                );
            }
            _ => assert!(
                ingress_policies.is_empty(),
                "{ctx}: would isolate servers it does not own"
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Image and OpenBao policy

#[test]
fn dockerfile_is_multi_stage_and_non_root() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let froms: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().to_ascii_uppercase().starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(
        text.contains("cargo build --release --locked"),
        "release build from Cargo.lock"
    );
    let runtime = froms.last().unwrap();
    assert!(
        runtime.contains("distroless") && runtime.contains("nonroot"),
        "minimal non-root runtime: {runtime}"
    );
    assert!(
        text.lines().any(|l| l.trim() == "USER 65532:65532"),
        "the UID/GID the manifests expect"
    );
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    for entry in ["target/", ".git/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore: {entry}"
        );
    }
}

#[test]
fn openbao_policy_grants_only_snapshot_read() {
    let text = std::fs::read_to_string(deploy().join("openbao/snapward.hcl")).unwrap();
    let code: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        code,
        [
            r#"path "sys/storage/raft/snapshot" {"#,
            r#"capabilities = ["read"]"#,
            "}"
        ]
    );
    for needed in [
        "bao policy write snapward",
        "bao write auth/kubernetes/role/snapward",
        "bound_service_account_names=snapward",
        "bound_service_account_namespaces=openbao",
        "token_policies=snapward",
    ] {
        assert!(text.contains(needed), "snapward.hcl explains: {needed}");
    }
    // The Kubernetes auth role the policies log in with.
    for b in builds() {
        let p = b.policy();
        let k = p
            .doc
            .spec
            .cluster
            .auth
            .as_ref()
            .and_then(|a| a.kubernetes.as_ref());
        assert_eq!(
            k.map(|k| k.role.as_str()),
            Some("snapward"),
            "deploy/{}",
            b.name
        );
    }
}

// ---------------------------------------------------------------------------
// Images

/// The image reference a kustomization's `images:` entry produces.
fn image_of(entry: &Value) -> String {
    let name = s(entry, "/newName").or(s(entry, "/name")).unwrap();
    match (s(entry, "/digest"), s(entry, "/newTag")) {
        (Some(d), _) => format!("{name}@{d}"),
        (None, Some(t)) => format!("{name}:{t}"),
        (None, None) => panic!("images entry without newTag or digest: {entry}"),
    }
}

fn is_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Every kustomization's `images:` override reaches the snapward pods (an
/// entry whose `name` matches nothing is silently ignored by kustomize: the
/// local overlay once rendered the base's registry image instead of
/// `snapward:dev`), and each build runs the image it means.
#[test]
fn every_overlay_renders_the_image_it_names() {
    for b in builds() {
        let ctx = format!("deploy/{}", b.name);
        let images: Vec<String> = b
            .snapward_pods()
            .iter()
            .map(|(_, pod)| s(container(pod, "snapward"), "/image").unwrap().to_string())
            .collect();
        let k = std::fs::read_to_string(b.dir.join("kustomization.yaml")).unwrap();
        let doc = &parse_docs("kustomization", &k)[0];
        for entry in arr(doc, "/images") {
            let want = image_of(entry);
            assert!(
                images.iter().all(|i| *i == want),
                "{ctx}: kustomization.yaml sets image {want} (images: name {}), but the pods run {images:?} \
                 — the name must match the image as the resources below this kustomization render it",
                s(entry, "/name").unwrap()
            );
        }
        let want = match b.name.as_str() {
            "base" => "registry.example.com/platform/snapward:0.1.0".to_string(),
            "overlays/local" => "snapward:dev".to_string(),
            n if n.starts_with("overlays/prod") => {
                let (name, digest) = images[0]
                    .split_once('@')
                    .unwrap_or_else(|| panic!("{ctx}: prod pins the image by digest: {images:?}"));
                assert!(is_sha256_digest(digest), "{ctx}: {digest}");
                assert_eq!(name, "registry.example.com/platform/snapward", "{ctx}");
                images[0].clone()
            }
            n => panic!("{ctx}: say which image deploy/{n} runs"),
        };
        assert!(
            images.iter().all(|i| *i == want),
            "{ctx}: {images:?} != {want}"
        );
    }
}

/// Base images are pinned by digest: a tag can be re-pointed.
#[test]
fn dockerfile_pins_every_base_image_by_digest() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let froms: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.to_ascii_uppercase().starts_with("FROM "))
        .collect();
    assert!(!froms.is_empty());
    // Stage names (FROM build ...) are not images.
    let stages: Vec<&str> = froms
        .iter()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 4 && w[2].eq_ignore_ascii_case("AS")).then(|| w[3])
        })
        .collect();
    for l in &froms {
        let image = l
            .split_whitespace()
            .find(|w| !w.starts_with("--") && !w.eq_ignore_ascii_case("FROM"))
            .unwrap();
        if stages.contains(&image) {
            continue;
        }
        assert!(!image.contains('$'), "{l}: an ARG in FROM cannot be pinned");
        let digest = image.split_once('@').map(|(_, d)| d);
        assert!(
            digest.is_some_and(is_sha256_digest),
            "Dockerfile: `{l}` is not pinned: use image:tag@sha256:<64 hex>"
        );
    }
}

// ---------------------------------------------------------------------------
// Pod Security "restricted"

/// What Pod Security Admission's "restricted" profile (which includes
/// "baseline"; Kubernetes 1.30+ rules) rejects in `pod` (a pod spec). Empty
/// means the pod would be admitted into a namespace labelled
/// `pod-security.kubernetes.io/enforce: restricted`.
fn restricted_violations(pod: &Value) -> Vec<String> {
    const VOLUMES: [&str; 9] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    const SYSCTLS: [&str; 10] = [
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ];
    const SELINUX_TYPES: [&str; 5] = [
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
    ];
    let mut out = Vec::new();
    let t = |v: &Value, ptr: &str| v.pointer(ptr) == Some(&Value::Bool(true));
    for f in ["hostNetwork", "hostPID", "hostIPC"] {
        if t(pod, &format!("/{f}")) {
            out.push(format!("{f}: true"));
        }
    }
    for v in arr(pod, "/volumes") {
        for k in v.as_object().unwrap().keys().filter(|k| *k != "name") {
            if !VOLUMES.contains(&k.as_str()) {
                out.push(format!(
                    "volume {}: type {k} is not allowed",
                    s(v, "/name").unwrap_or("?")
                ));
            }
        }
    }
    let psc = &pod["securityContext"];
    for sc in arr(psc, "/sysctls") {
        let n = s(sc, "/name").unwrap_or("");
        if !SYSCTLS.contains(&n) {
            out.push(format!("sysctl {n}"));
        }
    }
    let seccomp_ok = |t: Option<&str>| matches!(t, Some("RuntimeDefault" | "Localhost"));
    let pod_seccomp = s(psc, "/seccompProfile/type");
    if pod_seccomp.is_some() && !seccomp_ok(pod_seccomp) {
        out.push(format!("pod seccompProfile {pod_seccomp:?}"));
    }
    if psc.pointer("/runAsUser").and_then(Value::as_i64) == Some(0) {
        out.push("pod runAsUser: 0".into());
    }
    let selinux = |sc: &Value, who: &str, out: &mut Vec<String>| {
        if let Some(se) = sc.get("seLinuxOptions") {
            if !SELINUX_TYPES.contains(&s(se, "/type").unwrap_or("")) {
                out.push(format!("{who} seLinuxOptions.type"));
            }
            if se.get("user").is_some() || se.get("role").is_some() {
                out.push(format!("{who} seLinuxOptions.user/role"));
            }
        }
        if let Some(a) = s(sc, "/appArmorProfile/type")
            && !matches!(a, "RuntimeDefault" | "Localhost")
        {
            out.push(format!("{who} appArmorProfile {a}"));
        }
        if t(sc, "/windowsOptions/hostProcess") {
            out.push(format!("{who} windowsOptions.hostProcess"));
        }
    };
    selinux(psc, "pod", &mut out);
    let containers = arr(pod, "/containers")
        .iter()
        .chain(arr(pod, "/initContainers"))
        .chain(arr(pod, "/ephemeralContainers"));
    for c in containers {
        let who = format!("container {}", s(c, "/name").unwrap_or("?"));
        let sc = &c["securityContext"];
        if t(sc, "/privileged") {
            out.push(format!("{who}: privileged"));
        }
        if sc.pointer("/allowPrivilegeEscalation") != Some(&Value::Bool(false)) {
            out.push(format!("{who}: allowPrivilegeEscalation must be false"));
        }
        let drop = str_list(sc, "/capabilities/drop");
        if !drop.iter().any(|d| d == "ALL") {
            out.push(format!("{who}: capabilities.drop must contain ALL"));
        }
        for a in str_list(sc, "/capabilities/add") {
            if a != "NET_BIND_SERVICE" {
                out.push(format!("{who}: capabilities.add {a}"));
            }
        }
        match sc.pointer("/runAsNonRoot").and_then(Value::as_bool) {
            Some(true) => {}
            Some(false) => out.push(format!("{who}: runAsNonRoot: false")),
            None if psc.pointer("/runAsNonRoot") == Some(&Value::Bool(true)) => {}
            None => out.push(format!(
                "{who}: runAsNonRoot must be true (pod or container)"
            )),
        }
        if sc.pointer("/runAsUser").and_then(Value::as_i64) == Some(0) {
            out.push(format!("{who}: runAsUser: 0"));
        }
        let own = s(sc, "/seccompProfile/type");
        if !(seccomp_ok(own) || (own.is_none() && seccomp_ok(pod_seccomp))) {
            out.push(format!(
                "{who}: seccompProfile must be RuntimeDefault or Localhost"
            ));
        }
        if s(sc, "/procMount").is_some_and(|p| p != "Default") {
            out.push(format!("{who}: procMount"));
        }
        selinux(sc, &who, &mut out);
        for p in arr(c, "/ports") {
            if p.get("hostPort")
                .and_then(Value::as_i64)
                .is_some_and(|h| h != 0)
            {
                out.push(format!("{who}: hostPort"));
            }
        }
    }
    out
}

/// The one rule that lives in the pod's metadata: AppArmor annotations
/// may only pick the runtime's default or a localhost profile.
fn apparmor_annotation_violations(template_metadata: Option<&Value>) -> Vec<String> {
    let prefix = "container.apparmor.security.beta.kubernetes.io/";
    template_metadata
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k, v.as_str().unwrap_or("")))
        .filter(|(_, v)| *v != "runtime/default" && !v.starts_with("localhost/"))
        .map(|(k, v)| format!("annotation {k}: {v}"))
        .collect()
}

#[test]
fn every_rendered_pod_passes_pod_security_restricted() {
    let mut failures = Vec::new();
    for b in builds() {
        let pods = b.all_pods();
        assert!(
            pods.len() >= 2,
            "deploy/{}: the CronJob's and the Job's pods",
            b.name
        );
        for (what, pod) in pods {
            for v in restricted_violations(pod) {
                failures.push(format!("deploy/{} {what}: {v}", b.name));
            }
        }
        for d in &b.docs {
            let meta = match kind(d) {
                "CronJob" => d.pointer("/spec/jobTemplate/spec/template/metadata"),
                "Job" | "Deployment" | "StatefulSet" | "DaemonSet" => {
                    d.pointer("/spec/template/metadata")
                }
                "Pod" => d.pointer("/metadata"),
                _ => continue,
            };
            for v in apparmor_annotation_violations(meta) {
                failures.push(format!("deploy/{} {}/{}: {v}", b.name, kind(d), name(d)));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "Pod Security \"restricted\" would reject:\n{}",
        failures.join("\n")
    );
}

/// The checker above really rejects what "restricted" rejects.
#[test]
fn restricted_checker_catches_each_rule() {
    let good = build("overlays/prod")
        .cronjob()
        .pointer("/spec/jobTemplate/spec/template/spec")
        .unwrap()
        .clone();
    assert_eq!(restricted_violations(&good), Vec::<String>::new());
    type Break = fn(&mut Value);
    let cases: [(&str, Break); 14] = [
        (
            "type nfs",
            |p| {
                p["volumes"][0] =
                    serde_json::json!({"name": "n", "nfs": {"server": "x", "path": "/"}})
            },
        ),
        (
            "type hostPath",
            |p| p["volumes"][0] = serde_json::json!({"name": "h", "hostPath": {"path": "/"}}),
        ),
        ("hostNetwork", |p| p["hostNetwork"] = true.into()),
        ("hostPID", |p| p["hostPID"] = true.into()),
        ("hostIPC", |p| p["hostIPC"] = true.into()),
        ("privileged", |p| {
            p["containers"][0]["securityContext"]["privileged"] = true.into()
        }),
        ("allowPrivilegeEscalation", |p| {
            p["containers"][0]["securityContext"]
                .as_object_mut()
                .unwrap()
                .remove("allowPrivilegeEscalation");
        }),
        ("drop must contain ALL", |p| {
            p["containers"][0]["securityContext"]["capabilities"]["drop"] = serde_json::json!([])
        }),
        ("capabilities.add SYS_ADMIN", |p| {
            p["containers"][0]["securityContext"]["capabilities"]["add"] =
                serde_json::json!(["SYS_ADMIN"])
        }),
        ("runAsNonRoot", |p| {
            p["securityContext"]
                .as_object_mut()
                .unwrap()
                .remove("runAsNonRoot");
            p["containers"][0]["securityContext"]
                .as_object_mut()
                .unwrap()
                .remove("runAsNonRoot");
        }),
        ("runAsUser: 0", |p| {
            p["containers"][0]["securityContext"]["runAsUser"] = 0.into()
        }),
        ("seccompProfile", |p| {
            p["securityContext"]["seccompProfile"]["type"] = "Unconfined".into()
        }),
        (
            "hostPort",
            |p| {
                p["containers"][0]["ports"] =
                    serde_json::json!([{"containerPort": 80, "hostPort": 80}])
            },
        ),
        (
            "sysctl kernel.msgmax",
            |p| {
                p["securityContext"]["sysctls"] =
                    serde_json::json!([{"name": "kernel.msgmax", "value": "1"}])
            },
        ),
    ];
    assert_eq!(
        apparmor_annotation_violations(Some(&serde_json::json!({"annotations": {
            "container.apparmor.security.beta.kubernetes.io/snapward": "unconfined"
        }}))),
        ["annotation container.apparmor.security.beta.kubernetes.io/snapward: unconfined"]
    );
    for (want, break_it) in cases {
        let mut pod = good.clone();
        break_it(&mut pod);
        let v = restricted_violations(&pod);
        assert!(
            v.iter().any(|m| m.contains(want)),
            "{want}: not caught; violations: {v:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Egress to the internet

/// The ranges an "internet on 443" rule must leave out: RFC 1918, link-local
/// (cloud metadata) and the RFC 6598 shared space (CGNAT, some CNIs' pod
/// and service ranges, Tailscale-style overlays).
const NOT_INTERNET: [&str; 5] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
];

#[test]
fn internet_egress_excludes_private_and_shared_ranges() {
    let mut seen = 0;
    for b in builds() {
        // overlays/local opens the API server ports to anywhere (kind's
        // control plane has no fixed address): a throwaway cluster only.
        if b.name == "overlays/local" {
            continue;
        }
        let np = b.one("NetworkPolicy", "snapward");
        for rule in arr(np, "/spec/egress") {
            for peer in arr(rule, "/to") {
                if s(peer, "/ipBlock/cidr") != Some("0.0.0.0/0") {
                    continue;
                }
                seen += 1;
                let except = str_list(peer, "/ipBlock/except");
                for r in NOT_INTERNET {
                    assert!(
                        except.iter().any(|e| e == r),
                        "deploy/{}: egress to 0.0.0.0/0 must except {r}: {except:?}",
                        b.name
                    );
                }
            }
        }
    }
    assert!(
        seen >= 2,
        "prod's R2 rule (443 to the internet) was not found"
    );
}

// ---------------------------------------------------------------------------
// Admission: what RBAC cannot narrow (create by name)

/// The outcome of one admission request against a ValidatingAdmissionPolicy.
#[derive(Debug, PartialEq)]
enum Admitted {
    /// matchConstraints or matchConditions do not select the request.
    NotMatched,
    Allowed,
    /// A validation was false (its message) or could not be evaluated
    /// (failurePolicy: Fail denies).
    Denied(String),
}

/// A CEL value to JSON-ish text, for messages.
fn cel_str(v: &cel::Value) -> Option<String> {
    match v {
        cel::Value::String(s) => Some(s.to_string()),
        _ => None,
    }
}

fn cel_eval(expr: &str, ctx: &cel::Context) -> Result<cel::Value, String> {
    let program = cel::Program::compile(expr).map_err(|e| format!("compile `{expr}`: {e}"))?;
    program
        .execute(ctx)
        .map_err(|e| format!("evaluate `{expr}`: {e}"))
}

/// Kubernetes' evaluation of `vap` (a rendered ValidatingAdmissionPolicy) on
/// a CREATE of `object` (a JSON object of `resource` in `group`) by
/// `username` in `namespace`: matchConstraints, matchConditions, variables
/// (in order, each seeing the earlier ones), then every validation with the
/// real CEL expressions from the YAML.
fn admit(
    vap: &Value,
    username: &str,
    namespace: &str,
    group: &str,
    resource: &str,
    object: &Value,
) -> Admitted {
    let matched = arr(vap, "/spec/matchConstraints/resourceRules")
        .iter()
        .any(|r| {
            str_list(r, "/apiGroups")
                .iter()
                .any(|g| g == group || g == "*")
                && str_list(r, "/resources")
                    .iter()
                    .any(|x| x == resource || x == "*")
                && str_list(r, "/operations")
                    .iter()
                    .any(|o| o == "CREATE" || o == "*")
        });
    if !matched {
        return Admitted::NotMatched;
    }
    let request = serde_json::json!({
        "operation": "CREATE",
        "namespace": namespace,
        "name": object.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
        "resource": {"group": group, "version": "v1", "resource": resource},
        "kind": {"group": group, "version": "v1", "kind": kind(object)},
        "userInfo": {"username": username, "groups": ["system:serviceaccounts", "system:authenticated"]},
        "dryRun": false,
    });
    let mut ctx = cel::Context::default();
    ctx.add_variable("request", &request).unwrap();
    ctx.add_variable("object", object).unwrap();
    ctx.add_variable("oldObject", Value::Null).unwrap();
    for mc in arr(vap, "/spec/matchConditions") {
        match cel_eval(s(mc, "/expression").unwrap(), &ctx) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => return Admitted::NotMatched,
            Ok(v) => return Admitted::Denied(format!("matchCondition is not a bool: {v:?}")),
            Err(e) => return Admitted::Denied(e),
        }
    }
    let mut variables = serde_json::Map::new();
    for v in arr(vap, "/spec/variables") {
        let mut vctx = cel::Context::default();
        vctx.add_variable("request", &request).unwrap();
        vctx.add_variable("object", object).unwrap();
        vctx.add_variable("variables", &variables).unwrap();
        let value = match cel_eval(s(v, "/expression").unwrap(), &vctx) {
            Ok(cel::Value::String(x)) => Value::from(x.to_string()),
            Ok(cel::Value::Bool(x)) => Value::from(x),
            Ok(other) => panic!("variable {v}: extend admit() for {other:?}"),
            Err(e) => return Admitted::Denied(e),
        };
        variables.insert(s(v, "/name").unwrap().to_string(), value);
    }
    ctx.add_variable("variables", &variables).unwrap();
    for val in arr(vap, "/spec/validations") {
        match cel_eval(s(val, "/expression").unwrap(), &ctx) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => {
                let msg = match s(val, "/messageExpression") {
                    Some(m) => cel_eval(m, &ctx)
                        .ok()
                        .as_ref()
                        .and_then(cel_str)
                        .unwrap_or_else(|| format!("messageExpression `{m}` failed")),
                    None => s(val, "/message").unwrap_or("denied").to_string(),
                };
                return Admitted::Denied(msg);
            }
            Ok(v) => return Admitted::Denied(format!("validation is not a bool: {v:?}")),
            Err(e) => return Admitted::Denied(e),
        }
    }
    Admitted::Allowed
}

/// What a build's admission policy must allow: its key Secret (the name
/// the Role may `get`) and its Lease, in snapward's namespace.
struct AdmissionNames {
    vap: Value,
    namespace: String,
    username: String,
    key_secret: String,
    lease: String,
}

impl Build {
    fn admission(&self) -> AdmissionNames {
        let ctx = format!("deploy/{}", self.name);
        let vaps = self.of_kind("ValidatingAdmissionPolicy");
        assert_eq!(vaps.len(), 1, "{ctx}: one ValidatingAdmissionPolicy");
        let vap = vaps[0];
        let bindings = self.of_kind("ValidatingAdmissionPolicyBinding");
        assert_eq!(bindings.len(), 1, "{ctx}: one binding");
        assert_eq!(s(bindings[0], "/spec/policyName"), Some(name(vap)), "{ctx}");
        assert_eq!(
            str_list(bindings[0], "/spec/validationActions"),
            ["Deny"],
            "{ctx}"
        );
        assert!(
            bindings[0].pointer("/spec/paramRef").is_none(),
            "{ctx}: no params (a namespaced ConfigMap would let a namespace user widen the policy)"
        );
        assert_eq!(
            s(vap, "/spec/failurePolicy"),
            Some("Fail"),
            "{ctx}: never fail open"
        );
        let namespace = namespace(self.cronjob()).to_string();
        let key_secret = self
            .of_kind("Role")
            .into_iter()
            .flat_map(|r| arr(r, "/rules"))
            .find(|rule| {
                str_list(rule, "/resources") == ["secrets"] && str_list(rule, "/verbs") == ["get"]
            })
            .map(|rule| str_list(rule, "/resourceNames")[0].clone())
            .unwrap_or_else(|| panic!("{ctx}: the Role's get on the key Secret"));
        AdmissionNames {
            vap: vap.clone(),
            username: format!("system:serviceaccount:{namespace}:snapward"),
            namespace,
            key_secret,
            lease: format!("snapward-{}", self.policy().name()),
        }
    }
}

fn secret(name: &str, ty: Option<&str>, immutable: Option<bool>) -> Value {
    let mut s = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "openbao"},
        "data": {"unseal-key-0": "c2hhcmU="},
    });
    if let Some(t) = ty {
        s["type"] = t.into();
    }
    if let Some(i) = immutable {
        s["immutable"] = i.into();
    }
    s
}

fn lease(name: &str) -> Value {
    serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "openbao"},
        "spec": {"holderIdentity": "snapward-x", "leaseDurationSeconds": 60},
    })
}

/// Every build whose Role lets snapward create Secrets or Leases ships the
/// admission policy, and its names are the build's: the Role's key Secret,
/// the embedded policy's key Secret and Lease, snapward's ServiceAccount.
#[test]
fn admission_policy_names_the_builds_own_secret_and_lease() {
    for b in builds() {
        let ctx = format!("deploy/{}", b.name);
        let a = b.admission();
        if let Some(ks) = b
            .policy()
            .doc
            .spec
            .unseal_keys
            .as_ref()
            .and_then(|k| k.kubernetes_secret.as_ref())
        {
            assert_eq!(ks.name, a.key_secret, "{ctx}: the policy's key Secret");
            assert_eq!(
                ks.namespace.as_deref().unwrap_or(&a.namespace),
                a.namespace,
                "{ctx}"
            );
        }
        // The allowed names are admitted, and nothing with another name.
        let ok = secret(&a.key_secret, Some("Opaque"), Some(true));
        assert_eq!(
            admit(&a.vap, &a.username, &a.namespace, "", "secrets", &ok),
            Admitted::Allowed,
            "{ctx}"
        );
        let l = lease(&a.lease);
        assert_eq!(
            admit(
                &a.vap,
                &a.username,
                &a.namespace,
                "coordination.k8s.io",
                "leases",
                &l
            ),
            Admitted::Allowed,
            "{ctx}: the Lease snapward-<policy name> {}",
            a.lease
        );
    }
}

#[test]
fn admission_policy_allows_only_the_named_opaque_immutable_secret() {
    use Admitted::*;
    for b in builds() {
        let ctx = format!("deploy/{}", b.name);
        let a = b.admission();
        let key = a.key_secret.as_str();
        let sa = a.username.as_str();
        let ns = a.namespace.as_str();
        let check = |what: &str, user: &str, ns: &str, obj: Value, want: fn(&Admitted) -> bool| {
            let got = admit(&a.vap, user, ns, "", "secrets", &obj);
            assert!(want(&got), "{ctx}: {what}: {got:?}");
            got
        };
        check(
            "the key Secret",
            sa,
            ns,
            secret(key, Some("Opaque"), Some(true)),
            |g| *g == Allowed,
        );
        // The attack: a token Secret for another ServiceAccount, under the
        // key Secret's name (snapward could then `get` it).
        let mut token = secret(key, Some("kubernetes.io/service-account-token"), Some(true));
        token["metadata"]["annotations"] =
            serde_json::json!({"kubernetes.io/service-account.name": "openbao"});
        let got = check(
            "a service-account-token Secret",
            sa,
            ns,
            token.clone(),
            |g| matches!(g, Denied(_)),
        );
        assert_eq!(
            got,
            Denied("snapward's key Secret must be of type Opaque".into()),
            "{ctx}"
        );
        let got = check(
            "another name",
            sa,
            ns,
            secret("openbao-tls", Some("Opaque"), Some(true)),
            |g| matches!(g, Denied(_)),
        );
        assert_eq!(
            got,
            Denied(format!(
                "snapward may create only the Secret {key}, not openbao-tls"
            )),
            "{ctx}"
        );
        check(
            "a mutable Secret",
            sa,
            ns,
            secret(key, Some("Opaque"), Some(false)),
            |g| matches!(g, Denied(m) if m.contains("immutable")),
        );
        check(
            "immutable unset",
            sa,
            ns,
            secret(key, Some("Opaque"), None),
            |g| matches!(g, Denied(m) if m.contains("immutable")),
        );
        check(
            "type unset",
            sa,
            ns,
            secret(key, None, Some(true)),
            |g| matches!(g, Denied(m) if m.contains("Opaque")),
        );
        check(
            "a TLS Secret",
            sa,
            ns,
            secret(key, Some("kubernetes.io/tls"), Some(true)),
            |g| matches!(g, Denied(_)),
        );
        check(
            "another namespace",
            sa,
            "kube-system",
            secret(key, Some("Opaque"), Some(true)),
            |g| matches!(g, Denied(m) if m.contains("namespace")),
        );
        let mut generated = secret(key, Some("Opaque"), Some(true));
        generated["metadata"] = serde_json::json!({"generateName": "x-", "namespace": "openbao"});
        check("no name", sa, ns, generated, |g| matches!(g, Denied(_)));
        // Everyone else is untouched: another ServiceAccount, a human.
        for user in [
            format!("system:serviceaccount:{ns}:openbao"),
            "system:serviceaccount:other:snapward".to_string(),
            "alice@example.com".to_string(),
        ] {
            check("another user", &user, ns, token.clone(), |g| {
                *g == NotMatched
            });
        }
        // Other resources are not selected at all.
        assert_eq!(
            admit(
                &a.vap,
                sa,
                ns,
                "",
                "configmaps",
                &serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "x"}})
            ),
            NotMatched,
            "{ctx}"
        );
        assert_eq!(
            admit(
                &a.vap,
                sa,
                ns,
                "events.k8s.io",
                "events",
                &serde_json::json!({"kind": "Event", "metadata": {"name": "x"}})
            ),
            NotMatched,
            "{ctx}: Events stay creatable"
        );
    }
}

#[test]
fn admission_policy_allows_only_the_policys_lease() {
    for b in builds() {
        let ctx = format!("deploy/{}", b.name);
        let a = b.admission();
        let sa = a.username.as_str();
        let ns = a.namespace.as_str();
        let g = "coordination.k8s.io";
        assert_eq!(
            admit(&a.vap, sa, ns, g, "leases", &lease(&a.lease)),
            Admitted::Allowed,
            "{ctx}"
        );
        for other in [
            "kube-controller-manager",
            "snapward-other-policy",
            "openbao-leader",
        ] {
            assert_eq!(
                admit(&a.vap, sa, ns, g, "leases", &lease(other)),
                Admitted::Denied(format!(
                    "snapward may create only the Lease {}, not {other}",
                    a.lease
                )),
                "{ctx}"
            );
            assert_eq!(
                admit(
                    &a.vap,
                    "system:serviceaccount:openbao:openbao",
                    ns,
                    g,
                    "leases",
                    &lease(other)
                ),
                Admitted::NotMatched,
                "{ctx}: another ServiceAccount's Lease"
            );
        }
    }
}

/// The admission policy admits exactly what snapward's own code sends: the
/// Secret its key store creates at init and the Lease a run takes, as the
/// in-test API server received them.
#[tokio::test]
async fn admission_policy_admits_what_snapward_sends() {
    use snapward::backends::keys::{KeyStore, SecretKeyStore, StoredKeys};
    use snapward::backends::kube::LeaseLock;
    use snapward::secret::Secret;

    use crate::support::kube_api::FakeKube;

    for b in ["overlays/prod", "base"] {
        let a = build(b).admission();
        let fake = FakeKube::start().await;
        let ks = SecretKeyStore::new(
            fake.client(),
            &a.namespace,
            &a.key_secret,
            "unseal-key-",
            "root-token",
        );
        ks.create(&StoredKeys {
            keys: vec![Secret::new("share-0".to_string())],
            root_token: None,
            shape: None,
        })
        .await
        .unwrap();
        let sent = fake
            .requests_to("secrets")
            .into_iter()
            .find(|r| r.method == "POST")
            .and_then(|r| r.body)
            .expect("the key store POSTs the Secret");
        assert_eq!(
            admit(&a.vap, &a.username, &a.namespace, "", "secrets", &sent),
            Admitted::Allowed,
            "deploy/{b}: the Secret snapward creates: {sent}"
        );

        let guard = LeaseLock::acquire(
            &fake.client(),
            &a.namespace,
            &a.lease,
            "pod-a",
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap()
        .expect("free");
        let sent = fake
            .requests_to("leases.coordination.k8s.io")
            .into_iter()
            .find(|r| r.method == "POST")
            .and_then(|r| r.body)
            .expect("the Lease is created");
        assert_eq!(
            admit(
                &a.vap,
                &a.username,
                &a.namespace,
                "coordination.k8s.io",
                "leases",
                &sent
            ),
            Admitted::Allowed,
            "deploy/{b}: the Lease snapward creates: {sent}"
        );
        guard.release().await.unwrap();
    }
}

/// The evaluation above is real: the same requests against a policy with
/// one rule taken out, or with a rule's CEL changed, come out differently.
#[test]
fn admission_evaluation_sees_each_rule() {
    let a = build("overlays/prod").admission();
    let key = a.key_secret.as_str();
    let mutable = secret(key, Some("Opaque"), Some(false));
    let token = secret(key, Some("kubernetes.io/service-account-token"), Some(true));
    let run = |vap: &Value, obj: &Value| admit(vap, &a.username, &a.namespace, "", "secrets", obj);
    assert!(matches!(run(&a.vap, &mutable), Admitted::Denied(_)));
    assert!(matches!(run(&a.vap, &token), Admitted::Denied(_)));
    let without = |needle: &str| {
        let mut v = a.vap.clone();
        let vals = v["spec"]["validations"].as_array_mut().unwrap();
        let before = vals.len();
        vals.retain(|x| !s(x, "/expression").unwrap().contains(needle));
        assert_eq!(vals.len(), before - 1, "one validation mentions {needle}");
        v
    };
    assert_eq!(
        run(&without("object.immutable"), &mutable),
        Admitted::Allowed
    );
    assert_eq!(run(&without("object.type"), &token), Admitted::Allowed);
    // A broken expression denies (failurePolicy: Fail), it never admits.
    let mut broken = a.vap.clone();
    broken["spec"]["validations"][0]["expression"] = "object.no_such_field == 'x'".into();
    let ok = secret(key, Some("Opaque"), Some(true));
    assert!(
        matches!(run(&broken, &ok), Admitted::Denied(_)),
        "{:?}",
        run(&broken, &ok)
    );
}

/// `spec.restoreTest.baoBinary` is what an initContainer copied into an
/// emptyDir the snapward container mounts (components/restore-test), and
/// the throwaway server's data is not on the snapshot PVC.
#[test]
fn the_restore_test_binary_is_copied_in_by_an_init_container() {
    let mut seen = 0;
    for b in builds() {
        let p = b.policy();
        let Some(t) = &p.doc.spec.restore_test else {
            continue;
        };
        seen += 1;
        for (what, pod) in b.snapward_pods() {
            let ctx = format!("deploy/{} {what}", b.name);
            let (m, rel) = mount_holding(pod, &t.bao_binary)
                .unwrap_or_else(|| panic!("{ctx}: baoBinary {} is not mounted", t.bao_binary));
            assert!(m.volume.get("emptyDir").is_some(), "{ctx}: an emptyDir");
            let volume = s(m.volume, "/name").unwrap();
            let copier = arr(pod, "/initContainers")
                .iter()
                .find(|c| {
                    arr(c, "/volumeMounts")
                        .iter()
                        .any(|vm| s(vm, "/name") == Some(volume))
                })
                .unwrap_or_else(|| panic!("{ctx}: no initContainer fills {volume}"));
            let at = arr(copier, "/volumeMounts")
                .iter()
                .find(|vm| s(vm, "/name") == Some(volume))
                .and_then(|vm| s(vm, "/mountPath"))
                .unwrap();
            let command = str_list(copier, "/command");
            assert_eq!(
                command.last().map(String::as_str),
                Some(format!("{at}/{rel}").as_str()),
                "{ctx}: the initContainer copies bao to where the policy runs it"
            );
            let work = t.work_dir.as_deref().expect("workDir set in Kubernetes");
            let (wm, _) = mount_holding(pod, work).expect("workDir mounted");
            assert!(
                wm.volume.get("persistentVolumeClaim").is_none(),
                "{ctx}: the throwaway server's data is not on a PVC"
            );
        }
    }
    assert!(seen > 0, "an overlay rehearses restores");
}
