//! `snapward verify FILE... [--keys DIR | -f POLICY]`: offline verification;
//! prints each identity and, given the unseal key shares, each snapshot's
//! authenticity (`snapshot::auth`). One pass per file: the archive checks
//! and the bytes of the sums come from the same read.
//!
//! Also the key handling `list` shares: read a key store once, combine its
//! shares once ([`UnsealKey`]), judge a snapshot ([`Checked`]). Never prints,
//! logs or keeps key material: the shares are dropped (and wiped) once
//! combined, the key is wiped on drop, and every message names a store by
//! its location only.

use std::path::{Path, PathBuf};

use serde::Serialize;
use zeroize::Zeroizing;

use crate::backends::keys::{FileKeyStore, KeyStore, KeyStoreError};
use crate::cli::OutputFormat;
use crate::exit::Exit;
use crate::policy::{self, KeyLocation, ValidPolicy};
use crate::secret::Secret;
use crate::snapshot::auth::{self, AuthError, Authenticity};
use crate::snapshot::{self, Identity, Limits, SealedSums, VerifyError};

/// Where `verify` reads the key shares, if anywhere.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// No keys: verification only (the output of a plain `verify`).
    None,
    /// `--keys DIR [--key-prefix P]`: a directory in the file key store's
    /// layout.
    Dir { dir: PathBuf, key_prefix: String },
    /// `-f POLICY [--kubeconfig K]`: the policy's `spec.unsealKeys`.
    Policy {
        path: PathBuf,
        kubeconfig: Option<PathBuf>,
    },
}

impl KeySource {
    /// From `verify`'s flags (clap makes `--keys` and `-f` exclusive).
    pub fn from_args(
        keys: Option<PathBuf>,
        key_prefix: String,
        policy: Option<PathBuf>,
        kubeconfig: Option<PathBuf>,
    ) -> Self {
        match (keys, policy) {
            (Some(dir), _) => KeySource::Dir { dir, key_prefix },
            (None, Some(path)) => KeySource::Policy { path, kubeconfig },
            (None, None) => KeySource::None,
        }
    }
}

/// The unseal key combined from a store's shares: once per command, not
/// once per snapshot. Wiped on drop; deliberately neither `Debug` nor
/// `Clone`.
pub(crate) struct UnsealKey(Zeroizing<Vec<u8>>);

impl UnsealKey {
    /// The keys `exec::trust` authenticates stored claims with.
    pub(crate) fn trust_keys(&self) -> crate::exec::trust::Keys {
        crate::exec::trust::Keys::new(Zeroizing::new(self.0.to_vec()))
    }

    /// Decodes the stored shares (hex or base64) and combines them; a key
    /// that is no AES key length is refused here, before any snapshot.
    fn combine(shares: &[Secret]) -> Result<Self, AuthError> {
        let key = auth::key_from_shares(shares)?;
        if !matches!(key.len(), 16 | 24 | 32) {
            return Err(AuthError::KeyLength { len: key.len() });
        }
        Ok(Self(key))
    }

    /// The verdict on a verified snapshot's sealed sums.
    fn judge(&self, s: &SealedSums) -> Checked {
        match auth::authenticate_with_key(&s.sealed, &s.sums, &self.0) {
            Ok(a) => Checked::from(a),
            // A malformed SHA256SUMS.sealed: nothing to open. The snapshot
            // is not proven authentic (OpenBao refuses it too).
            Err(e) => Checked::not_checkable(e.to_string()),
        }
    }

    /// Verifies and authenticates the file at `path` in one pass.
    pub(crate) fn check_file(&self, path: &Path) -> Result<(Identity, Checked), VerifyError> {
        self.check_file_with(path, Limits::default())
    }

    /// [`UnsealKey::check_file`] within `limits`.
    fn check_file_with(
        &self,
        path: &Path,
        limits: Limits,
    ) -> Result<(Identity, Checked), VerifyError> {
        let s = snapshot::sealed_sums_file_with(path, limits)?;
        let checked = self.judge(&s);
        Ok((s.identity, checked))
    }
}

/// The verdict on one snapshot, as printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Verdict {
    Authentic,
    OtherKeys,
    SumsMismatch,
    NotCheckable,
}

/// A [`Verdict`] and, when not checkable, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    pub verdict: Verdict,
    pub reason: Option<String>,
}

impl From<Authenticity> for Checked {
    fn from(a: Authenticity) -> Self {
        let verdict = match a {
            Authenticity::Authentic => Verdict::Authentic,
            Authenticity::OtherKeys => Verdict::OtherKeys,
            Authenticity::SumsMismatch => Verdict::SumsMismatch,
        };
        Checked {
            verdict,
            reason: None,
        }
    }
}

impl Checked {
    pub(crate) fn not_checkable(reason: String) -> Self {
        Checked {
            verdict: Verdict::NotCheckable,
            reason: Some(reason),
        }
    }

    pub(crate) fn is_authentic(&self) -> bool {
        self.verdict == Verdict::Authentic
    }

    /// `verify`'s human words.
    fn human(&self) -> String {
        match self.verdict {
            Verdict::Authentic => "authentic".into(),
            Verdict::OtherKeys => "sealed with other keys".into(),
            Verdict::SumsMismatch => "tampered: SHA256SUMS differs from the sealed sums".into(),
            Verdict::NotCheckable => format!(
                "not checkable: {}",
                self.reason.as_deref().unwrap_or("no keys")
            ),
        }
    }
}

/// Why the keys cannot authenticate anything. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeysUnusable {
    #[error(
        "the key store {location} is missing or empty: no key shares ({key_prefix}0, {key_prefix}1, ...) and no root token"
    )]
    Missing {
        location: String,
        key_prefix: String,
    },
    #[error(
        "the key store {location} holds no unseal key shares ({key_prefix}0, {key_prefix}1, ...); an auto-unseal cluster's store holds only its root token, and its snapshots cannot be authenticated offline"
    )]
    NoShares {
        location: String,
        key_prefix: String,
    },
    #[error(
        "the key store {location} holds the recovery keys of an auto-unseal cluster (key-shape says \"seal\":\"auto\"): they cannot open a snapshot's sealed sums; the server checks a snapshot under its seal when it is restored (the verified endpoint refuses one of another seal key)"
    )]
    Recovery { location: String },
    #[error(transparent)]
    Unreadable(KeyStoreError),
    #[error("the key shares in {location} cannot be used: {source}")]
    Shares {
        location: String,
        #[source]
        source: AuthError,
    },
    #[error("no Kubernetes API for the key Secret: {0}")]
    NoKube(#[source] crate::backends::kube::KubeError),
    #[error("cannot read the key directory {}: {source}", dir.display())]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the policy {} names no key store (spec.unsealKeys)", path.display())]
    NoStore { path: PathBuf },
}

/// Reads `store` once and combines its shares. `Err`: why these keys cannot
/// authenticate anything (no key material in it).
pub(crate) async fn store_key(
    store: &dyn KeyStore,
    key_prefix: &str,
) -> Result<UnsealKey, KeysUnusable> {
    let location = store.location();
    let key_prefix = key_prefix.to_string();
    let stored = match store.read().await {
        Ok(s) => s,
        Err(KeyStoreError::Empty { .. }) => {
            // Nothing at all (a wrong place or prefix?), or other entries
            // only: what an auto-unseal cluster's store holds.
            return Err(if matches!(store.probe().await, Ok(p) if !p.any) {
                KeysUnusable::Missing {
                    location,
                    key_prefix,
                }
            } else {
                KeysUnusable::NoShares {
                    location,
                    key_prefix,
                }
            });
        }
        Err(e) => return Err(KeysUnusable::Unreadable(e)),
    };
    if stored.shape.and_then(|s| s.seal) == Some(crate::cluster::SealKind::Auto) {
        return Err(KeysUnusable::Recovery { location });
    }
    UnsealKey::combine(&stored.keys).map_err(|source| KeysUnusable::Shares { location, source })
}

/// The policy's key store, read once (`None`: the policy names none). A
/// Kubernetes Secret store gets a client from `kubeconfig` (or the default
/// configuration) and the policy's namespace, else the client's.
pub(crate) async fn policy_key(
    p: &ValidPolicy,
    kubeconfig: Option<&Path>,
) -> Option<Result<UnsealKey, KeysUnusable>> {
    let settings = p.unseal_keys.as_ref()?;
    let client = match &settings.location {
        KeyLocation::Files { .. } => None,
        KeyLocation::KubernetesSecret { .. } => {
            match crate::backends::kube::client(kubeconfig).await {
                Ok(c) => Some(c),
                Err(e) => return Some(Err(KeysUnusable::NoKube(e))),
            }
        }
    };
    let namespace = client.as_ref().map(|c| {
        p.doc
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| c.default_namespace().to_string())
    });
    let kube = client.as_ref().zip(namespace.as_deref());
    let store = crate::wiring::key_store(p, kube)?;
    Some(store_key(store.as_ref(), &settings.key_prefix).await)
}

/// `--keys DIR`: the directory must exist (a mistyped path is an error,
/// not "no keys").
async fn dir_key(dir: &Path, key_prefix: &str) -> Result<UnsealKey, KeysUnusable> {
    if let Err(source) = std::fs::read_dir(dir) {
        return Err(KeysUnusable::Dir {
            dir: dir.to_path_buf(),
            source,
        });
    }
    let store = FileKeyStore {
        dir: dir.to_path_buf(),
        key_prefix: key_prefix.to_string(),
        root_token_key: "root-token".into(),
    };
    store_key(&store, key_prefix).await
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row<'a> {
    file: String,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<&'a Identity>,
    /// Only when keys were asked for, on a valid snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    authenticity: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The worse of two exit codes: a usage/I/O problem over an invalid
/// snapshot over success.
fn worse(a: Exit, b: Exit) -> Exit {
    let rank = |e: Exit| match e {
        Exit::Success => 0,
        Exit::Invalid => 1,
        _ => 2,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// One file: its identity and, with keys, the verdict.
type Outcome = Result<(Identity, Option<Checked>), VerifyError>;

/// `max_snapshot_bytes`: `--max-snapshot-bytes`; without it the policy's
/// `spec.maxSnapshotBytes` (with `-f`), else the default.
pub async fn run(
    files: &[PathBuf],
    format: OutputFormat,
    source: KeySource,
    max_snapshot_bytes: Option<String>,
) -> Exit {
    let max = match max_snapshot_bytes
        .as_deref()
        .map(policy::validate::parse_bytes)
    {
        None => None,
        Some(Some(n)) if n > 0 => Some(n),
        Some(_) => {
            crate::ewriteln!(
                "error: --max-snapshot-bytes {:?} is not a positive size: write bytes, or a number with Ki, Mi, Gi or Ti, e.g. 64Gi",
                max_snapshot_bytes.unwrap_or_default()
            );
            return Exit::Usage;
        }
    };
    let mut limits = Limits::default();
    let keys: Option<Result<UnsealKey, KeysUnusable>> = match &source {
        KeySource::None => None,
        KeySource::Dir { dir, key_prefix } => Some(dir_key(dir, key_prefix).await),
        KeySource::Policy { path, kubeconfig } => {
            let p = match policy::load_policy(path) {
                Ok(p) => p,
                Err(e) => {
                    crate::ewriteln!("{:?}", miette::Report::new(e));
                    return Exit::Usage;
                }
            };
            limits.max_bytes = p.max_snapshot_bytes;
            Some(
                policy_key(&p, kubeconfig.as_deref())
                    .await
                    .unwrap_or_else(|| Err(KeysUnusable::NoStore { path: path.clone() })),
            )
        }
    };
    if let Some(max) = max {
        limits.max_bytes = max;
    }
    let mut exit = Exit::Success;
    if let Some(Err(reason)) = &keys {
        crate::ewriteln!("error: cannot authenticate: {reason}");
        exit = Exit::Usage;
    }
    let results: Vec<(&PathBuf, Outcome)> = files
        .iter()
        .map(|f| {
            let outcome = match &keys {
                None => snapshot::verify_file_with(f, limits).map(|id| (id, None)),
                Some(Ok(key)) => key.check_file_with(f, limits).map(|(id, c)| (id, Some(c))),
                Some(Err(reason)) => snapshot::verify_file_with(f, limits)
                    .map(|id| (id, Some(Checked::not_checkable(reason.to_string())))),
            };
            (f, outcome)
        })
        .collect();
    drop(keys);
    let mut rows = Vec::new();
    for (f, r) in &results {
        match r {
            Ok((id, checked)) => {
                if checked.as_ref().is_some_and(|c| !c.is_authentic()) {
                    exit = worse(exit, Exit::Invalid);
                }
                rows.push(Row {
                    file: f.display().to_string(),
                    valid: true,
                    identity: Some(id),
                    authenticity: checked.as_ref().map(|c| c.verdict),
                    reason: checked.as_ref().and_then(|c| c.reason.clone()),
                    check: None,
                    error: None,
                })
            }
            Err(e) => {
                let io = e.check() == "io";
                exit = worse(exit, if io { Exit::Usage } else { Exit::Invalid });
                rows.push(Row {
                    file: f.display().to_string(),
                    valid: false,
                    identity: None,
                    authenticity: None,
                    reason: None,
                    check: Some(e.check()),
                    error: Some(e.to_string()),
                });
            }
        }
    }
    let mut out = String::new();
    match format {
        OutputFormat::Json => {
            out = format!(
                "{}\n",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            )
        }
        OutputFormat::Human => {
            for (row, (_, r)) in rows.iter().zip(&results) {
                match (row.identity, row.check) {
                    (Some(id), _) => {
                        out.push_str(&format!(
                            "{}: valid  index={} term={} size={} sha256={}",
                            row.file, id.index, id.term, id.file_size, id.sha256
                        ));
                        if let Ok((_, Some(c))) = r {
                            out.push_str(&format!("  {}", c.human()));
                        }
                        out.push('\n');
                    }
                    (None, check) => out.push_str(&format!(
                        "{}: INVALID  check={}  {}\n",
                        row.file,
                        check.unwrap_or("?"),
                        row.error.as_deref().unwrap_or("")
                    )),
                }
            }
        }
    }
    super::emit(&out, exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worse_keeps_usage_over_invalid_over_success() {
        assert_eq!(worse(Exit::Success, Exit::Invalid), Exit::Invalid);
        assert_eq!(worse(Exit::Invalid, Exit::Usage), Exit::Usage);
        assert_eq!(worse(Exit::Usage, Exit::Invalid), Exit::Usage);
        assert_eq!(worse(Exit::Invalid, Exit::Success), Exit::Invalid);
    }

    #[test]
    fn a_lone_share_or_a_bad_one_is_refused_before_any_snapshot() {
        let e = UnsealKey::combine(&[]).err().map(|e| e.check());
        assert_eq!(e, Some("no-shares"));
        let e = UnsealKey::combine(&[Secret::new("not a share!")])
            .err()
            .map(|e| e.check());
        assert_eq!(e, Some("share-encoding"));
        // two 4-byte shares combine to a 3-byte key: no AES key
        let e = UnsealKey::combine(&[Secret::new("AQIDBA=="), Secret::new("BQYHCA==")])
            .err()
            .map(|e| e.check());
        assert_eq!(e, Some("key-length"));
        // a 1-of-1 key of 32 bytes is the key itself
        assert!(UnsealKey::combine(&[Secret::new("00".repeat(32))]).is_ok());
    }

    #[test]
    fn verdicts_print_as_the_issue_names_them() {
        let words: Vec<String> = [
            Authenticity::Authentic,
            Authenticity::OtherKeys,
            Authenticity::SumsMismatch,
        ]
        .into_iter()
        .map(|a| Checked::from(a).human())
        .collect();
        assert_eq!(
            words,
            [
                "authentic",
                "sealed with other keys",
                "tampered: SHA256SUMS differs from the sealed sums"
            ]
        );
        let n = Checked::not_checkable("why".into());
        assert_eq!(n.human(), "not checkable: why");
        assert_eq!(
            serde_json::to_value(Verdict::NotCheckable).ok(),
            Some(serde_json::json!("not-checkable"))
        );
        assert_eq!(
            serde_json::to_value(Verdict::OtherKeys).ok(),
            Some(serde_json::json!("other-keys"))
        );
    }
}
