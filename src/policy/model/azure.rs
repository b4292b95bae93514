//! `spec.targets[].azure`: an Azure Blob Storage container (or Azurite, or a
//! sovereign cloud through `endpoint`).
//!
//! Stage: configuration data (no I/O).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A container (and key prefix) in an Azure storage account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AzureTarget {
    /// Storage account name (3–24 lowercase letters and digits).
    #[schemars(length(min = 3, max = 24), regex(pattern = r"^[a-z0-9]+$"))]
    pub account: String,
    /// Container name (3–63 characters: lowercase letters, digits, `-`).
    #[schemars(length(min = 3, max = 63))]
    pub container: String,
    /// Blob name prefix; should end with `/`.
    #[serde(default)]
    pub prefix: String,
    /// The account's blob endpoint, for Azurite
    /// (`http://127.0.0.1:10000/devstoreaccount1`) or a sovereign cloud
    /// (`https://<account>.blob.core.usgovcloudapi.net`). Omit for the
    /// public cloud (`https://<account>.blob.core.windows.net`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Omit to use the standard Azure chain: workload identity
    /// (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`),
    /// then the managed identity of the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<AzureCredentials>,
}

/// Exactly one of `accountKeyFile` or `sasTokenFile` (e.g. a mounted Secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AzureCredentials {
    /// A file holding the storage account key (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_key_file: Option<String>,
    /// A file holding a SAS token (`sv=...&sig=...`, with or without the
    /// leading `?`) with read, write, list and delete permission on the
    /// container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sas_token_file: Option<String>,
}
