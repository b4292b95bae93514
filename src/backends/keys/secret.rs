//! [`SecretKeyStore`]: unseal keys in one Kubernetes Secret, created once
//! (immutable) at init and read for unseal and restore.
//!
//! Must never: update, patch or replace a Secret; report "absent" on
//! anything but the API server's own NotFound for this Secret (absent lets
//! a fresh init run); or put key material in an error or a log line (a
//! Secret's body is never quoted).

use std::collections::BTreeMap;

use ::kube::Client;
use ::kube::api::{Api, PostParams};
use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use zeroize::Zeroizing;

use super::{KeyShape, KeyStore, KeyStoreError, Presence, SHAPE_ENTRY, StoredKeys};
use crate::backends::kube::CONTROLLER;
use crate::backends::kube::error::{Op, is_object_not_found, status_code};
use crate::secret::Secret;

/// Unseal keys in one Kubernetes Secret: entries `<keyPrefix>0`,
/// `<keyPrefix>1`, … (any number of shares) and optionally the root token.
///
/// - `read` returns every `<keyPrefix>N` entry in ordinal order (values
///   trimmed, UTF-8); a missing Secret or one without key entries is
///   [`KeyStoreError::Empty`].
/// - `create` **creates** the Secret (POST, `immutable: true`); if a Secret
///   of that name exists in any form — even empty — the API answers 409 and
///   this is [`KeyStoreError::AlreadyExists`]. It never updates, patches or
///   replaces a Secret.
/// - `probe`: 404 → `Ok(false)`; key entries present → `Ok(true)`; a Secret
///   that exists but holds **no** key entries → `Err(Unavailable)`. Not
///   `Ok(false)`: "absent" lets a fresh init run, and init would then
///   create the barrier and fail to store its keys (the Secret exists), so
///   the keys would live only in this process's memory. Delete the empty
///   Secret (or put the keys in it) and rerun.
/// - any other failure (403, network) → [`KeyStoreError::Unavailable`] with
///   the RBAC hint.
///
/// RBAC: `get` on the named Secret; `create` on secrets for init.
///
/// Key material is held in [`Secret`]s and the decoded buffers are
/// zeroised; the HTTP response/request buffers inside kube/hyper are not
/// under snapward's control and are not zeroised.
#[derive(Clone)]
pub struct SecretKeyStore {
    api: Api<KubeSecret>,
    namespace: String,
    name: String,
    key_prefix: String,
    root_token_key: String,
}

impl std::fmt::Debug for SecretKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeyStore")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("key_prefix", &self.key_prefix)
            .field("root_token_key", &self.root_token_key)
            .finish()
    }
}

impl SecretKeyStore {
    /// The store for Secret `namespace/name` with the policy's entry names.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        key_prefix: &str,
        root_token_key: &str,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            key_prefix: key_prefix.to_string(),
            root_token_key: root_token_key.to_string(),
        }
    }

    fn op(&self, verb: &'static str) -> Op<'_> {
        Op {
            verb,
            resource: "secrets",
            namespace: &self.namespace,
            name: Some(&self.name),
        }
    }

    fn unavailable(&self, detail: impl Into<String>) -> KeyStoreError {
        KeyStoreError::unavailable(self.location(), detail)
    }

    /// The Secret, or `None` on 404.
    async fn fetch(&self) -> Result<Option<KubeSecret>, KeyStoreError> {
        match self.api.get(&self.name).await {
            Ok(s) => Ok(Some(s)),
            // "Absent" may let a fresh init run: only the API server's own
            // NotFound for this Secret counts, never any 404.
            Err(e) if is_object_not_found(&e, &self.name) => Ok(None),
            Err(e) if status_code(&e) == Some(404) => Err(self
                .unavailable(
                    "a 404 that is not the API server's NotFound for this Secret (a proxy or a wrong API URL?)",
                )
                .caused_by(self.op("get").err_with(e, true))),
            Err(e) => Err(self.unavailable("").caused_by(self.op("get").err_with(e, true))),
        }
    }

    /// `<keyPrefix>N` → N, for canonical decimals only.
    fn share_index(&self, entry: &str) -> Option<u32> {
        let n = entry.strip_prefix(&self.key_prefix)?;
        if n.is_empty()
            || !n.bytes().all(|b| b.is_ascii_digit())
            || (n.len() > 1 && n.starts_with('0'))
        {
            return None;
        }
        n.parse().ok()
    }

    fn decode(&self, entry: &str, raw: &[u8]) -> Result<Secret, KeyStoreError> {
        let text = std::str::from_utf8(raw)
            .map_err(|_| self.unavailable(format!("entry `{entry}` is not UTF-8 text")))?;
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(self.unavailable(format!("entry `{entry}` is empty")));
        }
        Ok(Secret::new(trimmed))
    }

    async fn post(&self, keys: &StoredKeys, dry_run: bool) -> Result<(), KeyStoreError> {
        if keys.keys.is_empty() {
            return Err(self.unavailable("no key shares to store"));
        }
        let mut data = BTreeMap::new();
        for (i, k) in keys.keys.iter().enumerate() {
            data.insert(
                format!("{}{i}", self.key_prefix),
                ByteString(k.expose().as_bytes().to_vec()),
            );
        }
        if let Some(t) = &keys.root_token {
            data.insert(
                self.root_token_key.clone(),
                ByteString(t.expose().as_bytes().to_vec()),
            );
        }
        if let Some(shape) = keys.shape {
            data.insert(
                SHAPE_ENTRY.to_string(),
                ByteString(shape.to_record().into_bytes()),
            );
        }
        let mut secret = KubeSecret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    CONTROLLER.to_string(),
                )])),
                annotations: Some(BTreeMap::from([(
                    "snapward.dev/note".to_string(),
                    "Created once by snapward at init; never updated. Deleting it loses the unseal keys.".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            immutable: Some(true),
            data: Some(data),
            ..KubeSecret::default()
        };
        let pp = PostParams {
            dry_run,
            field_manager: Some(CONTROLLER.into()),
        };
        let res = self.api.create(&pp, &secret).await;
        // Zeroise our copies of the values (kube's serialised body is not ours).
        if let Some(d) = secret.data.as_mut() {
            for v in d.values_mut() {
                zeroize::Zeroize::zeroize(&mut v.0);
            }
        }
        match res {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(409) => Err(KeyStoreError::AlreadyExists {
                location: self.location(),
            }),
            Err(e) => Err(self
                .unavailable("")
                .caused_by(self.op("create").err_with(e, true))),
        }
    }
}

#[async_trait]
impl KeyStore for SecretKeyStore {
    fn location(&self) -> String {
        format!("secret {}/{}", self.namespace, self.name)
    }

    async fn probe(&self) -> Result<Presence, KeyStoreError> {
        let Some(s) = self.fetch().await? else {
            return Ok(Presence::default());
        };
        let shares = s
            .data
            .iter()
            .flatten()
            .filter(|(k, _)| self.share_index(k).is_some())
            .count();
        if shares > 0 {
            let seal = s
                .data
                .iter()
                .flatten()
                .find(|(k, _)| *k == SHAPE_ENTRY)
                .and_then(|(_, v)| std::str::from_utf8(&v.0).ok())
                .and_then(KeyShape::from_record)
                .and_then(|s| s.seal);
            return Ok(Presence {
                shares,
                seal,
                any: true,
            });
        }
        Err(self.unavailable(format!(
            "the Secret exists but holds no `{}N` entries; snapward creates this Secret itself at init and never writes into an existing one: delete the empty Secret (or put the keys into it) and rerun",
            self.key_prefix
        )))
    }

    async fn read(&self) -> Result<StoredKeys, KeyStoreError> {
        let Some(s) = self.fetch().await? else {
            return Err(KeyStoreError::Empty {
                location: self.location(),
            });
        };
        // Own every value in a zeroising buffer first, so an early return
        // below still wipes them all.
        let entries: Vec<(String, Zeroizing<Vec<u8>>)> = s
            .data
            .into_iter()
            .flatten()
            .map(|(k, v)| (k, Zeroizing::new(v.0)))
            .collect();
        let mut shares: Vec<(u32, Secret)> = Vec::new();
        let mut root_token = None;
        let mut shape = None;
        for (entry, value) in &entries {
            if let Some(i) = self.share_index(entry) {
                shares.push((i, self.decode(entry, value)?));
            } else if *entry == self.root_token_key {
                root_token = Some(self.decode(entry, value)?);
            } else if entry == SHAPE_ENTRY {
                shape = std::str::from_utf8(value)
                    .ok()
                    .and_then(KeyShape::from_record);
            }
        }
        if shares.is_empty() {
            return Err(KeyStoreError::Empty {
                location: self.location(),
            });
        }
        shares.sort_by_key(|(i, _)| *i);
        let expected = shares.len() as u32;
        if shares.last().map(|(i, _)| *i + 1) != Some(expected) {
            tracing::warn!(
                location = %self.location(),
                shares = shares.len(),
                "the key Secret's share numbers have gaps; using the shares present"
            );
        }
        Ok(StoredKeys {
            keys: shares.into_iter().map(|(_, k)| k).collect(),
            root_token,
            shape,
        })
    }

    async fn create(&self, keys: &StoredKeys) -> Result<(), KeyStoreError> {
        self.post(keys, false).await
    }

    /// Server-side dry run of `create` (`?dryRun=All`): proves, before a
    /// fresh init creates a barrier, that the Secret does not exist yet and
    /// that RBAC allows creating it. Nothing is stored.
    ///
    /// Errors: [`KeyStoreError::AlreadyExists`] on 409, `Unavailable` else.
    async fn check_create(&self) -> Result<(), KeyStoreError> {
        let probe = StoredKeys {
            keys: vec![Secret::new("dry-run")],
            root_token: None,
            shape: None,
        };
        self.post(&probe, true).await
    }
}
