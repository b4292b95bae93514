//! Deleting one blob with a SAS token: a plain `DELETE <blob>?<sas>`.
//! object_store deletes through a blob batch, which a SAS may not
//! authorise (Azurite answers 500, real Azure refuses service SAS), so a
//! SAS-authenticated target deletes blob by blob here.
//!
//! Must never: put the token into a message (only status and body text,
//! scrubbed by the caller, leave this file).

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use crate::backends::cloud::OneDelete;

pub(super) struct SasDelete {
    pub(super) http: reqwest::Client,
    /// `https://<account>.blob.core.windows.net/<container>` (no `/` at the end).
    pub(super) container_url: String,
    pub(super) sas: SecretString,
}

#[async_trait]
impl OneDelete for SasDelete {
    async fn delete_one(&self, key: &str) -> Result<(u16, String), String> {
        let url = format!(
            "{}/{}?{}",
            self.container_url,
            encode_path(key),
            self.sas.expose_secret()
        );
        let res = self
            .http
            .delete(url)
            .header("x-ms-version", "2021-08-06")
            .send()
            .await
            // Without the URL: it holds the token.
            .map_err(|e| format!("DELETE `{key}`: {}", e.without_url()))?;
        let status = res.status().as_u16();
        let body = res.text().await.unwrap_or_default();
        Ok((status, body))
    }
}

/// Percent-encodes a blob name, keeping `/` between its segments.
fn encode_path(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn blob_names_keep_their_slashes_and_escape_the_rest() {
        assert_eq!(
            super::encode_path("a b/openbao-1.snap"),
            "a%20b/openbao-1.snap"
        );
    }
}
