//! The binary end to end: exit codes, stdout/stderr split, plan output
//! pinned per scenario.

use std::process::Output;

use crate::support::root;

fn snapward(args: &[&str]) -> Output {
    crate::support::cmd::snapward()
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("run snapward")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

#[test]
fn lint_exit_codes() {
    assert_eq!(code(&snapward(&["lint", "policies"])), 0);
    assert_eq!(
        code(&snapward(&[
            "lint",
            "fixtures/policies/invalid/duplicate-target.yaml"
        ])),
        1
    );
    // warnings alone pass, unless denied
    assert_eq!(
        code(&snapward(&[
            "lint",
            "fixtures/policies/invalid/file-mode-unreadable.yaml"
        ])),
        0
    );
    assert_eq!(
        code(&snapward(&[
            "lint",
            "--deny-warnings",
            "fixtures/policies/invalid/file-mode-unreadable.yaml"
        ])),
        1
    );
    assert_eq!(code(&snapward(&["lint", "does/not/exist.yaml"])), 2);
    assert_eq!(code(&snapward(&["lint"])), 2);
}

#[test]
fn lint_json_has_file_line_column_code_severity_message() {
    let o = snapward(&[
        "lint",
        "--format",
        "json",
        "fixtures/policies/invalid/unknown-source.yaml",
    ]);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let d = &v[0];
    assert_eq!(d["code"], "policy::unknown-source");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["line"], 12);
    assert_eq!(d["column"], 22);
    assert!(d["file"].as_str().unwrap().ends_with("unknown-source.yaml"));
    assert!(d["message"].as_str().unwrap().contains("offsite"));
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let o = snapward(&["schema"]);
    assert_eq!(code(&o), 0);
    let committed = std::fs::read(root().join("schemas/snapshot-policy.schema.json")).unwrap();
    assert_eq!(o.stdout, committed);
}

#[test]
fn plan_of_each_example_and_scenario_is_pinned() {
    for policy in ["local-ci", "production-3-node"] {
        let file = format!("policies/{policy}.yaml");
        let o = snapward(&["plan", "-f", &file]);
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
        insta::assert_snapshot!(
            format!("plan-{policy}-overview"),
            String::from_utf8_lossy(&o.stdout)
        );
        for scenario in [
            "healthy",
            "sealed",
            "data-loss",
            "pvc-lost",
            "fresh",
            "keys-lost",
            "no-snapshot",
            "partition",
        ] {
            let o = snapward(&["plan", "-f", &file, "--scenario", scenario]);
            assert_eq!(code(&o), 0);
            insta::assert_snapshot!(
                format!("plan-{policy}-{scenario}"),
                String::from_utf8_lossy(&o.stdout)
            );
        }
    }
}

#[test]
fn plan_formats_are_deterministic_and_well_formed() {
    for format in ["text", "markdown", "json", "dot", "mermaid"] {
        let a = snapward(&[
            "plan",
            "-f",
            "policies/production-3-node.yaml",
            "--scenario",
            "pvc-lost",
            "--format",
            format,
        ]);
        let b = snapward(&[
            "plan",
            "-f",
            "policies/production-3-node.yaml",
            "--scenario",
            "pvc-lost",
            "--format",
            format,
        ]);
        assert_eq!(code(&a), 0);
        assert_eq!(a.stdout, b.stdout, "{format} output differs between runs");
        insta::assert_snapshot!(
            format!("plan-format-{format}"),
            String::from_utf8_lossy(&a.stdout)
        );
    }
    let j = snapward(&[
        "plan",
        "-f",
        "policies/production-3-node.yaml",
        "--scenario",
        "pvc-lost",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(v["decision"]["branch"], "restore");
    assert_eq!(v["observation"]["newestSnapshotIn"], "nfs");
}

#[test]
fn plan_of_an_invalid_policy_fails_with_exit_1() {
    let o = snapward(&[
        "plan",
        "-f",
        "fixtures/policies/invalid/duplicate-target.yaml",
    ]);
    assert_eq!(code(&o), 1);
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("duplicate-target"));
}

#[test]
fn plan_reads_a_configmap_mounted_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("policies/local-ci.yaml"),
        dir.path().join("policy.yaml"),
    )
    .unwrap();
    // Kubernetes' atomic-writer bookkeeping entries are skipped.
    std::fs::create_dir(dir.path().join("..2026_11_28")).unwrap();
    let o = snapward(&["plan", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
}

/// `snapward completions bash` sources cleanly in a real bash and
/// completes a subcommand (`te` → `test-restore`) and a flag of it.
#[test]
fn bash_completion_sources_and_completes_a_subcommand() {
    let o = snapward(&["completions", "bash"]);
    assert_eq!(code(&o), 0);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("snapward.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    // Called as bash calls it: `_snapward COMMAND CUR PREV`.
    let complete = |words: &str, cword: usize| {
        let w: Vec<&str> = words.split(' ').collect();
        let (cur, prev) = (w[cword], w[cword - 1]);
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -e; source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; _snapward snapward {cur} {prev}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let subs = complete("snapward te", 1);
    assert_eq!(subs.trim(), "test-restore", "{subs}");
    let flags = complete("snapward test-restore --fr", 2);
    assert!(flags.lines().any(|l| l == "--from"), "{flags}");
}

/// `snapward man` renders one page per subcommand (roff), with the help
/// texts of the clap definitions.
#[test]
fn man_page_has_a_page_per_subcommand() {
    let o = snapward(&["man"]);
    assert_eq!(code(&o), 0);
    let text = String::from_utf8(o.stdout).unwrap();
    for page in [
        "snapward",
        "snapward-run",
        "snapward-test-restore",
        "snapward-verify",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!(".TH {page} 1"))),
            "no page {page}"
        );
    }
    assert!(text.contains("throwaway OpenBao"), "the help text is in it");
}
