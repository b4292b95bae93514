//! `spec.maxSnapshotBytes`: the most a snapshot may inflate to.
//!
//! Stage: validate. Pure.

use crate::diag::{Code, Finding};

/// The default: 64 GiB (the same as `snapshot::DEFAULT_MAX_SNAPSHOT_BYTES`,
/// which `policy` does not import; a unit test keeps them equal).
pub(crate) const DEFAULT: u64 = 64 << 30;

/// `None`: an error was reported.
pub(super) fn max_snapshot_bytes(value: Option<&str>, out: &mut Vec<Finding>) -> Option<u64> {
    let Some(v) = value else {
        return Some(DEFAULT);
    };
    match parse_bytes(v) {
        Some(n) if n > 0 => Some(n),
        _ => {
            out.push(
                Finding::error(
                    Code::InvalidValue,
                    "/spec/maxSnapshotBytes",
                    format!("{v:?} is not a positive size that fits in 64 bits"),
                )
                .help("write bytes, or a number with Ki, Mi, Gi or Ti, e.g. 64Gi (the default)"),
            );
            None
        }
    }
}

/// `123`, `4Ki`, `64Gi`, … in bytes; `None` when malformed or too large.
pub fn parse_bytes(v: &str) -> Option<u64> {
    let (digits, shift) = [("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40)]
        .iter()
        .find_map(|(suffix, shift)| v.strip_suffix(suffix).map(|d| (d, *shift)))
        .unwrap_or((v, 0));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("123"), Some(123));
        assert_eq!(parse_bytes("4Ki"), Some(4096));
        assert_eq!(parse_bytes("64Gi"), Some(DEFAULT));
        assert_eq!(parse_bytes("2Ti"), Some(2 << 40));
        for bad in ["", "Gi", "1.5Gi", "-1", "1GB", "99999999999Ti", " 1"] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
        assert_eq!(DEFAULT, crate::snapshot::DEFAULT_MAX_SNAPSHOT_BYTES);
    }
}
