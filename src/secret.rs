//! A redacting secret type for tokens, unseal keys and S3 secrets.
//!
//! [`Secret`] holds the value in memory only, zeroised on drop (including
//! every clone), and prints `[redacted]` through `Debug`, `Display` and
//! `Serialize`, so it can sit inside structs that are logged, planned or
//! reported without leaking (invariant 9, README "Guarantees"). The value is reached
//! only through [`Secret::expose`], which makes every use greppable.
//!
//! Stage: shared by the backends. Must never write a secret anywhere; the
//! only I/O is [`read_secret_file`], which reads one.

use std::fmt;
use std::io;
use std::path::Path;

use zeroize::Zeroizing;

/// What every secret prints as.
pub const REDACTED: &str = "[redacted]";

/// A secret string: zeroised on drop, `[redacted]` when printed.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps `value`. The `String`'s buffer is moved in, not copied.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret value. Callers must not log, print or persist it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// `url` with its password (`user:password@`) replaced by `[redacted]`,
/// for printing. Anything that does not parse as a URL is returned as is.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some(REDACTED));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Only the scheme, host and port of `url` (`https://hc-ping.com`), for
/// printing a URL whose path or query may be a secret (a ping UUID, a
/// webhook token). Anything that does not parse gives `[redacted]`.
pub fn url_origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.host_str().is_some() => u.origin().ascii_serialization(),
        _ => REDACTED.to_string(),
    }
}

/// Reads a secret from a file (a mounted Kubernetes Secret, a token file),
/// trimming surrounding whitespace (the trailing newline most tools write).
///
/// Errors: the file's I/O error; `InvalidData` when the content is not UTF-8
/// or is empty after trimming (an empty token is a misconfiguration, never a
/// credential). The raw bytes read are zeroised too.
pub fn read_secret_file(path: impl AsRef<Path>) -> Result<Secret, io::Error> {
    let path = path.as_ref();
    let raw = Zeroizing::new(std::fs::read(path)?);
    let text = std::str::from_utf8(&raw).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not UTF-8 text", path.display()),
        )
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(Secret::new(trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("s.topsecrettoken");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(
            format!("{:#?}", Some(s.clone())),
            "Some(\n    [redacted],\n)"
        );
        assert_eq!(s.expose(), "s.topsecrettoken");
    }

    #[test]
    fn serialize_redacts() {
        #[derive(serde::Serialize)]
        struct Holder {
            token: Secret,
        }
        let json = serde_json::to_string(&Holder {
            token: Secret::new("hunter2"),
        })
        .unwrap();
        assert_eq!(json, r#"{"token":"[redacted]"}"#);
    }

    #[test]
    fn urls_lose_their_password() {
        let r = redact_url("https://push:hunter2@pushgateway.example:9091/x");
        assert!(!r.contains("hunter2"), "{r}");
        assert!(
            r.contains("push:") && r.contains("pushgateway.example:9091/x"),
            "{r}"
        );
        assert_eq!(redact_url("http://a.example/"), "http://a.example/");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn reads_and_trims_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "  s.abc123\n\n").unwrap();
        assert_eq!(read_secret_file(&p).unwrap().expose(), "s.abc123");

        std::fs::write(&p, " \n").unwrap();
        let e = read_secret_file(&p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);

        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        assert_eq!(
            read_secret_file(&p).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );

        let missing = read_secret_file(dir.path().join("nope")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }
}
