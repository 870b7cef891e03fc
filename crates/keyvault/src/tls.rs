//! The deployment's TLS certificate authority. Made on the first start that
//! needs TLS without operator certificates: an ECDSA P-256 CA whose private
//! key is stored only wrapped by the root key (setting `tls_ca`, with the
//! CA certificate, which is public), so a copy of the data dir or database
//! yields no TLS key. Every node issues itself a fresh server certificate
//! from it at each start (its names and addresses as SANs), held in memory
//! only. Clients trust the CA certificate (written to the CLI profile and
//! `<data dir>/tls/ca.pem`).

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use crate::{Result, RootKey, VaultError};
use coffer_meta::Meta;

/// The setting holding the CA: `{"cn", "cert_pem", "key"}` (key: root-wrapped
/// PKCS#8, hex).
const SETTING: &str = "tls_ca";

fn err(what: &str, e: impl std::fmt::Display) -> VaultError {
    VaultError::Root(format!("TLS {what}: {e}"))
}

/// The deployment CA, its key unwrapped in memory.
pub struct DeploymentCa {
    cn: String,
    cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for DeploymentCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentCa")
            .field("cn", &self.cn)
            .finish_non_exhaustive()
    }
}

fn ca_params(cn: &str) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "Coffer");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(20 * 365);
    Ok(p)
}

impl DeploymentCa {
    /// The deployment's CA, made (and stored, wrapped by `root`) on first
    /// use. Several nodes starting at once agree on one: the first stored
    /// wins and the others load it.
    pub async fn load_or_create(meta: &Meta, root: &dyn RootKey) -> Result<Self> {
        let stored = match meta.setting(SETTING).await? {
            Some(s) => s,
            None => {
                let mut raw = [0u8; 8];
                coffer_crypto::random_bytes(&mut raw);
                let cn = format!("Coffer deployment CA {}", hex::encode(raw));
                let key = KeyPair::generate().map_err(|e| err("CA key", e))?;
                let cert = ca_params(&cn)?
                    .self_signed(&key)
                    .map_err(|e| err("CA certificate", e))?;
                let pkcs8 = Zeroizing::new(key.serialize_der());
                let wrapped = root.wrap(&pkcs8).await?;
                let value = serde_json::json!({
                    "cn": cn,
                    "cert_pem": cert.pem(),
                    "key": hex::encode(wrapped),
                })
                .to_string();
                meta.setting_init(SETTING, &value).await?
            }
        };
        let v: serde_json::Value =
            serde_json::from_str(&stored).map_err(|e| err("stored CA", e))?;
        let field = |k: &str| {
            v[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| err("stored CA", format!("no {k}")))
        };
        let wrapped = hex::decode(field("key")?).map_err(|e| err("stored CA key", e))?;
        let pkcs8 = root.unwrap(&wrapped).await?;
        // Borrowed from the zeroizing buffer: no loose copy here. (rcgen's
        // KeyPair keeps one DER copy of its own while the CA is in memory,
        // at start-up; it is freed, not wiped: docs/SECURITY.md.)
        let der = PrivatePkcs8KeyDer::from(&pkcs8[..]);
        let key = KeyPair::try_from(&der).map_err(|e| err("stored CA key", e))?;
        Ok(Self {
            cn: field("cn")?,
            cert_pem: field("cert_pem")?,
            key,
        })
    }

    /// The CA certificate (PEM), for clients to trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A fresh server certificate for `names` (DNS names) and `ips`, valid
    /// for a year, with its private key; the chain is [server, CA].
    pub fn issue_server(
        &self,
        names: &[String],
        ips: &[IpAddr],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let sans: Vec<String> = names
            .iter()
            .cloned()
            .chain(ips.iter().map(IpAddr::to_string))
            .collect();
        let mut p = CertificateParams::new(sans).map_err(|e| err("server certificate", e))?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().map_or("coffer", String::as_str),
        );
        p.distinguished_name = dn;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::days(365);
        let key = KeyPair::generate().map_err(|e| err("server key", e))?;
        let issuer = Issuer::new(ca_params(&self.cn)?, &self.key);
        let cert = p
            .signed_by(&key, &issuer)
            .map_err(|e| err("server certificate", e))?;
        let ca = rustls::pki_types::pem::PemObject::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| err("CA certificate", e))?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), ca], key_der))
    }
}

/// A rustls server configuration serving `chain` with `key`, offering the
/// ALPN protocols `alpn` (none for NBD; `http/1.1` for the API).
///
/// With `client_cas`, every client must present a certificate chaining to
/// one of them (mutual TLS); without, clients are not asked for one.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
    client_cas: Option<Vec<CertificateDer<'static>>>,
) -> Result<std::sync::Arc<rustls::ServerConfig>> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("configuration", e))?;
    let builder = match client_cas {
        None => builder.with_no_client_auth(),
        Some(cas) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in cas {
                roots.add(ca).map_err(|e| err("client CA certificate", e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| err("client CA certificates", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut c = builder
        .with_single_cert(chain, key)
        .map_err(|e| err("certificate and key", e))?;
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(std::sync::Arc::new(c))
}

/// The certificates of a PEM file (at least one), e.g. CAs to trust.
pub fn load_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| err(&format!("certificate file {}", path.display()), e))?;
    if certs.is_empty() {
        return Err(err(
            &format!("certificate file {}", path.display()),
            "no certificate in it",
        ));
    }
    Ok(certs)
}

/// An operator's certificate chain and private key, from PEM files.
pub fn load_pem(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    use rustls::pki_types::pem::PemObject;
    let chain = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| err(&format!("key file {}", key.display()), e))?;
    Ok((chain, key))
}
