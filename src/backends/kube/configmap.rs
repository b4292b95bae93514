//! The policy read from a ConfigMap (`NAMESPACE/NAME[:KEY]`) through the
//! API.
//!
//! Must never: write to the ConfigMap, or guess between several YAML keys.

use ::kube::Client;
use ::kube::api::Api;
use k8s_openapi::api::core::v1::ConfigMap;

use super::KubeError;
use super::error::Op;

/// A parsed `NAMESPACE/NAME[:KEY]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapRef {
    /// The ConfigMap's namespace.
    pub namespace: String,
    /// The ConfigMap's name.
    pub name: String,
    /// The data key holding the policy; `None`: the only `*.yaml`/`*.yml` key.
    pub key: Option<String>,
}

impl std::str::FromStr for ConfigMapRef {
    type Err = KubeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |detail: &str| KubeError::Invalid {
            what: format!("policy ConfigMap `{s}`"),
            detail: format!("{detail}; expected NAMESPACE/NAME[:KEY]"),
        };
        let (namespace, rest) = s.split_once('/').ok_or_else(|| bad("no `/`"))?;
        let (name, key) = match rest.split_once(':') {
            Some((n, k)) => (n, Some(k)),
            None => (rest, None),
        };
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            return Err(bad("empty or malformed namespace or name"));
        }
        if key.is_some_and(str::is_empty) {
            return Err(bad("empty key after `:`"));
        }
        Ok(Self {
            namespace: namespace.into(),
            name: name.into(),
            key: key.map(String::from),
        })
    }
}

/// Reads a policy from ConfigMap `NAMESPACE/NAME[:KEY]` through the API.
/// Without KEY the ConfigMap must have exactly one `data` entry ending in
/// `.yaml` or `.yml`. Returns `(origin, text)`; the origin
/// (`configmap NAMESPACE/NAME:KEY`) names the source in diagnostics.
/// RBAC: `get` on that ConfigMap.
///
/// Errors: malformed reference, 404/403/other API failures, the key is
/// missing, or no/several YAML keys without KEY.
pub async fn read_policy_configmap(
    client: &Client,
    reference: &str,
) -> Result<(String, String), KubeError> {
    let r: ConfigMapRef = reference.parse()?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &r.namespace);
    let cm = api.get(&r.name).await.map_err(|e| {
        Op {
            verb: "get",
            resource: "configmaps",
            namespace: &r.namespace,
            name: Some(&r.name),
        }
        .err(e)
    })?;
    let mut data = cm.data.unwrap_or_default();
    let what = || format!("policy ConfigMap {}/{}", r.namespace, r.name);
    let listing = if data.is_empty() {
        "it has no data".to_string()
    } else {
        format!(
            "keys: {}",
            data.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    };
    let keys = || listing.clone();
    let key = match &r.key {
        Some(k) => k.clone(),
        None => {
            let yaml: Vec<&String> = data
                .keys()
                .filter(|k| k.ends_with(".yaml") || k.ends_with(".yml"))
                .collect();
            match yaml.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return Err(KubeError::Invalid {
                        what: what(),
                        detail: format!(
                            "no data key ends in .yaml or .yml ({}); name the key: NAMESPACE/NAME:KEY",
                            keys()
                        ),
                    });
                }
                _ => {
                    return Err(KubeError::Invalid {
                        what: what(),
                        detail: format!(
                            "several YAML keys ({}); name one: NAMESPACE/NAME:KEY",
                            keys()
                        ),
                    });
                }
            }
        }
    };
    let Some(text) = data.remove(&key) else {
        return Err(KubeError::Invalid {
            what: what(),
            detail: format!("no data key `{key}` ({})", keys()),
        });
    };
    Ok((format!("configmap {}/{}:{key}", r.namespace, r.name), text))
}
