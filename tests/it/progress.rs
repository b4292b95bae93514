//! Progress lines on a terminal (issue 15 item 1), against a real OpenBao,
//! a real S3 server (s3s-fs) and a filesystem target: the real binary runs
//! under a real pseudo-terminal (`script` from util-linux) and the capture
//! must show a line with a byte count and a rate for the snapshot and for
//! each upload, followed by the human summary; the same run with stderr
//! piped, with `--quiet` and with `--log-format json` must show no progress
//! and no terminal control (no carriage return that is not a line end, no
//! cursor movement).
//!
//! Needs `eval "$(scripts/test-env.sh)"` and `script` (util-linux).

use std::ffi::OsString;
use std::time::Duration;

use serde_json::json;

use crate::support::drill::Drill;
use crate::support::outcome::Outcome;
use crate::support::s3::S3Server;
use crate::support::work::{Bao, Work};

/// `script -qfec "stty cols 120 rows 40; exec snapward ARGS..." /dev/null`:
/// the binary with stdin, stdout and stderr on a fresh pseudo-terminal of
/// 120 columns (TERM=xterm); script copies what the terminal shows to its
/// stdout. The environment is scrubbed as `support::cmd` does.
fn under_pty(args: &[OsString]) -> tokio::process::Command {
    let quote = |a: &std::ffi::OsStr| format!("'{}'", a.to_string_lossy().replace('\'', r"'\''"));
    let mut line = format!(
        "stty cols 120 rows 40; exec {}",
        quote(env!("CARGO_BIN_EXE_snapward").as_ref())
    );
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut cmd = tokio::process::Command::new("script");
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"SNAPWARD_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env_remove("KUBECONFIG")
        .env_remove("FAILPOINTS")
        .env("TERM", "xterm")
        .args(["-qfec", &line, "/dev/null"])
        .kill_on_drop(true);
    cmd
}

/// Terminal control a plain log must not hold: a carriage return that does
/// not end a line (a pty turns `\n` into `\r\n`), and any escape sequence
/// that is not a colour (SGR, `ESC[...m`).
fn control(text: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let b = text.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'\r' && b.get(i + 1) != Some(&b'\n') {
            bad.push(format!("bare CR at {i}"));
        }
        if c == 0x1b {
            let seq: String = text[i + 1..].chars().take(12).collect();
            let is_sgr = seq.starts_with('[')
                && seq[1..]
                    .chars()
                    .find(|c| !(c.is_ascii_digit() || *c == ';'))
                    == Some('m');
            if !is_sgr {
                bad.push(format!("ESC{seq:?} at {i}"));
            }
        }
    }
    bad
}

/// Columns of the test terminal (`stty cols` in [`under_pty`]).
const COLS: usize = 120;

/// The lines a terminal of [`COLS`] columns shows at the end: a small
/// emulator of what the capture uses — printable characters (wrapping at
/// the last column), `\r`, `\n`, `ESC[K`/`ESC[2K` (erase the line),
/// `ESC[nA`/`ESC[nB` (cursor up/down); colours are ignored.
fn screen_lines(text: &str) -> Vec<String> {
    let mut rows: Vec<Vec<char>> = vec![Vec::new()];
    let (mut row, mut col) = (0usize, 0usize);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => col = 0,
            '\n' => row += 1,
            '\x1b' => {
                if chars.peek() != Some(&'[') {
                    continue;
                }
                chars.next();
                let mut arg = String::new();
                let mut cmd = ' ';
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        cmd = c;
                        break;
                    }
                    arg.push(c);
                }
                let n: usize = arg.parse().unwrap_or(1);
                match cmd {
                    'K' if rows.len() > row => rows[row].clear(),
                    'A' => row = row.saturating_sub(n),
                    'B' => row += n,
                    _ => {}
                }
            }
            c => {
                if col == COLS {
                    row += 1;
                    col = 0;
                }
                while rows.len() <= row {
                    rows.push(Vec::new());
                }
                let line = &mut rows[row];
                while line.len() < col {
                    line.push(' ');
                }
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
        }
        while rows.len() <= row {
            rows.push(Vec::new());
        }
    }
    rows.into_iter()
        .map(|l| l.into_iter().collect::<String>().trim_end().to_string())
        .collect()
}

/// The finished line of a transfer `label`: `<label>  <bytes> in <s>s (<rate>/s)`.
fn finished_line<'a>(lines: &'a [String], label: &str) -> Option<&'a String> {
    lines.iter().find(|l| {
        l.starts_with(label)
            && l.contains(" in ")
            && l.contains("B/s)")
            && (l.contains("KiB") || l.contains("MiB"))
    })
}

const LABELS: &[&str] = &["snapshot openbao-", "upload offsite", "upload nfs"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_on_a_terminal_shows_progress_lines_and_never_elsewhere() {
    let (bao, s3) = tokio::join!(Bao::single(), async { S3Server::s3s_fs() });
    s3.create_bucket("progress", false).await;
    // A few MiB of incompressible data: the snapshot and uploads take a
    // moment, the S3 upload goes in parts (threshold 16 MiB: below it one
    // PutObject, reported at once).
    bao.fill(20).await;
    let work = Work::with("snapward-progress-", Duration::from_secs(240));
    let token = work.file("token", &bao.token);
    let local = work.path("snapshots");
    let mut p = work.policy(
        "progress",
        bao.nodes(),
        &token,
        &local,
        json!({"keepLast": 10}),
        "20s",
    );
    p["spec"]["targets"] = json!([
        {
            "name": "offsite",
            "s3": serde_json::to_value(s3.target_config("progress", "p/")).expect("json"),
            "retention": {"keepLast": 10},
        },
        {
            "name": "nfs",
            "filesystem": {"path": work.path("nfs").display().to_string()},
            "retention": {"keepLast": 10},
        },
    ]);
    let policy = work.write_policy("policy.yaml", &p);

    // 1. On a terminal: the progress lines, then the summary.
    let (args, report) = work.run_args(&policy, &[], "human").await;
    let out = work.output(under_pty(&args)).await;
    let run = work.finish(&args, &out, &report);
    run.expect_exit(0);
    let shown = &run.stdout;
    let lines = screen_lines(shown);
    let mut last = 0;
    for label in LABELS {
        let Some(line) = finished_line(&lines, label) else {
            panic!(
                "no finished progress line for `{label}` (bytes and rate) on the terminal:\n{}\n--- raw ---\n{shown:?}",
                lines.join("\n")
            );
        };
        let at = lines.iter().position(|l| l == line).expect("line");
        last = last.max(at);
    }
    // Live bars were drawn too (redrawn in place), not only the end lines.
    assert!(
        shown.contains("\x1b[") && control(shown).iter().any(|c| c.starts_with("ESC")),
        "no live progress bar was drawn:\n{shown:?}"
    );
    // The summary keeps its shape and comes after every progress line.
    let summary = lines
        .iter()
        .position(|l| l == "done")
        .unwrap_or_else(|| panic!("no summary line `done`:\n{}", lines.join("\n")));
    assert!(
        summary > last,
        "the summary must follow the progress lines:\n{}",
        lines.join("\n")
    );
    for id in ["snapshot", "upload:offsite", "upload:nfs"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(id) && l.contains("succeeded")),
            "summary row `{id}` missing:\n{}",
            lines.join("\n")
        );
    }

    // 2. stderr piped (no terminal), human logs: no progress, no control.
    let plain = work.run_logged(&policy, &[], "human", None).await;
    plain.expect_exit(0);
    no_progress("stderr piped, human logs", &plain, false);

    // 3. On a terminal with --quiet: no progress, no info logs; summary kept.
    let (mut args, report) = work.run_args(&policy, &[], "human").await;
    args.insert(0, "--quiet".into());
    let out = work.output(under_pty(&args)).await;
    let quiet = work.finish(&args, &out, &report);
    quiet.expect_exit(0);
    no_progress("a terminal with --quiet", &quiet, true);
    assert!(
        screen_lines(&quiet.stdout).iter().any(|l| l == "done"),
        "--quiet keeps the summary:\n{}",
        quiet.stdout
    );
    assert!(
        !quiet.stdout.contains("uploading snapshot"),
        "--quiet hides info logs:\n{}",
        quiet.stdout
    );

    // 4. On a terminal with JSON logs: no progress, no control at all.
    let (args, report) = work.run_args(&policy, &[], "json").await;
    let out = work.output(under_pty(&args)).await;
    let json_logs = work.finish(&args, &out, &report);
    json_logs.expect_exit(0);
    no_progress("a terminal with --log-format json", &json_logs, true);
    assert!(
        !json_logs.stdout.contains('\x1b'),
        "JSON logs on a terminal hold no escape sequence:\n{:?}",
        json_logs.stdout
    );
}

/// No progress text and no terminal control in what `run` printed.
#[track_caller]
fn no_progress(what: &str, run: &Outcome, on_pty: bool) {
    let all = format!("{}{}", run.stdout, run.stderr);
    let bad = control(&all);
    assert!(
        bad.is_empty(),
        "{what}: terminal control {bad:?} in\n{all:?}"
    );
    if !on_pty {
        assert!(
            !all.contains('\x1b'),
            "{what}: escape sequences in\n{all:?}"
        );
        assert!(!all.contains('\r'), "{what}: carriage returns in\n{all:?}");
    }
    let lines = screen_lines(&all);
    for label in LABELS {
        assert!(
            finished_line(&lines, label).is_none(),
            "{what}: a progress line for `{label}`:\n{all}"
        );
    }
    assert!(!all.contains("B/s"), "{what}: a transfer rate in\n{all}");
}

/// A rehearsal (`test-restore`) on a terminal shows the fetch from the
/// store and the restore onto the throwaway server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_on_a_terminal_shows_the_fetch_and_the_restore() {
    let mut d = Drill::single(true).await;
    let (keys, snaps) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    d.snapward_init(&policy, &keys).await;
    d.write_marker("m1").await;
    d.backup(&policy, &snaps).await;
    // restore_test.rs: the canary the rehearsal reads.
    let text = std::fs::read_to_string(&policy).expect("read policy");
    let text = text.replacen(
        "  restore:\n",
        &format!(
            "  restore:\n    canary: {{path: secret/data/drill/m1, tokenFile: {}/root-token}}\n",
            keys.display()
        ),
        1,
    );
    let rehearsal = d.path("rehearsal.yaml");
    std::fs::write(&rehearsal, text).expect("write policy");
    let args: Vec<OsString> = vec![
        "test-restore".into(),
        "-f".into(),
        rehearsal.into(),
        "--from".into(),
        "s3".into(),
        "--bao".into(),
        crate::support::bao::bao_binary().into(),
    ];
    let mut cmd = under_pty(&args);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn script");
    let out = crate::support::cmd::finish(child, Duration::from_secs(300)).await;
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "test-restore:\n{shown}");
    let lines = screen_lines(&shown);
    for label in ["fetch s3", "restore "] {
        assert!(
            finished_line(&lines, label).is_some(),
            "no finished progress line for `{label}`:\n{}",
            lines.join("\n")
        );
    }
}
