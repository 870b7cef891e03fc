//! TLS for `coffer serve`'s listeners: when it is on (a listener off
//! loopback without `--insecure-plaintext`, or `--tls`, or an operator
//! certificate), which certificate serves, and the names it carries.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use coffer_keyvault::tls::{load_certs, load_pem, server_config};
use coffer_keyvault::{DeploymentCa, RootKey};
use coffer_meta::Meta;

use super::ServeOptions;
use crate::files::set_private;

/// The listeners' TLS configurations, and the CA clients should trust (the
/// deployment CA's certificate, unless the operator gave a certificate).
pub(crate) struct Tls {
    pub api: Arc<rustls::ServerConfig>,
    pub nbd: Arc<rustls::ServerConfig>,
    pub ca_pem: Option<String>,
}

/// Whether the listeners serve TLS; warns (every start) when plaintext is
/// allowed off loopback.
pub(crate) fn wanted(o: &ServeOptions, api: SocketAddr, nbd: SocketAddr) -> bool {
    let off_loopback = !api.ip().is_loopback() || !nbd.ip().is_loopback();
    let tls = o.tls
        || o.tls_cert.is_some()
        || o.tls_client_ca.is_some()
        || (off_loopback && !o.insecure_plaintext);
    if off_loopback && !tls {
        eprintln!(
            "warning: --insecure-plaintext: the API ({api}) or NBD ({nbd}) listens off loopback without TLS; bearer tokens, export names and disk data cross the network in clear"
        );
    }
    tls
}

/// The host of a `http(s)://HOST:PORT/...` URL or a `HOST:PORT`.
fn host_of(s: &str) -> Option<String> {
    let rest = s.split_once("://").map_or(s, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// Set up TLS: the operator's certificate, or one issued now from the
/// deployment CA for this node's names and addresses.
pub(crate) async fn setup(
    o: &ServeOptions,
    meta: &Meta,
    root: &dyn RootKey,
    listeners: [SocketAddr; 2],
    data_dir: &Path,
) -> anyhow::Result<Tls> {
    let (chain, key, ca_pem) = match (&o.tls_cert, &o.tls_key) {
        (Some(cert), Some(key)) => {
            let (chain, key) = load_pem(cert, key)?;
            (chain, key, None)
        }
        (None, None) => {
            let ca = DeploymentCa::load_or_create(meta, root)
                .await
                .context("cannot load or create the deployment's TLS CA")?;
            let mut names = vec!["localhost".to_string()];
            let mut ips: Vec<IpAddr> =
                vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
            if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
                let h = h.trim();
                if !h.is_empty() {
                    names.push(h.to_string());
                }
            }
            let advertised = [o.advertise_api.as_deref(), o.advertise_nbd.as_deref()];
            for host in advertised.into_iter().flatten().filter_map(host_of) {
                match host.parse::<IpAddr>() {
                    Ok(ip) => ips.push(ip),
                    Err(_) => names.push(host),
                }
            }
            ips.extend(
                listeners
                    .iter()
                    .map(SocketAddr::ip)
                    .filter(|ip| !ip.is_unspecified()),
            );
            names.sort();
            names.dedup();
            ips.sort();
            ips.dedup();
            let (chain, key) = ca.issue_server(&names, &ips)?;
            // Public: clients copy it to trust this deployment.
            let dir = data_dir.join("tls");
            std::fs::create_dir_all(&dir)?;
            set_private(&dir)?;
            std::fs::write(dir.join("ca.pem"), ca.cert_pem())
                .with_context(|| format!("cannot write {}", dir.join("ca.pem").display()))?;
            tracing::info!(
                ?names,
                ?ips,
                "TLS certificate issued from the deployment CA"
            );
            (chain, key, Some(ca.cert_pem().to_string()))
        }
        _ => anyhow::bail!("give both --tls-cert and --tls-key, or neither"),
    };
    let client_cas = o
        .tls_client_ca
        .as_deref()
        .map(load_certs)
        .transpose()
        .context("--tls-client-ca")?;
    Ok(Tls {
        api: server_config(chain.clone(), key.clone_key(), &[b"http/1.1"], None)?,
        nbd: server_config(chain, key, &[], client_cas)?,
        ca_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn hosts_of_urls_and_endpoints() {
        assert_eq!(
            host_of("https://10.0.0.5:8787").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            host_of("http://node1.example:8787/x").as_deref(),
            Some("node1.example")
        );
        assert_eq!(host_of("[fd00::5]:10809").as_deref(), Some("fd00::5"));
        assert_eq!(host_of("node2:10809").as_deref(), Some("node2"));
    }
}
