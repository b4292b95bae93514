//! `spec.targets[].gcs`: a Google Cloud Storage bucket (or an emulator such
//! as fake-gcs-server) as a snapshot target. Pure data, like `model.rs`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::S3Timeouts;

/// A Google Cloud Storage bucket, through the JSON API.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcsTarget {
    /// Omit for Google itself (`https://storage.googleapis.com`); set for an
    /// emulator (`http://127.0.0.1:4443`) or a Private Service Connect
    /// endpoint. With an endpoint and no `credentials`, requests carry no
    /// Authorization header (emulators accept anything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[schemars(length(min = 3, max = 222))]
    pub bucket: String,
    /// Object name prefix; should end with `/`.
    #[serde(default)]
    pub prefix: String,
    /// Omit to use the standard Google chain (GKE workload identity, the
    /// metadata server, `GOOGLE_APPLICATION_CREDENTIALS`, gcloud ADC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<GcsCredentials>,
    /// Limits of every request (defaults: `connect: 10s`, `request: 5m`; one
    /// request carries at most one 8 MiB chunk of an upload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<S3Timeouts>,
}

/// A service-account key, read from a file (e.g. a mounted Secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcsCredentials {
    /// The JSON key file Google hands out for a service account
    /// (`"type": "service_account"`).
    pub service_account_file: String,
}
