//! Stage: snapshot verification — the one error type every check reports.
//!
//! Each variant names one failed check; [`VerifyError::check`] is its stable
//! kebab-case name (also the tail of the miette code `snapshot::<check>`).
//! Never rename a check: reports, metrics and tests key on it. Add new ones.
//! Must never carry snapshot contents (state.bin is the encrypted barrier; the
//! sealed sums are key material) — only names, sizes and digests.

use std::fmt;
use std::io;

/// Which gzip layer a gzip-level problem was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The gzip stream the file itself is (what OpenBao's snapshot API sends).
    Outer,
    /// The extra gzip layer of a `.snap.gz` (a snapshot compressed once more).
    Inner,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Outer => "gzip stream",
            Layer::Inner => "inner gzip stream (the snapshot inside the .snap.gz)",
        })
    }
}

/// Why a snapshot archive was refused. See [`VerifyError::check`].
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum VerifyError {
    #[error("could not read the snapshot: {0}")]
    #[diagnostic(code("snapshot::io"))]
    Io(#[source] io::Error),

    #[error("the snapshot file is empty")]
    #[diagnostic(
        code("snapshot::empty-file"),
        help("the snapshot request or copy produced no bytes; take a new snapshot")
    )]
    EmptyFile,

    #[error("not a gzip file: it starts with {found}, gzip starts with 1f 8b")]
    #[diagnostic(
        code("snapshot::not-gzip"),
        help(
            "an OpenBao raft snapshot is a gzip-compressed tar; this may be an error page saved in its place"
        )
    )]
    NotGzip { found: String },

    #[error("the {layer} ends early: {detail}")]
    #[diagnostic(
        code("snapshot::truncated"),
        help("the download or copy was cut short; take or fetch the snapshot again")
    )]
    Truncated { layer: Layer, detail: String },

    #[error("the {layer} is corrupt: {detail}")]
    #[diagnostic(code("snapshot::gzip-structure"))]
    GzipStructure { layer: Layer, detail: String },

    #[error("the {layer} fails its trailer check: {detail}")]
    #[diagnostic(
        code("snapshot::gzip-trailer"),
        help(
            "the compressed bytes were damaged after OpenBao wrote them (OpenBao itself would accept this file)"
        )
    )]
    GzipTrailer { layer: Layer, detail: String },

    #[error("bytes follow the end of the {layer}")]
    #[diagnostic(
        code("snapshot::trailing-data"),
        help("a snapshot is exactly one gzip stream; something appended bytes to the file")
    )]
    TrailingGzipData { layer: Layer },

    #[error("{detail} after the tar end-of-archive marker")]
    #[diagnostic(
        code("snapshot::trailing-data"),
        help(
            "only zero padding to the end of a tar record (at most 1 MiB) may follow the two zero blocks that end a tar archive"
        )
    )]
    TrailingTarData { detail: String },

    #[error("the tar archive inside is malformed: {detail}")]
    #[diagnostic(code("snapshot::tar-structure"))]
    TarStructure { detail: String },

    #[error("tar entry `{name}` is a {kind}, not a regular file")]
    #[diagnostic(
        code("snapshot::not-regular-file"),
        help(
            "a snapshot holds exactly four regular files: meta.json, state.bin, SHA256SUMS, SHA256SUMS.sealed"
        )
    )]
    NotRegularFile { name: String, kind: String },

    #[error("tar entry `{name}` has a path, a snapshot entry is a bare file name")]
    #[diagnostic(
        code("snapshot::entry-path"),
        help("entries must not contain `/`, `\\`, or be `.` or `..`")
    )]
    EntryPath { name: String },

    #[error("unexpected tar entry `{name}`")]
    #[diagnostic(
        code("snapshot::unexpected-entry"),
        help("a snapshot holds exactly meta.json, state.bin, SHA256SUMS and SHA256SUMS.sealed")
    )]
    UnexpectedEntry { name: String },

    #[error("tar entry `{name}` appears more than once")]
    #[diagnostic(code("snapshot::duplicate-entry"))]
    DuplicateEntry { name: &'static str },

    #[error("the snapshot has no `{name}`")]
    #[diagnostic(
        code("snapshot::missing-entry"),
        help("a snapshot holds exactly meta.json, state.bin, SHA256SUMS and SHA256SUMS.sealed")
    )]
    MissingEntry { name: &'static str },

    #[error("meta.json is {size} bytes, more than the {limit}-byte limit")]
    #[diagnostic(code("snapshot::meta-too-large"))]
    MetaTooLarge { size: u64, limit: u64 },

    #[error("{name} is {size} bytes, more than the {limit}-byte limit")]
    #[diagnostic(code("snapshot::sums-too-large"))]
    SumsTooLarge {
        name: &'static str,
        size: u64,
        limit: u64,
    },

    #[error("meta.json is not a raft snapshot description: {0}")]
    #[diagnostic(
        code("snapshot::meta-json"),
        help("meta.json must be JSON with at least Version, ID, Index, Term and Size")
    )]
    MetaJson(#[source] serde_json::Error),

    #[error("SHA256SUMS is malformed: {detail}")]
    #[diagnostic(
        code("snapshot::sums-format"),
        help("SHA256SUMS has one `<64 hex digits>  <name>` line each for meta.json and state.bin")
    )]
    SumsFormat { detail: String },

    #[error("meta.json has SHA-256 {actual}, SHA256SUMS lists {listed}")]
    #[diagnostic(code("snapshot::sha256-mismatch-meta"))]
    Sha256MismatchMeta { listed: String, actual: String },

    #[error("state.bin has SHA-256 {actual}, SHA256SUMS lists {listed}")]
    #[diagnostic(
        code("snapshot::sha256-mismatch-state"),
        help("the raft state was altered or damaged inside an intact gzip stream")
    )]
    Sha256MismatchState { listed: String, actual: String },

    #[error("meta.json says Size {meta_size}, state.bin is {state_len} bytes")]
    #[diagnostic(code("snapshot::size-mismatch"))]
    SizeMismatch { meta_size: u64, state_len: u64 },

    #[error("SHA256SUMS.sealed is empty")]
    #[diagnostic(
        code("snapshot::sealed-sums-empty"),
        help("OpenBao refuses a snapshot whose sums are not sealed by the barrier")
    )]
    SealedSumsEmpty,

    #[error("the snapshot inflates to more than {limit} bytes, the limit")]
    #[diagnostic(
        code("snapshot::too-large"),
        help(
            "a real snapshot this large needs a higher limit: spec.maxSnapshotBytes in the policy, or `snapward verify --max-snapshot-bytes`; otherwise the file is a decompression bomb"
        )
    )]
    TooLarge { limit: u64 },

    #[error(
        "the snapshot inflates more than {ratio}x: {inflated} bytes from the first {stored} bytes stored"
    )]
    #[diagnostic(
        code("snapshot::inflate-ratio"),
        help(
            "one layer of deflate cannot inflate more than 1032x: the file nests compressed layers to inflate without bound (a decompression bomb)"
        )
    )]
    InflateRatio {
        ratio: u64,
        inflated: u64,
        stored: u64,
    },

    #[error("the tar header of state.bin announces {size} bytes, more than the {limit}-byte limit")]
    #[diagnostic(
        code("snapshot::state-too-large"),
        help(
            "a real snapshot this large needs a higher limit: spec.maxSnapshotBytes in the policy, or `snapward verify --max-snapshot-bytes`"
        )
    )]
    StateTooLarge { size: u64, limit: u64 },
}

impl VerifyError {
    /// The stable kebab-case name of the failed check.
    pub fn check(&self) -> &'static str {
        match self {
            VerifyError::Io(_) => "io",
            VerifyError::EmptyFile => "empty-file",
            VerifyError::NotGzip { .. } => "not-gzip",
            VerifyError::Truncated { .. } => "truncated",
            VerifyError::GzipStructure { .. } => "gzip-structure",
            VerifyError::GzipTrailer { .. } => "gzip-trailer",
            VerifyError::TrailingGzipData { .. } | VerifyError::TrailingTarData { .. } => {
                "trailing-data"
            }
            VerifyError::TarStructure { .. } => "tar-structure",
            VerifyError::NotRegularFile { .. } => "not-regular-file",
            VerifyError::EntryPath { .. } => "entry-path",
            VerifyError::UnexpectedEntry { .. } => "unexpected-entry",
            VerifyError::DuplicateEntry { .. } => "duplicate-entry",
            VerifyError::MissingEntry { .. } => "missing-entry",
            VerifyError::MetaTooLarge { .. } => "meta-too-large",
            VerifyError::SumsTooLarge { .. } => "sums-too-large",
            VerifyError::MetaJson(_) => "meta-json",
            VerifyError::SumsFormat { .. } => "sums-format",
            VerifyError::Sha256MismatchMeta { .. } => "sha256-mismatch-meta",
            VerifyError::Sha256MismatchState { .. } => "sha256-mismatch-state",
            VerifyError::SizeMismatch { .. } => "size-mismatch",
            VerifyError::SealedSumsEmpty => "sealed-sums-empty",
            VerifyError::TooLarge { .. } => "too-large",
            VerifyError::InflateRatio { .. } => "inflate-ratio",
            VerifyError::StateTooLarge { .. } => "state-too-large",
        }
    }

    /// Every check name.
    pub const CHECKS: &'static [&'static str] = &[
        "io",
        "empty-file",
        "not-gzip",
        "truncated",
        "gzip-structure",
        "gzip-trailer",
        "trailing-data",
        "tar-structure",
        "not-regular-file",
        "entry-path",
        "unexpected-entry",
        "duplicate-entry",
        "meta-too-large",
        "sums-too-large",
        "meta-json",
        "sums-format",
        "missing-entry",
        "sha256-mismatch-meta",
        "sha256-mismatch-state",
        "size-mismatch",
        "sealed-sums-empty",
        "too-large",
        "inflate-ratio",
        "state-too-large",
    ];

    /// Problems of the byte stream itself (reading, gzip framing). Everything
    /// else is found inside the decompressed archive and may be a symptom of
    /// damage the gzip trailer reveals later, so those are reported only after
    /// the whole stream was read and found intact.
    pub(crate) fn is_stream_level(&self) -> bool {
        matches!(
            self,
            VerifyError::Io(_)
                | VerifyError::EmptyFile
                | VerifyError::NotGzip { .. }
                | VerifyError::Truncated { .. }
                | VerifyError::GzipStructure { .. }
                | VerifyError::GzipTrailer { .. }
                | VerifyError::TrailingGzipData { .. }
                // Refused without reading on: the rest could take hours.
                | VerifyError::TooLarge { .. }
                | VerifyError::InflateRatio { .. }
                | VerifyError::StateTooLarge { .. }
        )
    }

    /// Carries this error through a `std::io::Read` layer; see
    /// [`VerifyError::from_io`].
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::other(self)
    }

    /// Recovers an error raised by a verification layer below. Any other I/O
    /// error (none is expected: every layer tags its errors) counts as `io`.
    pub(crate) fn from_io(err: io::Error) -> VerifyError {
        if !err.get_ref().is_some_and(|e| e.is::<VerifyError>()) {
            return VerifyError::Io(err);
        }
        match err
            .into_inner()
            .map(|inner| inner.downcast::<VerifyError>())
        {
            Some(Ok(v)) => *v,
            Some(Err(other)) => VerifyError::Io(io::Error::other(other)),
            None => VerifyError::Io(io::Error::other("verification error lost its cause")),
        }
    }
}
