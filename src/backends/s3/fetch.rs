//! Downloading a snapshot to a new local file (create-new), hashed on the
//! way and checked against the object's size and `snapward-sha256`. The
//! download stops as soon as it exceeds the size the store announced: a
//! body longer than its object never fills the scratch disk.
//!
//! Must never: write to an existing file, or leave a partial or unchecked
//! download behind (it is removed on any failure or cancellation).

use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use super::error::{check_name, failure, io_err, unless_cancelled};
use super::{META_SHA256, META_STREAM, S3Target};
use crate::backends::TargetError;

impl S3Target {
    pub(super) async fn fetch_into(
        &self,
        name: &str,
        dest: &Path,
        cancel: &CancellationToken,
    ) -> Result<u64, TargetError> {
        check_name(&self.ctx.target, name)?;
        let key = self.key(name);
        let get = self.client.get_object().bucket(&self.ctx.bucket).key(&key);
        let res = unless_cancelled(cancel, get.send()).await?;
        let out = res.map_err(|e| self.ctx.error("GetObject", &key, &failure(&e)))?;
        // The size the store announces bounds the download (below); an
        // answer without one (chunked) could stream without end.
        let Some(expected_size) = out.content_length().map(|l| l.max(0) as u64) else {
            return Err(self.ctx.failed(format!(
                "GetObject `{key}` answered without a Content-Length: not downloaded (the size bounds the download)"
            )));
        };
        let mut expected_sha = out
            .metadata()
            .and_then(|m| m.get(META_SHA256))
            .map(|s| s.to_ascii_lowercase());
        if expected_sha.is_none() && out.metadata().is_some_and(|m| m.contains_key(META_STREAM)) {
            // A streamed snapshot: its identity object holds the SHA-256.
            expected_sha = self
                .streamed_identity(name, expected_size)
                .await?
                .and_then(|h| h.metadata().and_then(|m| m.get(META_SHA256)).cloned())
                .map(|s| s.to_ascii_lowercase());
        }
        let expected_size = Some(expected_size);
        let mut body = out.body;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await
            .map_err(|source| io_err(dest, source))?;
        let shown = crate::progress::start(format!("fetch {}", self.ctx.target), expected_size);
        let result: Result<u64, TargetError> = async {
            let mut hasher = Sha256::new();
            let mut written = 0u64;
            loop {
                let chunk = unless_cancelled(cancel, body.next()).await?;
                let Some(chunk) = chunk else { break };
                let chunk = chunk.map_err(|e| {
                    self.ctx
                        .failed(format!("GetObject `{key}`: reading the body"))
                        .caused_by(e)
                })?;
                if let Some(limit) = expected_size
                    && written + chunk.len() as u64 > limit
                {
                    return Err(self.ctx.failed(format!(
                        "GetObject `{key}`: the body is longer than the {limit} bytes the store announced; download stopped"
                    )));
                }
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(|source| io_err(dest, source))?;
                written += chunk.len() as u64;
                shown.inc(chunk.len() as u64);
                crate::crash::crash_point!("fetch.mid-download");
            }
            file.flush().await.map_err(|source| io_err(dest, source))?;
            file.sync_all()
                .await
                .map_err(|source| io_err(dest, source))?;
            let sha = hex::encode(hasher.finalize());
            let size_ok = expected_size.is_none_or(|s| s == written);
            let sha_ok = expected_sha.as_deref().is_none_or(|s| s == sha);
            if !size_ok || !sha_ok {
                return Err(TargetError::NotConfirmed {
                    target: self.ctx.target.clone(),
                    name: name.to_owned(),
                    expected: format!(
                        "{} bytes, sha256 {}",
                        expected_size.map_or_else(|| "?".to_owned(), |s| s.to_string()),
                        expected_sha.as_deref().unwrap_or("?")
                    ),
                    got: format!("{written} bytes, sha256 {sha}"),
                });
            }
            Ok(written)
        }
        .await;
        if result.is_ok() {
            shown.finish();
        }
        if result.is_err() {
            drop(file);
            let _ = tokio::fs::remove_file(dest).await;
        }
        result
    }
}
