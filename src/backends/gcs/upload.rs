//! The create-only resumable upload: the metadata check that refuses an
//! existing object, the session opened with `ifGenerationMatch=0`, chunks
//! resumed from what the session persisted, the final chunk only when the
//! whole file hashed to its identity, then the confirming read-back.
//!
//! Must never: overwrite an object, finalize bytes that do not hash to the
//! snapshot's identity, report an upload the read-back did not confirm, or
//! leave a session open on an error path.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::Path;

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio_util::sync::CancellationToken;

use super::http::{Failure, Object, backoff, scrub, transient};
use super::{
    GcsTarget, MAX_ATTEMPTS, META_CLUSTER_ID, META_INDEX, META_SHA256, META_TAG, META_TERM,
};
use crate::backends::{Confirmed, TargetError, UploadTag};
use crate::snapshot::Identity;

/// Where a chunk's PUT left the session.
enum Step {
    /// Bytes `0..n` are persisted; send the rest.
    Persisted(u64),
    /// The object exists: the final chunk was taken.
    Done,
}

/// Cancels an open session unless disarmed (also when `put` is dropped).
struct Session {
    url: Option<url::Url>,
    http: reqwest::Client,
}

impl Session {
    fn disarm(&mut self) {
        self.url = None;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let Some(url) = self.url.take() else { return };
        let http = self.http.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            // Google answers 499 to a cancelled session; the session holds no
            // object either way.
            rt.spawn(async move {
                let _ = http.delete(url).send().await;
            });
        }
    }
}

impl GcsTarget {
    pub(super) async fn put_confirmed(
        &self,
        file: &Path,
        name: &str,
        identity: &Identity,
        tag: &UploadTag,
        cancel: &CancellationToken,
    ) -> Result<Confirmed, TargetError> {
        self.check_name(name)?;
        let want = identity.sha256.to_ascii_lowercase();
        if want.len() != 64 || !want.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TargetError::failed(
                &self.target,
                format!("the identity of `{name}` has no valid SHA-256: not uploaded"),
            ));
        }
        let io = |source| TargetError::Io {
            path: file.display().to_string(),
            source,
        };
        let mut f = tokio::fs::File::open(file).await.map_err(io)?;
        let size = f.metadata().await.map_err(io)?.len();
        if size != identity.file_size {
            return Err(self.changed(file));
        }
        let key = self.key(name);
        if self.object(&key).await?.is_some() {
            return Err(self.exists(name));
        }
        if cancel.is_cancelled() {
            return Err(TargetError::Cancelled);
        }
        tracing::info!(target_name = %self.target, key, size, "uploading snapshot");
        let shown = crate::progress::start(format!("upload {}", self.target), Some(size));
        let mut session = self.open_session(&key, size, identity, &want, tag).await?;
        let Some(url) = session.url.clone() else {
            return Err(TargetError::failed(&self.target, "no upload session"));
        };
        let mut hasher = Sha256::new();
        let mut at = 0u64;
        let mut buf = vec![0u8; self.chunk_size.min(size.max(1) as usize)];
        let outcome = loop {
            if cancel.is_cancelled() {
                return Err(TargetError::Cancelled);
            }
            let len = buf.len().min((size - at) as usize);
            let chunk = buf.get_mut(..len).unwrap_or_default();
            f.seek(SeekFrom::Start(at)).await.map_err(io)?;
            f.read_exact(chunk).await.map_err(io)?;
            let last = at + len as u64 == size;
            if last {
                let mut whole = hasher.clone();
                whole.update(&*chunk);
                if hex::encode(whole.finalize()) != want {
                    return Err(self.changed(file));
                }
            }
            let body = Bytes::copy_from_slice(chunk);
            let step = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(TargetError::Cancelled),
                s = self.send_chunk(&url, &key, at, body, size) => match s {
                    Ok(step) => step,
                    // 412 on the final chunk: a racing writer, or a retried
                    // final chunk whose first answer was lost. Only the
                    // latter is ours (same size and SHA-256).
                    Err(TargetError::AlreadyExists { .. }) if last && self.holds(&key, size, &want).await? => {
                        Step::Done
                    }
                    Err(e) => return Err(e),
                },
            };
            match step {
                Step::Done => break Ok(()),
                Step::Persisted(n) if n > at && n <= at + len as u64 && n < size => {
                    let acked = chunk.get(..(n - at) as usize).unwrap_or_default();
                    hasher.update(acked);
                    at = n;
                    shown.set(at);
                    crate::crash::crash_point!("gcs.mid-upload");
                }
                Step::Persisted(n) => {
                    break Err(TargetError::failed(
                        &self.target,
                        format!(
                            "upload of `{key}`: the session reports {n} bytes persisted after {} were sent from offset {at}; cancelled",
                            at + len as u64
                        ),
                    ));
                }
            }
        };
        match outcome {
            Ok(()) => session.disarm(),
            Err(e) => return Err(e),
        }
        shown.set(size);
        shown.finish();
        crate::crash::crash_point!("gcs.after-final");
        self.confirm(&key, name, size, &want).await
    }

    /// `POST upload/…?uploadType=resumable&ifGenerationMatch=0` with the
    /// metadata; the session URI (moved onto the endpoint).
    async fn open_session(
        &self,
        key: &str,
        size: u64,
        identity: &Identity,
        want: &str,
        tag: &UploadTag,
    ) -> Result<Session, TargetError> {
        let mut url = self.http.upload_url(&self.bucket);
        url.query_pairs_mut()
            .append_pair("uploadType", "resumable")
            .append_pair("name", key)
            .append_pair("ifGenerationMatch", "0");
        let body = serde_json::json!({
            "name": key,
            "contentType": "application/gzip",
            "metadata": metadata(identity, want, tag),
        });
        let res = self
            .http
            .send_idempotent(
                "opening an upload session for",
                key,
                |r| {
                    r.header("X-Upload-Content-Length", size)
                        .header("X-Upload-Content-Type", "application/gzip")
                        .json(&body)
                },
                Method::POST,
                &url,
            )
            .await?;
        let status = res.status();
        if status == StatusCode::PRECONDITION_FAILED {
            return Err(self.exists(key.strip_prefix(&self.prefix).unwrap_or(key)));
        }
        if !status.is_success() {
            let f = Failure::read(res).await;
            return Err(self.http.error("opening an upload session for", key, &f));
        }
        let location = res
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| self.http.on_endpoint(l));
        let Some(url) = location else {
            return Err(TargetError::failed(
                &self.target,
                format!("opening an upload session for `{key}`: the answer has no usable Location"),
            ));
        };
        Ok(Session {
            url: Some(url),
            http: self.http.raw(),
        })
    }

    /// PUTs bytes `at..at+len` of `size`; on a transient failure asks the
    /// session what it persisted (and carries on from there).
    async fn send_chunk(
        &self,
        url: &url::Url,
        key: &str,
        at: u64,
        body: Bytes,
        size: u64,
    ) -> Result<Step, TargetError> {
        let len = body.len() as u64;
        let mut attempt = 1;
        loop {
            let req = self.http.request(Method::PUT, url.clone()).await?;
            let range = format!("bytes {at}-{}/{size}", at + len - 1);
            let res = if len == 0 {
                req.header("Content-Range", format!("bytes */{size}"))
            } else {
                req.header("Content-Range", range)
            }
            .body(body.clone())
            .send()
            .await;
            let why = match res {
                Ok(res) => match self.step(key, res).await? {
                    Ok(step) => return Ok(step),
                    Err(status) => format!("HTTP {status}"),
                },
                Err(e) => scrub(&e),
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(TargetError::failed(
                    &self.target,
                    format!("uploading `{key}` (bytes from {at}): {why}, {MAX_ATTEMPTS} attempts"),
                ));
            }
            tracing::debug!(target_name = %self.target, key, at, why, attempt, "chunk failed; asking the session what it has");
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
            // What did the session keep? Resume from there.
            let req = self.http.request(Method::PUT, url.clone()).await?;
            let Ok(res) = req
                .header("Content-Range", format!("bytes */{size}"))
                .send()
                .await
            else {
                continue;
            };
            if res.status().is_success() {
                // The final chunk had arrived — or a server finalized the
                // object on the status query with what it had (fake-gcs-server
                // does): a short object is removed, by its generation.
                let object = res.json::<Object>().await.ok();
                if object.as_ref().and_then(Object::size) == Some(size) {
                    return Ok(Step::Done);
                }
                if let Some(g) = object.as_ref().and_then(Object::generation) {
                    self.delete_generation(key, g).await;
                }
                return Err(TargetError::failed(
                    &self.target,
                    format!(
                        "uploading `{key}`: the session ended with a short object (removed); retry the run"
                    ),
                ));
            }
            if let Ok(step) = self.step(key, res).await? {
                match step {
                    Step::Done => return Ok(Step::Done),
                    // Nothing of this chunk arrived: send it again.
                    Step::Persisted(n) if n == at => {}
                    other => return Ok(other),
                }
            }
        }
    }

    /// A chunk's (or status query's) answer: 308 → persisted offset,
    /// 200/201 → done, 412 → someone else's object, a transient status →
    /// `Err(status)` to retry; anything else is the error.
    async fn step(
        &self,
        key: &str,
        res: reqwest::Response,
    ) -> Result<Result<Step, StatusCode>, TargetError> {
        let status = res.status();
        if status.as_u16() == 308 {
            // `Range: bytes=0-<last>`; none: nothing persisted.
            let n = res
                .headers()
                .get(reqwest::header::RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| r.strip_prefix("bytes=0-"))
                .and_then(|last| last.parse::<u64>().ok())
                .map_or(0, |last| last + 1);
            return Ok(Ok(Step::Persisted(n)));
        }
        if status.is_success() {
            return Ok(Ok(Step::Done));
        }
        if status == StatusCode::PRECONDITION_FAILED {
            return Err(self.exists(key.strip_prefix(&self.prefix).unwrap_or(key)));
        }
        if transient(status) {
            return Ok(Err(status));
        }
        let f = Failure::read(res).await;
        Err(self.http.error("uploading", key, &f))
    }

    /// Reads the object back: size and `snapward-sha256` must be ours.
    async fn confirm(
        &self,
        key: &str,
        name: &str,
        size: u64,
        want: &str,
    ) -> Result<Confirmed, TargetError> {
        let not_confirmed = |got: String| TargetError::NotConfirmed {
            target: self.target.clone(),
            name: name.to_owned(),
            expected: format!("{size} bytes, sha256 {want}"),
            got,
        };
        let Some(obj) = self.object(key).await? else {
            return Err(not_confirmed("no such object".into()));
        };
        let (got_size, got_sha) = (obj.size(), obj.sha256());
        if got_size != Some(size) || got_sha.as_deref() != Some(want) {
            return Err(not_confirmed(format!(
                "{} bytes, sha256 {}",
                got_size.map_or_else(|| "?".to_owned(), |s| s.to_string()),
                got_sha.as_deref().unwrap_or("absent")
            )));
        }
        tracing::info!(target_name = %self.target, key, size, generation = obj.generation(), "upload confirmed");
        Ok(Confirmed {
            size,
            sha256: want.to_owned(),
        })
    }

    pub(super) fn exists(&self, name: &str) -> TargetError {
        TargetError::AlreadyExists {
            target: self.target.clone(),
            name: name.to_owned(),
        }
    }

    fn changed(&self, file: &Path) -> TargetError {
        TargetError::failed(
            &self.target,
            format!(
                "{} does not match its snapshot identity (changed since it was verified?): not uploaded",
                file.display()
            ),
        )
    }
}

/// The identity, and what authenticates it later (cluster id, tag).
fn metadata(identity: &Identity, sha256: &str, tag: &UploadTag) -> HashMap<&'static str, String> {
    let mut m = HashMap::from([
        (META_SHA256, sha256.to_owned()),
        (META_INDEX, identity.index.to_string()),
        (META_TERM, identity.term.to_string()),
    ]);
    if !tag.cluster_id.is_empty() {
        m.insert(META_CLUSTER_ID, tag.cluster_id.clone());
    }
    if let Some(t) = &tag.tag {
        m.insert(META_TAG, t.clone());
    }
    m
}
