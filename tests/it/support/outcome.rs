//! What one run of the `snapward` binary did — exit, output, the
//! `--report` JSON — and the assertions tests make on it. Every harness
//! (`work`, `drill`, `kube_run`, `signals`) reads reports through this
//! type.
//!
//! An action id the report does not hold always fails the test, naming
//! the id and the ids the report has: a renamed or mistyped id never
//! passes an assertion about it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

use super::work::PREFIX;

/// One run of the binary.
#[derive(Debug)]
pub struct Outcome {
    /// The arguments it was given.
    pub args: Vec<String>,
    /// The exit code; `None` when a signal ended the process.
    pub code: Option<i32>,
    /// The signal that ended the process (SIGABRT = 6 for a crash point).
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The `--report` file (`Value::Null` if none was written).
    pub report: Value,
}

/// The `--report` file at `path`, `Value::Null` if there is none.
pub fn read_report(path: &Path) -> Value {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .unwrap_or_else(|e| panic!("the report {} is not JSON: {e}", path.display())),
        Err(_) => Value::Null,
    }
}

/// What `snapward list --format json` printed: store → `(name, valid)`
/// of each snapshot it lists, in its order.
pub fn listed(stdout: &[u8]) -> BTreeMap<String, Vec<(String, bool)>> {
    let v: Value = serde_json::from_slice(stdout).expect("list prints JSON");
    v.as_array()
        .expect("a list of stores")
        .iter()
        .map(|s| {
            let rows = s["snapshots"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    (
                        r["name"].as_str().unwrap_or_default().to_owned(),
                        r["valid"] == true,
                    )
                })
                .collect();
            (s["store"].as_str().unwrap_or_default().to_owned(), rows)
        })
        .collect()
}

impl Outcome {
    /// The outcome of a finished process run with `args`, whose report (if
    /// any) is at `report`.
    pub fn new<S: AsRef<std::ffi::OsStr>>(args: &[S], out: &Output, report: &Path) -> Self {
        Self {
            args: args
                .iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect(),
            code: out.status.code(),
            signal: out.status.signal(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            report: read_report(report),
        }
    }

    /// Enough to understand a failed assertion: the invocation, the exit,
    /// the decision, every action, the tails of stdout and stderr.
    pub fn context(&self) -> String {
        let mut s = format!(
            "snapward {} → exit {:?} (signal {:?})\nsummary: {}\ndecision: {}\n",
            self.args.join(" "),
            self.code,
            self.signal,
            self.report["summary"],
            self.report["decision"]
        );
        for a in self.actions() {
            s.push_str(&format!(
                "  {:<18} {:<14} {}\n",
                a["id"].as_str().unwrap_or("?"),
                a["status"].as_str().unwrap_or("?"),
                a["reason"].as_str().unwrap_or("")
            ));
            for i in a["items"].as_array().into_iter().flatten() {
                s.push_str(&format!(
                    "  {:<33} - {}\n",
                    "",
                    i["text"].as_str().unwrap_or("")
                ));
            }
        }
        let tail = |text: &str| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        if !self.stdout.trim().is_empty() {
            s.push_str("--- stdout tail ---\n");
            s.push_str(&tail(&self.stdout));
            s.push('\n');
        }
        s.push_str("--- stderr tail ---\n");
        s.push_str(&tail(&self.stderr));
        s
    }

    /// The exit code, and the report says the same.
    #[track_caller]
    pub fn expect_exit(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code\n{}",
            self.context()
        );
        assert_eq!(
            self.report["exitCode"],
            code,
            "the report's exitCode differs from the process exit code\n{}",
            self.context()
        );
        self
    }

    /// The exit code of a run that writes no report (a busy run touches
    /// nothing; a usage error stops before the run).
    #[track_caller]
    pub fn expect_exit_without_report(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code\n{}",
            self.context()
        );
        assert_eq!(
            self.report,
            Value::Null,
            "this run must write no report\n{}",
            self.context()
        );
        self
    }

    /// Every action of the report, in order.
    pub fn actions(&self) -> &[Value] {
        self.report["actions"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The ids of every action of the report, in order.
    pub fn ids(&self) -> Vec<&str> {
        self.actions()
            .iter()
            .map(|a| a["id"].as_str().unwrap_or("?"))
            .collect()
    }

    /// The action `id`; fails if the report has none.
    #[track_caller]
    pub fn action(&self, id: &str) -> &Value {
        self.actions()
            .iter()
            .find(|x| x["id"] == id)
            .unwrap_or_else(|| {
                panic!(
                    "no action `{id}` in the report (its actions: {:?})\n{}",
                    self.ids(),
                    self.context()
                )
            })
    }

    #[track_caller]
    pub fn status(&self, id: &str) -> &str {
        self.action(id)["status"].as_str().unwrap_or_default()
    }

    #[track_caller]
    pub fn reason(&self, id: &str) -> &str {
        self.action(id)["reason"].as_str().unwrap_or_default()
    }

    /// Asserts an action's status (`succeeded`, `nothing-to-do`, `skipped`,
    /// `failed`).
    #[track_caller]
    pub fn expect_status(&self, id: &str, status: &str) -> &Self {
        assert_eq!(
            self.status(id),
            status,
            "action `{id}` has an unexpected status\n{}",
            self.context()
        );
        self
    }

    /// Asserts that each of these actions is in the report and did not run
    /// (`skipped`).
    #[track_caller]
    pub fn expect_skipped(&self, ids: &[&str]) -> &Self {
        for id in ids {
            assert_eq!(
                self.status(id),
                "skipped",
                "action `{id}` must not have run\n{}",
                self.context()
            );
        }
        self
    }

    /// Asserts that none of these actions is in the report: the policy
    /// leaves their branch out (e.g. `init` when `init.allowed` is false).
    #[track_caller]
    pub fn expect_not_planned(&self, ids: &[&str]) -> &Self {
        for id in ids {
            assert!(
                !self.ids().contains(id),
                "action `{id}` must not be in the plan of this policy\n{}",
                self.context()
            );
        }
        self
    }

    /// Ids of the actions that ran (anything but `skipped`).
    pub fn ran(&self) -> Vec<String> {
        self.actions()
            .iter()
            .filter(|a| a["status"] != "skipped")
            .filter_map(|a| a["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Only observe and guard-check ran: the run changed nothing.
    #[track_caller]
    pub fn expect_only_observed(&self, what: &str) -> &Self {
        assert_eq!(
            self.ran(),
            vec!["observe".to_string(), "guard-check".to_string()],
            "{what}: a refused run must not run any other action\n{}",
            self.context()
        );
        self
    }

    pub fn branch(&self) -> &str {
        self.report["decision"]["branch"].as_str().unwrap_or("")
    }

    pub fn rule(&self) -> &str {
        self.report["decision"]["rule"].as_str().unwrap_or("")
    }

    pub fn explanation(&self) -> &str {
        self.report["decision"]["explanation"]
            .as_str()
            .unwrap_or("")
    }

    pub fn summary(&self) -> &str {
        self.report["summary"].as_str().unwrap_or("")
    }

    #[track_caller]
    pub fn expect_branch(&self, branch: &str) -> &Self {
        assert_eq!(
            self.branch(),
            branch,
            "unexpected guard branch\n{}",
            self.context()
        );
        self
    }

    /// Snapshot names in `id`'s items of `kind` (`uploaded`, `deleted`,
    /// `would-delete`, ...: the report's typed items, not their wording).
    /// A kind the report never writes fails the test, so a renamed kind
    /// cannot make an assertion vacuous.
    #[track_caller]
    pub fn named(&self, id: &str, kind: &str) -> BTreeSet<String> {
        const KINDS: &[&str] = &[
            "uploaded",
            "stream-committed",
            "would-upload",
            "not-uploaded",
            "conflict",
            "deleted",
            "would-delete",
            "retained-by-lock",
            "kept-unmirrored",
            "not-counted",
        ];
        assert!(
            KINDS.contains(&kind),
            "`{kind}` is not an item kind with a name ({KINDS:?})"
        );
        self.action(id)["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["kind"] == kind)
            .map(|i| {
                i["name"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a `{kind}` item without a name: {i}"))
                    .to_string()
            })
            .collect()
    }

    /// `id`'s items as the report writes them (`kind`, fields, `text`).
    #[track_caller]
    pub fn typed_items(&self, id: &str) -> Vec<Value> {
        self.action(id)["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `id`'s items of `kind` (a kind no item has makes an empty list: pair
    /// it with a positive assertion).
    #[track_caller]
    pub fn items_of(&self, id: &str, kind: &str) -> Vec<Value> {
        self.typed_items(id)
            .into_iter()
            .filter(|i| i["kind"] == kind)
            .collect()
    }

    /// The name of this run's snapshot (the snapshot action's `streamed`
    /// item).
    #[track_caller]
    pub fn snapshot_name(&self) -> String {
        let streamed = self.items_of("snapshot", "streamed");
        let name = streamed
            .first()
            .and_then(|i| i["name"].as_str())
            .unwrap_or_else(|| {
                panic!(
                    "no `streamed` item in the snapshot action\n{}",
                    self.context()
                )
            });
        assert!(
            name.starts_with(PREFIX) && name.ends_with(".snap"),
            "{name}"
        );
        name.to_string()
    }

    /// Everything the run printed or wrote.
    pub fn everything(&self) -> String {
        format!("{}\n{}\n{}", self.stdout, self.stderr, self.report)
    }
}
