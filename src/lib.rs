//! snapward: keeps OpenBao/Vault raft snapshots safe off-cluster and restores
//! a wiped cluster by itself.
//!
//! Stages, one module each: `policy` (load → validate → `ValidPolicy`),
//! `plan` (compile to a DAG, apply the `guard` table, render), `retention`,
//! `snapshot` (archive verification and identity), `backends` (OpenBao and
//! the snapshot targets behind narrow traits), `commands` (the CLI).

/// `eprintln!` that never panics: on a closed or broken stderr the message
/// is lost, the exit code is not (std's `eprintln!` panics there, exit 101).
#[macro_export]
macro_rules! ewriteln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr().lock(), $($arg)*);
    }};
}

/// `eprint!` that never panics (see [`ewriteln!`]).
#[macro_export]
macro_rules! ewrite {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::write!(::std::io::stderr().lock(), $($arg)*);
    }};
}

pub mod backends;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod crash;
pub mod diag;
pub mod exec;
pub mod exit;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod retention;
pub mod secret;
pub mod snapshot;
pub mod wiring;

#[cfg(test)]
mod architecture;
