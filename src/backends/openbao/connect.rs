//! Building one node's HTTP client: the address, the optional `serverName`
//! pinned to the node's address, the CA and the mTLS client certificate
//! (`cluster.tls`), and telling a refused client certificate apart from
//! other TLS failures. Split from `client.rs`, which sends the requests.
//!
//! Must never: quote key material (the key's bytes are wiped after
//! parsing), follow redirects, use an environment proxy or pool
//! connections.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use url::{Host, Url};
use zeroize::Zeroizing;

use super::Timeouts;
use crate::backends::BaoError;

/// Why a node's client cannot be built. Each message says only its own
/// part; the cause follows when the error is shown (see
/// [`chain`](crate::backends::chain)).
#[derive(Debug, thiserror::Error)]
pub(super) enum ClientError {
    #[error("{address} must use http:// or https://")]
    Scheme { address: Url },
    #[error("{address} has no host")]
    NoHost { address: Url },
    #[error("tls.serverName {name:?} is not a host name")]
    ServerName {
        name: String,
        #[source]
        source: url::ParseError,
    },
    #[error("cannot build the HTTP client")]
    Build(#[source] reqwest::Error),
}

/// The client certificate of `tls.certFile` + `tls.keyFile` (mTLS), if
/// both are set. Errors name the file and say what is wrong with it; the
/// key's bytes are wiped after parsing and never quoted.
pub(super) fn client_identity(
    tls: Option<&crate::policy::model::Tls>,
) -> Result<Option<reqwest::Identity>, BaoError> {
    let config_err = |detail: String| BaoError::refused("cluster", detail);
    let (cert_file, key_file) = match tls.map(|t| (&t.cert_file, &t.key_file)) {
        None | Some((None, None)) => return Ok(None),
        Some((Some(c), Some(k))) => (c, k),
        Some((Some(_), None)) => {
            return Err(config_err(
                "tls.certFile is set without tls.keyFile; set both or neither".into(),
            ));
        }
        Some((None, Some(_))) => {
            return Err(config_err(
                "tls.keyFile is set without tls.certFile; set both or neither".into(),
            ));
        }
    };
    let cert = std::fs::read(cert_file)
        .map_err(|e| config_err(format!("cannot read tls.certFile {cert_file}")).caused_by(e))?;
    match reqwest::Certificate::from_pem_bundle(&cert) {
        Ok(certs) if !certs.is_empty() => {}
        _ => {
            return Err(config_err(format!(
                "tls.certFile {cert_file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            )));
        }
    }
    let key = Zeroizing::new(
        std::fs::read(key_file)
            .map_err(|e| config_err(format!("cannot read tls.keyFile {key_file}")).caused_by(e))?,
    );
    // reqwest wants key and certificate in one PEM: joined in a wiped buffer.
    let mut pem = Zeroizing::new(Vec::with_capacity(key.len() + cert.len() + 1));
    pem.extend_from_slice(&key);
    pem.push(b'\n');
    pem.extend_from_slice(&cert);
    // Only reqwest's own message is kept ("private key or certificate not
    // found", ...): it never holds the key.
    reqwest::Identity::from_pem(&pem).map(Some).map_err(|e| {
        config_err(format!(
            "tls.keyFile {key_file} holds no usable private key for tls.certFile {cert_file}: it must be an unencrypted PEM key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
        ))
        .caused_by(e)
    })
}

/// The TLS alerts a server sends about the client certificate.
const CLIENT_CERT_ALERTS: [rustls::AlertDescription; 8] = {
    use rustls::AlertDescription as A;
    [
        A::CertificateRequired,
        A::BadCertificate,
        A::UnknownCA,
        A::CertificateUnknown,
        A::UnsupportedCertificate,
        A::CertificateExpired,
        A::CertificateRevoked,
        A::AccessDenied,
    ]
};

/// What a TLS alert from the node in `e`'s cause chain means for the
/// client certificate (a listener with
/// `tls_require_and_verify_client_cert`), and how to fix it; `None` for
/// any other failure.
pub(super) fn tls_refusal(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(alert) = client_cert_alert(err) {
            return Some(if alert == rustls::AlertDescription::CertificateRequired {
                "the node refused the TLS handshake: it requires a client certificate and none was presented; set spec.cluster.tls.certFile and keyFile to a certificate signed by the CA of the listener's tls_client_ca_file"
            } else {
                "the node refused the TLS handshake: it rejected the client certificate (spec.cluster.tls.certFile, or none); use one signed by the CA of the listener's tls_client_ca_file, valid now and made for client auth"
            });
        }
        cur = err.source();
    }
    None
}

/// The client-certificate alert `err` is, if any. Over HTTP/1 the rustls
/// error sits inside an io::Error (whose `source()` skips it); h2 keeps
/// only the io::Error's text, so that is compared with rustls's own
/// wording of each alert.
fn client_cert_alert(err: &(dyn std::error::Error + 'static)) -> Option<rustls::AlertDescription> {
    let inner = err
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref);
    let tls = err
        .downcast_ref::<rustls::Error>()
        .or_else(|| inner.and_then(|i| i.downcast_ref::<rustls::Error>()));
    if let Some(rustls::Error::AlertReceived(a)) = tls {
        return CLIENT_CERT_ALERTS.contains(a).then_some(*a);
    }
    let text = match inner {
        Some(i) => i.to_string(),
        None if err.is::<std::io::Error>() => err.to_string(),
        None => return None,
    };
    CLIENT_CERT_ALERTS
        .into_iter()
        .find(|a| rustls::Error::AlertReceived(*a).to_string() == text)
}

/// The client for one node, and the base URL its requests use.
pub(super) fn node_client(
    address: &Url,
    server_name: Option<&str>,
    roots: &[reqwest::Certificate],
    identity: Option<&reqwest::Identity>,
    timeouts: Timeouts,
) -> Result<(Url, reqwest::Client), ClientError> {
    if !matches!(address.scheme(), "http" | "https") {
        return Err(ClientError::Scheme {
            address: address.clone(),
        });
    }
    let host = address
        .host()
        .map(|h| h.to_owned())
        .ok_or_else(|| ClientError::NoHost {
            address: address.clone(),
        })?;
    let mut builder = reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .redirect(reqwest::redirect::Policy::none())
        // A fresh connection per request: a pooled connection to a node
        // that restarted fails mid-request and would read as a failure of
        // the node that is now up.
        .pool_max_idle_per_host(0)
        // HTTP/1.1 only: with no pooling h2's multiplexing is unused, and a
        // listener that refuses the client certificate sends its TLS alert
        // after the (TLS 1.3) handshake: HTTP/1.1 reads it as the answer
        // ([`tls_refusal`] names it), h2's connection task turns it into a
        // racy "connection closed".
        .http1_only()
        .no_proxy()
        .user_agent(concat!("snapward/", env!("CARGO_PKG_VERSION")));
    if !roots.is_empty() {
        builder = builder.tls_certs_only(roots.iter().cloned());
    }
    if let Some(id) = identity {
        builder = builder.identity(id.clone());
    }
    let mut base = address.clone();
    if let Some(name) = server_name
        && address.scheme() == "https"
        && !matches!(&host, Host::Domain(d) if d.eq_ignore_ascii_case(name))
    {
        base.set_host(Some(name))
            .map_err(|source| ClientError::ServerName {
                name: name.to_string(),
                source,
            })?;
        builder = builder.dns_resolver(Arc::new(PinnedResolver {
            server_name: name.to_string(),
            host,
        }));
    }
    let client = builder.build().map_err(ClientError::Build)?;
    Ok((base, client))
}

/// Resolves `server_name` to the node's configured host (see module docs);
/// any other name normally.
struct PinnedResolver {
    server_name: String,
    host: Host<String>,
}

impl reqwest::dns::Resolve for PinnedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let lookup: Result<String, IpAddr> =
            if name.as_str().eq_ignore_ascii_case(&self.server_name) {
                match &self.host {
                    Host::Ipv4(ip) => Err(IpAddr::V4(*ip)),
                    Host::Ipv6(ip) => Err(IpAddr::V6(*ip)),
                    Host::Domain(d) => Ok(d.clone()),
                }
            } else {
                Ok(name.as_str().to_string())
            };
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match lookup {
                // Port 0: reqwest uses the URL's port.
                Err(ip) => vec![SocketAddr::new(ip, 0)],
                Ok(domain) => tokio::net::lookup_host((domain.as_str(), 0))
                    .await?
                    .collect(),
            };
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}
