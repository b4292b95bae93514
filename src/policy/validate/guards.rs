//! `spec.guards`: the ones that cannot be switched off, and
//! `maxRestoreAge`.
//!
//! Stage: validate. Pure.

use jiff::SignedDuration;

use crate::diag::{Code, Finding};
use crate::policy::model::Guards;
use crate::retention;

/// `maxRestoreAge` (restic units). `Some(None)`: no limit; `None`: an error
/// was reported.
pub(super) fn max_restore_age(
    g: &Guards,
    out: &mut Vec<Finding>,
) -> Option<Option<SignedDuration>> {
    let Some(s) = &g.max_restore_age else {
        return Some(None);
    };
    match retention::parse_duration(s) {
        Ok(d) => Some(Some(d)),
        Err(e) => {
            out.push(
                Finding::error(
                    Code::BadDuration,
                    "/spec/guards/maxRestoreAge",
                    e.to_string(),
                )
                .help("use restic units: y, m (months), w, d, h — e.g. 7d"),
            );
            None
        }
    }
}

/// The guards marked "always" must stay on.
pub(super) fn always_on(g: &Guards, out: &mut Vec<Finding>) {
    for (on, field, what) in [
        (
            g.require_confirmed_upload,
            "requireConfirmedUpload",
            "prune only after a confirmed upload",
        ),
        (
            g.copy_only_mirror,
            "copyOnlyMirror",
            "mirroring never deletes",
        ),
        (
            g.refuse_on_unknown_node,
            "refuseOnUnknownNode",
            "no destructive step while a node's state is unknown",
        ),
        (
            g.refuse_init_over_keys,
            "refuseInitOverKeys",
            "never initialise over surviving unseal keys",
        ),
    ] {
        if !on {
            out.push(
                Finding::error(
                    Code::GuardAlways,
                    format!("/spec/guards/{field}"),
                    format!("guard `{field}` ({what}) cannot be switched off"),
                )
                .help("remove the line; this guard is always on"),
            );
        }
    }
}
