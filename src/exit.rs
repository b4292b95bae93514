//! Exit codes: one enum, documented in the README. Stable.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exit {
    /// Done.
    Success = 0,
    /// The policy (lint) or snapshot (verify) has problems.
    Invalid = 1,
    /// Bad usage, or a file could not be read.
    Usage = 2,
    /// Refused by a guard: nothing destructive was done; a human must act.
    Refused = 3,
    /// Failed: nothing unsafe was done; retrying later is reasonable.
    Retry = 4,
    /// Another run of the same policy holds the lock.
    Busy = 5,
    /// The backup is done, but its restore test (`spec.restoreTest`)
    /// failed: the stored copy did not restore on a throwaway server.
    RestoreTestFailed = 6,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}
