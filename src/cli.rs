//! Command-line interface (clap derive). Doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::plan::Scenario;
use crate::plan::alerts::AlertFormat;
use crate::plan::render::Format as PlanFormat;

/// snapward keeps OpenBao/Vault raft snapshots safe off-cluster and restores
/// a wiped cluster by itself.
#[derive(Debug, Parser)]
#[command(name = "snapward", version, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr (default: human on a TTY, JSON otherwise).
    #[arg(long, global = true, value_enum, env = "SNAPWARD_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Quiet: no progress lines and only warnings and errors in the logs
    /// (SNAPWARD_LOG still sets the level); the summary is still printed.
    #[arg(short, long, global = true, env = "SNAPWARD_QUIET")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

/// Where `run`/`restore` read the policy, and how they reach Kubernetes.
#[derive(Debug, Clone, Args)]
pub struct PolicySource {
    /// The policy: a file, or a ConfigMap-mounted directory.
    #[arg(
        short = 'f',
        long = "file",
        env = "SNAPWARD_POLICY",
        required_unless_present = "policy_configmap",
        conflicts_with = "policy_configmap"
    )]
    pub policy: Option<PathBuf>,
    /// Read the policy from a ConfigMap through the Kubernetes API instead
    /// of a file. Without KEY the ConfigMap must hold exactly one *.yaml key.
    #[arg(long, value_name = "NAMESPACE/NAME[:KEY]")]
    pub policy_configmap: Option<String>,
    /// Kubeconfig for the Kubernetes API (default: $KUBECONFIG or
    /// ~/.kube/config if present, else the pod's service account).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check policy files (pre-commit): YAML, schema and semantic rules.
    ///
    /// Files may be plain policies or ConfigMap manifests embedding one;
    /// directories are searched for *.yaml/*.yml. Exit 0 clean, 1 problems
    /// found, 2 usage or I/O error.
    Lint {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: OutputFormat,
        /// Fail (exit 1) on warnings too.
        #[arg(long)]
        deny_warnings: bool,
        /// Skip named files that hold no policy instead of failing on them
        /// (for pre-commit, which passes every YAML file).
        #[arg(long)]
        skip_non_policies: bool,
    },
    /// Print the action DAG and what a state would make it do. Never
    /// touches the network.
    Plan {
        /// The policy: a file, or a ConfigMap-mounted directory.
        #[arg(short = 'f', long = "file", env = "SNAPWARD_POLICY")]
        policy: PathBuf,
        /// A hypothetical observed state; without it, the DAG and a table of
        /// every scenario's branch.
        #[arg(long, value_enum)]
        scenario: Option<Scenario>,
        #[arg(long, value_enum, default_value = "text")]
        format: PlanFormat,
        /// The JSON `snapward list --format json` printed (committed, or
        /// fetched by a CI job): the plan then shows, per store, what the
        /// policy's retention would keep and delete at the next run (not in
        /// the dot/mermaid pictures).
        #[arg(long, value_name = "FILE")]
        inventory: Option<PathBuf>,
    },
    /// Print Prometheus alerting rules for the policies' metrics: no
    /// success within twice the schedule's longest gap, no metrics at all,
    /// a guard refusal, a failed target upload, a failed or overdue
    /// restore test, a snapshot the stored keys do not authenticate.
    ///
    /// One rule group per policy (each needs spec.schedule). Exit 0, 1
    /// invalid policy, 2 usage or I/O error.
    AlertRules {
        /// A policy file, or a ConfigMap-mounted directory; repeat for more.
        #[arg(short = 'f', long = "file", required = true, value_name = "POLICY")]
        policies: Vec<PathBuf>,
        /// A Prometheus Operator PrometheusRule, or a plain rules file.
        #[arg(long, value_enum, default_value = "prometheus-rule")]
        format: AlertFormat,
        /// The PrometheusRule's namespace (default: the policy's
        /// metadata.namespace).
        #[arg(long, value_name = "NS")]
        namespace: Option<String>,
        /// Where each rule's runbook_url points: `<URL>#<alert name>`
        /// (e.g. your copy of the README on your Git host).
        #[arg(long, value_name = "URL", default_value = crate::plan::alerts::DEFAULT_RUNBOOK_BASE)]
        runbook_base: String,
    },
    /// Verify snapshot archives offline and print their identity; with the
    /// unseal key shares (--keys or -f), also authenticate them.
    ///
    /// Authentic: the sealed SHA256SUMS opens under the unseal key these
    /// shares combine to and matches SHA256SUMS, so the snapshot was sealed
    /// by that cluster and meta.json and state.bin are untampered. Keys are
    /// read, never printed.
    ///
    /// Exit 0 when all are valid (and, with keys, all authentic), 1 when any
    /// is invalid (the failing check is named) or, with keys, any is not
    /// authentic, 2 when a file, the policy or the key store cannot be read
    /// or used (then every snapshot is "not checkable").
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: OutputFormat,
        /// Authenticate with the key shares in this directory (snapward's
        /// file key store: <key-prefix>0, <key-prefix>1, ...).
        #[arg(long, value_name = "DIR", conflicts_with = "policy")]
        keys: Option<PathBuf>,
        /// The file name prefix of the shares in --keys.
        #[arg(
            long,
            value_name = "PREFIX",
            default_value = "unseal-key-",
            requires = "keys"
        )]
        key_prefix: String,
        /// Authenticate with the key store of this policy (spec.unsealKeys):
        /// a file, or a ConfigMap-mounted directory.
        #[arg(short = 'f', long = "file", value_name = "POLICY")]
        policy: Option<PathBuf>,
        /// Kubeconfig for a Kubernetes Secret key store (default: $KUBECONFIG
        /// or ~/.kube/config if present, else the pod's service account).
        #[arg(long, value_name = "PATH", requires = "policy")]
        kubeconfig: Option<PathBuf>,
        /// The most a snapshot may inflate to (bytes, or with Ki, Mi, Gi,
        /// Ti). Default: the policy's spec.maxSnapshotBytes with -f, else
        /// 64Gi. Verification also stops at 1032 times the bytes read.
        #[arg(long, value_name = "SIZE")]
        max_snapshot_bytes: Option<String>,
    },
    /// Run the policy: observe, guard-check, then back up, initialise or
    /// restore as the guard decides (the Job's entry point).
    ///
    /// Exit 0 done, 1 invalid policy, 2 usage/I/O, 3 refused by a guard (a
    /// human must act), 4 failed (retry), 5 busy (another run holds the lock).
    Run {
        #[command(flatten)]
        source: PolicySource,
        /// Read everything, write nothing: writes become "would ..." items.
        #[arg(long)]
        dry_run: bool,
        /// Also write the JSON run report to this file.
        #[arg(long, env = "SNAPWARD_REPORT")]
        report: Option<PathBuf>,
        /// stdout: a human summary or the JSON report.
        #[arg(long, value_enum, default_value = "human")]
        format: OutputFormat,
    },
    /// Restore explicitly (restore mode `manual`): the guard still has to
    /// see a wiped cluster, stored keys and a valid snapshot.
    Restore {
        #[command(flatten)]
        source: PolicySource,
        /// Restore this snapshot (file name) instead of the newest valid one.
        #[arg(long)]
        snapshot: Option<String>,
        /// Restore a snapshot the stored keys do not authenticate (its
        /// SHA256SUMS.sealed does not open under them). Only when you know
        /// the keys will unseal it anyway: otherwise node 0 ends up
        /// initialised with a barrier nothing opens.
        #[arg(long)]
        allow_unauthenticated: bool,
        #[arg(long)]
        dry_run: bool,
        #[arg(long, env = "SNAPWARD_REPORT")]
        report: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: OutputFormat,
    },
    /// List every store's snapshots with identity, validity, and what
    /// retention would keep or delete (and why).
    ///
    /// When the policy's key store can be read and holds unseal key shares,
    /// each local snapshot also shows its authenticity (as `verify` does;
    /// this reads each valid local snapshot a second time). Remote
    /// snapshots are not authenticated: that needs their bytes.
    List {
        #[arg(short = 'f', long = "file", env = "SNAPWARD_POLICY")]
        policy: PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        format: OutputFormat,
        /// Kubeconfig for a Kubernetes Secret key store (default: $KUBECONFIG
        /// or ~/.kube/config if present, else the pod's service account).
        #[arg(long, value_name = "PATH")]
        kubeconfig: Option<PathBuf>,
        /// Read and verify every snapshot file of the local store and the
        /// filesystem targets, ignoring the verification cache
        /// (`.snapward-verified.json`) that lets runs skip unchanged files.
        #[arg(long)]
        verify: bool,
    },
    /// Rehearse a restore on a throwaway OpenBao: fetch the stored copy
    /// (by default from the last restore source, the farthest one),
    /// restore it onto a `bao server` started on 127.0.0.1 for this, unseal
    /// it with the stored keys, read the canary, then stop and remove the
    /// server. The cluster is never contacted. Exit 0 when it restored.
    TestRestore {
        #[command(flatten)]
        source: PolicySource,
        /// Test this snapshot (file name) instead of the newest valid one.
        #[arg(long)]
        snapshot: Option<String>,
        /// The store to test from (overrides spec.restoreTest.from).
        #[arg(long, value_name = "STORE")]
        from: Option<String>,
        /// The `bao` binary (overrides spec.restoreTest.baoBinary).
        #[arg(long, value_name = "PATH")]
        bao: Option<PathBuf>,
        #[arg(long, env = "SNAPWARD_REPORT")]
        report: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: OutputFormat,
    },
    /// Print the policy JSON Schema.
    Schema,
    /// Print a shell completion script: `source <(snapward completions bash)`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `snapward man | man -l -`.
    Man,
}

// The plan stage names no CLI crate: its enums become clap values here.
impl ValueEnum for Scenario {
    fn value_variants<'a>() -> &'a [Self] {
        Scenario::all()
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()).help(self.help()))
    }
}

impl ValueEnum for PlanFormat {
    fn value_variants<'a>() -> &'a [Self] {
        PlanFormat::all()
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

impl ValueEnum for AlertFormat {
    fn value_variants<'a>() -> &'a [Self] {
        AlertFormat::all()
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}
