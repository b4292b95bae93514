//! A throwaway OpenBao for restore tests: one `bao server` child process on
//! 127.0.0.1 with ephemeral ports, its raft data in a fresh directory under
//! a work root. Stopped (SIGKILL) and removed on drop — after success,
//! failure, a time-out or SIGTERM. A run killed outright leaves the
//! directory and its `server.pid`: [`clean_leftovers`] at the start of the
//! next rehearsal stops that process (only if it is a `bao server` whose
//! command line names that directory) and removes the directory.
//!
//! Must never: reuse a leftover's data, bind anything but loopback, or keep
//! a key on disk (the server writes only its raft data; the keys stay in
//! snapward's memory).

use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A running throwaway server. Dropping it stops the process and removes
/// its directory.
#[derive(Debug)]
pub struct Throwaway {
    child: Option<std::process::Child>,
    dir: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub address: url::Url,
    log: PathBuf,
}

/// Why the throwaway server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ThrowawayError {
    #[error("restore test: cannot prepare {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("restore test: cannot start {}: {source}", bin.display())]
    Spawn {
        bin: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "restore test: the throwaway server exited ({status}) before it listened; its log ends:\n{log}"
    )]
    Exited { status: String, log: String },
    #[error("restore test: the throwaway server did not listen within {}s; its log ends:\n{log}", waited.as_secs())]
    NotListening { waited: Duration, log: String },
}

const PID_FILE: &str = "server.pid";

/// Prefix of each rehearsal's directory under the work root.
const DIR_PREFIX: &str = "bao-";

impl Throwaway {
    /// Start `bin server` with a config of its own under a new directory
    /// in `root`; `seal` is an optional `seal "…" { … }` stanza (an
    /// auto-unseal cluster's snapshot needs its seal). Waits until the API
    /// port accepts connections.
    pub async fn start(
        bin: &Path,
        root: &Path,
        seal: Option<&str>,
        wait: Duration,
    ) -> Result<Self, ThrowawayError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ThrowawayError::Io { path, source }
        };
        fs::create_dir_all(root).map_err(io(root))?;
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir_in(root)
            .map_err(io(root))?
            .keep();
        let raft = dir.join("raft");
        fs::create_dir_all(&raft).map_err(io(&raft))?;
        let (api, cluster) = free_ports().map_err(io(root))?;
        let config = format!(
            "storage \"raft\" {{\n  path = \"{raft}\"\n  node_id = \"restore-test\"\n  performance_multiplier = 1\n}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{api}\"\n  cluster_address = \"127.0.0.1:{cluster}\"\n  tls_disable = true\n}}\n\
             api_addr = \"http://127.0.0.1:{api}\"\ncluster_addr = \"https://127.0.0.1:{cluster}\"\n\
             disable_mlock = true\nui = false\n{seal}\n",
            raft = raft.display(),
            seal = seal.unwrap_or(""),
        );
        let cfg = dir.join("config.hcl");
        fs::write(&cfg, config).map_err(io(&cfg))?;
        let log = dir.join("server.log");
        let out = fs::File::create(&log).map_err(io(&log))?;
        let err = out.try_clone().map_err(io(&log))?;
        let address = url::Url::parse(&format!("http://127.0.0.1:{api}/"))
            .map_err(|e| io(root)(io::Error::other(e)))?;
        let child = std::process::Command::new(bin)
            .arg("server")
            .arg(format!("-config={}", cfg.display()))
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| ThrowawayError::Spawn {
                bin: bin.to_path_buf(),
                source,
            })?;
        let pid = dir.join(PID_FILE);
        let me = Self {
            child: Some(child),
            address,
            dir,
            log,
        };
        fs::write(&pid, me.pid().to_string()).map_err(io(&pid))?;
        let mut me = me;
        let end = tokio::time::Instant::now() + wait;
        while tokio::net::TcpStream::connect(("127.0.0.1", api))
            .await
            .is_err()
        {
            // A server that exited (a bad seal stanza, a wrong binary)
            // will not listen: say so now, with its log.
            if let Some(Ok(Some(status))) = me.child.as_mut().map(std::process::Child::try_wait) {
                return Err(ThrowawayError::Exited {
                    status: status.to_string(),
                    log: me.log_tail(20),
                });
            }
            if tokio::time::Instant::now() >= end {
                return Err(ThrowawayError::NotListening {
                    waited: wait,
                    log: me.log_tail(20),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(me)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last `lines` lines of the server's log, for a report. The
    /// server does not log keys or tokens; anything shaped like a token
    /// (`s.…`, `hvs.…`, `hvb.…`, `hvr.…`) is redacted all the same.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all.get(all.len().saturating_sub(lines)..)
            .unwrap_or_default()
            .iter()
            .map(|l| redact_tokens(l))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `line` with every token-shaped word replaced by `[redacted]`.
fn redact_tokens(line: &str) -> String {
    let token_like = |w: &str| {
        let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '.');
        ["s.", "hvs.", "hvb.", "hvr."].iter().any(|p| {
            w.strip_prefix(p).is_some_and(|rest| {
                rest.len() >= 20 && rest.chars().all(|c| c.is_ascii_alphanumeric())
            })
        })
    };
    line.split(' ')
        .map(|w| if token_like(w) { "[redacted]" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Two free loopback ports (API, cluster), held until both are chosen.
fn free_ports() -> io::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// Stop and remove what a killed rehearsal left under `root`: for each
/// `bao-*` directory, the process in its `server.pid` is killed if it is
/// still a `bao server` started with that directory's config, then the
/// directory is removed. What was cleaned, as lines for the report.
pub fn clean_leftovers(root: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut cleaned = Vec::new();
    for e in entries.flatten() {
        let dir = e.path();
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(DIR_PREFIX) || !dir.is_dir() {
            continue;
        }
        let pid = fs::read_to_string(dir.join(PID_FILE))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok());
        let mut what = format!("removed the leftover {}", dir.display());
        if let Some(pid) = pid
            && is_our_server(pid, &dir)
            && kill(pid)
        {
            what.push_str(&format!(" and stopped its server (pid {pid})"));
        }
        if fs::remove_dir_all(&dir).is_ok() {
            cleaned.push(what);
        }
    }
    cleaned
}

/// Is `pid` a `bao server` whose config lies in `dir`? (A pid may have
/// been reused by an unrelated process since.)
fn is_our_server(pid: u32, dir: &Path) -> bool {
    let Ok(cmd) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<String> = cmd
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let cfg = format!("-config={}", dir.join("config.hcl").display());
    args.iter().any(|a| a == "server") && args.contains(&cfg)
}

fn kill(pid: u32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok()
}

#[cfg(test)]
mod tests {
    use super::redact_tokens;

    #[test]
    fn token_shaped_words_never_reach_a_report() {
        let line = "core: root token s.AbCdEfGhIjKlMnOpQrStUvWx issued; hvs.CAESIJ0123456789abcdefghijkl; ok";
        let r = redact_tokens(line);
        assert!(!r.contains("AbCdEf") && !r.contains("CAESIJ"), "{r}");
        assert!(r.starts_with("core: root token [redacted] issued;"), "{r}");
        let plain = "storage.raft: snapshot restored: index=42 s.short";
        assert_eq!(redact_tokens(plain), plain);
    }
}
