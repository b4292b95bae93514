//! examples/ci/: the GitHub Actions workflow and the GitLab CI jobs parse,
//! have the jobs and steps the README describes, and the scripts that run
//! snapward work: each is run with bash (as both CI systems do, with
//! `-eo pipefail`) in a copy of a policy repository — snapward's example
//! policies under policies/, the committed inventory fixture as
//! inventory/production-3-node.json — with the built binary as `snapward`
//! on PATH. The install and the comment-posting steps need the network and
//! a forge; they are checked for what they must contain, not run.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::root;

fn load(file: &str) -> Value {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// A policy repository: policies/*.yaml (snapward's examples) and an
/// inventory for one of them.
fn policy_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for e in std::fs::read_dir(root().join("policies")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            std::fs::copy(&p, policies.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::create_dir_all(dir.path().join("inventory")).unwrap();
    std::fs::copy(
        root().join("fixtures/inventory/production-3-node.json"),
        dir.path().join("inventory/production-3-node.json"),
    )
    .unwrap();
    dir
}

/// A directory holding `snapward` (the built binary) for PATH.
fn bin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_snapward"), dir.path().join("snapward"))
        .unwrap();
    dir
}

struct Ran {
    code: i32,
    stderr: String,
}

fn run_script(script: &str, repo: &Path, bin: &Path, env: &[(&str, PathBuf)]) -> Ran {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("bash");
    c.args(["-eo", "pipefail", "-c", script])
        .current_dir(repo)
        .env("PATH", path);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    Ran {
        code: o.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// The subcommand of every line of a script that runs snapward.
fn subcommands(script: &str) -> Vec<String> {
    script
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("snapward "))
        .filter_map(|rest| rest.split_whitespace().next().map(str::to_string))
        .collect()
}

/// What the plan comment must say for the example policies.
fn check_plan_md(md: &str) {
    assert!(
        md.starts_with("<!-- snapward-plan -->\n## snapward plan\n"),
        "{md}"
    );
    for name in ["openbao-local", "openbao-prod"] {
        assert!(
            md.contains(&format!("### snapward plan: `{name}`")),
            "{name}: {md}"
        );
    }
    // production-3-node has an inventory: what retention would delete.
    assert!(md.contains("#### Retention at the next run"), "{md}");
    assert!(
        md.contains("- **r2**: keeps 20, would delete 26 snapshots"),
        "{md}"
    );
    // local-ci has none: said so.
    assert!(
        md.contains("_No inventory/local-ci.json: what retention would delete is not shown._"),
        "{md}"
    );
}

fn steps(job: &Value) -> Vec<&Value> {
    job["steps"].as_array().expect("steps").iter().collect()
}

fn step<'a>(job: &'a Value, name: &str) -> &'a Value {
    steps(job)
        .into_iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name:?}"))
}

#[test]
fn the_github_workflow_lints_and_posts_the_plan_of_every_policy() {
    let wf = load("examples/ci/github-actions.yml");
    assert_eq!(wf["name"], "snapward");
    assert!(wf["on"]["pull_request"].is_null() || wf["on"]["pull_request"].is_object());
    assert!(wf["on"].as_object().unwrap().contains_key("pull_request"));
    let jobs = wf["jobs"].as_object().unwrap();
    let (lint, plan) = (&jobs["lint"], &jobs["plan"]);
    assert_eq!(plan["needs"], "lint");
    assert_eq!(plan["if"], "github.event_name == 'pull_request'");
    assert_eq!(plan["permissions"]["pull-requests"], "write");
    for job in [lint, plan] {
        assert_eq!(steps(job)[0]["uses"], "actions/checkout@v4");
        let install = step(job, "Install snapward")["run"].as_str().unwrap();
        assert!(install.contains("$GITHUB_PATH"), "{install}");
    }
    let post = step(plan, "Post the plan on the pull request");
    let post_run = post["run"].as_str().unwrap();
    // The comment is found by the marker plan.md starts with, else created.
    for want in [
        "startswith(\"<!-- snapward-plan -->\")",
        "-F body=@plan.md",
        "gh pr comment \"$PR_NUMBER\" --body-file plan.md",
    ] {
        assert!(post_run.contains(want), "{want}: {post_run}");
    }
    assert!(
        post["env"]["GH_TOKEN"]
            .as_str()
            .unwrap()
            .contains("github.token")
    );

    let repo = policy_repo();
    let bin = bin_dir();
    let summary = repo.path().join("summary.md");
    let github_env = [("GITHUB_STEP_SUMMARY", summary.clone())];
    let mut ran = Vec::new();
    for (job, name) in [(lint, "Lint every policy"), (plan, "Plan every policy")] {
        let script = step(job, name)["run"].as_str().unwrap();
        // No ${{ }} in a script that runs snapward (no injection via PR titles).
        assert!(!script.contains("${{"), "{name}: {script}");
        ran.extend(subcommands(script));
        let r = run_script(script, repo.path(), bin.path(), &github_env);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
    }
    assert_eq!(ran, ["lint", "plan", "plan"]);
    let md = std::fs::read_to_string(repo.path().join("plan.md")).unwrap();
    check_plan_md(&md);
    assert_eq!(std::fs::read_to_string(&summary).unwrap(), md);
}

#[test]
fn the_gitlab_jobs_lint_and_post_the_plan_of_every_policy() {
    let ci = load("examples/ci/gitlab-ci.yml");
    assert_eq!(ci["stages"], serde_json::json!(["lint", "plan"]));
    let template = &ci[".snapward"];
    let install = template["before_script"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(install.contains("sha256sum --check"), "{install}");
    let (lint, plan) = (&ci["snapward-lint"], &ci["snapward-plan"]);
    for job in [lint, plan] {
        assert_eq!(job["extends"], ".snapward");
    }
    assert_eq!(plan["needs"], serde_json::json!(["snapward-lint"]));
    assert_eq!(
        plan["rules"][0]["if"],
        "$CI_PIPELINE_SOURCE == \"merge_request_event\""
    );
    let script = |job: &Value| -> Vec<String> {
        job["script"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect()
    };
    let note = script(plan).pop().unwrap();
    for want in [
        "PRIVATE-TOKEN: $SNAPWARD_NOTE_TOKEN",
        "body@plan.md",
        "/merge_requests/$CI_MERGE_REQUEST_IID/notes",
    ] {
        assert!(note.contains(want), "{want}: {note}");
    }
    assert_eq!(plan["artifacts"]["paths"], serde_json::json!(["plan.md"]));

    let repo = policy_repo();
    let bin = bin_dir();
    let mut ran = Vec::new();
    for job in [lint, plan] {
        for line in script(job).iter().filter(|l| l.contains("snapward ")) {
            ran.extend(subcommands(line));
            let r = run_script(line, repo.path(), bin.path(), &[]);
            assert_eq!(r.code, 0, "{line}: {}", r.stderr);
        }
    }
    assert_eq!(ran, ["lint", "plan", "plan"]);
    check_plan_md(&std::fs::read_to_string(repo.path().join("plan.md")).unwrap());
}

/// The scripts fail the job when snapward fails: a broken policy in a PR
/// stops the lint step (bash -e), it does not post a plan.
#[test]
fn a_broken_policy_fails_the_lint_step() {
    let wf = load("examples/ci/github-actions.yml");
    let script = step(&wf["jobs"]["lint"], "Lint every policy")["run"]
        .as_str()
        .unwrap()
        .to_string();
    let repo = policy_repo();
    std::fs::copy(
        root().join("fixtures/policies/invalid/duplicate-target.yaml"),
        repo.path().join("policies/broken.yaml"),
    )
    .unwrap();
    let bin = bin_dir();
    let r = run_script(&script, repo.path(), bin.path(), &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
}
