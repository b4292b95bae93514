//! Thin binary: parse the CLI, set up logs and diagnostics, map the outcome
//! to an exit code (see `snapward::exit::Exit`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use snapward::cli::{Cli, Command, LogFormat};
use snapward::commands;
use snapward::exit::Exit;

fn init_logs(format: Option<LogFormat>, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let level = if quiet { "warn" } else { "info" };
    let filter = EnvFilter::try_from_env("SNAPWARD_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let tty = std::io::stderr().is_terminal();
    let json = match format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Human) => false,
        None => !tty,
    };
    // Progress lines only where a human watches: a terminal, human logs,
    // not --quiet (src/progress.rs). Logs go through the progress writer
    // so that a log line never lands inside a bar.
    snapward::progress::install(tty && !json && !quiet);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(snapward::progress::LogWriter)
        // Colours on a terminal only: human logs piped to a file stay text.
        .with_ansi(tty)
        // On a broken stderr it would report the failed write with
        // `eprintln!`, which panics there: the log line is lost instead.
        .log_internal_errors(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Unseal keys, tokens and the keys that open sealed sums live in this
/// process's memory during `run`, `restore`, `verify` and `list`: no core
/// dump may write them to disk (soft and hard limit 0, so nothing the
/// process starts can raise it), and the process is not dumpable (another
/// process of the same user cannot ptrace it or read `/proc/<pid>/mem` or
/// `environ`; those files belong to root). Linux only; a failure is a
/// warning, never a reason not to run.
#[cfg(target_os = "linux")]
fn protect_memory() {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    let no_core = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(e) = setrlimit(Resource::Core, no_core) {
        tracing::warn!(error = %e, "cannot disable core dumps (RLIMIT_CORE); keys in memory could reach a core file");
    }
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        tracing::warn!(error = %e, "cannot make the process non-dumpable (PR_SET_DUMPABLE)");
    }
}

#[cfg(not(target_os = "linux"))]
fn protect_memory() {}

/// Large buffers (the local writer's 1 MiB chunks, the 1 MiB read buffers
/// of the checks) are mapped on their own and go back to the kernel when
/// freed. glibc's default raises its mmap threshold to the largest chunk
/// freed so far, after which those buffers are carved from the per-thread
/// heaps of the run's blocking threads and fragment there: peak RSS of a
/// streamed 528 MiB `run` 59–66 MiB by default, 51–53 MiB with the
/// threshold fixed at 512 KiB (README "Performance").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: sets one allocator parameter; called first in `main`, before
    // any other thread exists. A refusal (0) leaves the defaults: only
    // memory is at stake, never a result.
    let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 512 * 1024) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn block_on(f: impl std::future::Future<Output = Exit>) -> Exit {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            snapward::ewriteln!("error: cannot start the async runtime: {e}");
            Exit::Retry
        }
    }
}

fn main() -> ExitCode {
    tune_allocator();
    // Test builds only: arm the crash points named in FAILPOINTS.
    #[cfg(feature = "failpoints")]
    let _crash_points = snapward::crash::setup();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => Exit::Usage.into(),
            };
        }
    };
    init_logs(cli.log_format, cli.quiet);
    if matches!(
        cli.command,
        Command::Run { .. }
            | Command::Restore { .. }
            | Command::TestRestore { .. }
            | Command::Verify { .. }
            | Command::List { .. }
    ) {
        protect_memory();
    }
    let outcome: miette::Result<Exit> = match cli.command {
        Command::Lint {
            paths,
            format,
            deny_warnings,
            skip_non_policies,
        } => Ok(commands::lint::run(
            &paths,
            format,
            deny_warnings,
            skip_non_policies,
        )),
        Command::Plan {
            policy,
            scenario,
            format,
            inventory,
        } => commands::plan::run(&policy, scenario, format, inventory.as_deref()),
        Command::AlertRules {
            policies,
            format,
            namespace,
            runbook_base,
        } => Ok(commands::alert_rules::run(
            &policies,
            &commands::alert_rules::AlertOptions {
                format,
                namespace,
                runbook_base,
            },
        )),
        Command::Verify {
            files,
            format,
            keys,
            key_prefix,
            policy,
            kubeconfig,
            max_snapshot_bytes,
        } => {
            let source =
                commands::verify::KeySource::from_args(keys, key_prefix, policy, kubeconfig);
            Ok(block_on(commands::verify::run(
                &files,
                format,
                source,
                max_snapshot_bytes,
            )))
        }
        Command::Schema => Ok(commands::schema::run()),
        Command::Completions { shell } => Ok(commands::docs::completions(shell)),
        Command::Man => Ok(commands::docs::man()),
        Command::Run {
            source,
            dry_run,
            report,
            format,
        } => Ok(block_on(commands::run::run(commands::run::RunOptions {
            source,
            dry_run,
            report,
            format,
            explicit_restore: false,
            only_snapshot: None,
            allow_unauthenticated: false,
            rehearsal: false,
            quiet: false,
        }))),
        Command::Restore {
            source,
            snapshot,
            allow_unauthenticated,
            dry_run,
            report,
            format,
        } => Ok(block_on(commands::run::run(commands::run::RunOptions {
            source,
            dry_run,
            report,
            format,
            explicit_restore: true,
            only_snapshot: snapshot,
            allow_unauthenticated,
            rehearsal: false,
            quiet: false,
        }))),
        Command::TestRestore {
            source,
            snapshot,
            from,
            bao,
            report,
            format,
        } => Ok(block_on(commands::test_restore::run(
            commands::test_restore::TestRestoreOptions {
                source,
                snapshot,
                from,
                bao,
                report,
                format,
            },
        ))),
        Command::List {
            policy,
            format,
            kubeconfig,
            verify,
        } => Ok(block_on(commands::list::run(
            &policy,
            format,
            kubeconfig.as_deref(),
            verify,
        ))),
    };
    match outcome {
        Ok(exit) => exit.into(),
        Err(report) => {
            snapward::ewriteln!("{report:?}");
            Exit::Retry.into()
        }
    }
}
