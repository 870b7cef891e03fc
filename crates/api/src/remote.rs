//! The client side of a copy between two deployments: [`HttpRemotes`]
//! reads another deployment's export over HTTP(S) (`/v1/pull/…`) with the
//! export's pull token, for an import's copy job. `serve` gives it to the
//! service ([`coffer_service::Service::set_remotes`]), which knows no HTTP.
//!
//! Each request goes to the endpoint the import named and nowhere else: no
//! proxy, no redirects, and the sender's certificate checked against the
//! CA the import gave (or the system's roots). What the sender answers is
//! checked for shape (a map covers exactly the range asked, data has the
//! length asked); its truth is checked by the copy's verification (the
//! receiver's copy read back against the sender's own hash).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use coffer_service::model::{Export, ExportChanged, ExportHash, ExportRun};
use coffer_service::source::{CopySource, RemoteExport, Remotes, WINDOW};
use coffer_service::{ErrorCode, ServiceError};
use coffer_wire::ErrorBody;

/// Largest map asked in one request (the sender's limit).
const MAP_STEP: u64 = 1 << 30;
/// Most chunks asked in one changed-chunks request (the sender's limit).
const CHANGED_STEP: u64 = 1 << 16;

/// Clients of other deployments' exports, one HTTP client per CA.
#[derive(Default)]
pub struct HttpRemotes {
    clients: Mutex<HashMap<Option<String>, reqwest::Client>>,
}

impl HttpRemotes {
    /// A new set of clients.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn client(&self, ca: Option<&str>) -> Result<reqwest::Client, ServiceError> {
        let key = ca.map(str::to_string);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600));
        if let Some(pem) = ca {
            let cert = reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|e| {
                ServiceError::new(
                    ErrorCode::InvalidBody,
                    format!("ca_pem is not a PEM certificate: {e}"),
                )
            })?;
            b = b.tls_certs_only([cert]);
        }
        let c = b
            .build()
            .map_err(|e| ServiceError::internal(format!("HTTP client: {e}")))?;
        clients.insert(key, c.clone());
        Ok(c)
    }
}

/// The URL of `segments` under the export's endpoint. The endpoint is
/// checked first: http(s) with a host and nothing else (no user
/// information, query or fragment); plain `http` only to a loopback host
/// (the pull token and the data would otherwise cross the network in
/// clear); never a link-local address (169.254.0.0/16, fe80::/10: cloud
/// instance metadata services live there).
fn url(at: &RemoteExport, segments: &[&str]) -> Result<reqwest::Url, ServiceError> {
    let refuse = |why: &str| {
        ServiceError::new(
            ErrorCode::InvalidBody,
            format!("endpoint '{}' {why}", at.endpoint),
        )
    };
    let mut u =
        reqwest::Url::parse(&at.endpoint).map_err(|e| refuse(&format!("is not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") || u.cannot_be_a_base() {
        return Err(refuse("is not an http(s) URL"));
    }
    if !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
    {
        return Err(refuse(
            "may not carry user information, a query or a fragment",
        ));
    }
    let ip = match u.host() {
        Some(url::Host::Ipv4(a)) => Some(std::net::IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => Some(std::net::IpAddr::V6(a)),
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            Some(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        }
        Some(url::Host::Domain(_)) => None,
        None => return Err(refuse("has no host")),
    };
    let link_local = match ip {
        Some(std::net::IpAddr::V4(a)) => a.is_link_local(),
        Some(std::net::IpAddr::V6(a)) => (a.segments()[0] & 0xffc0) == 0xfe80,
        None => false,
    };
    if link_local {
        return Err(refuse(
            "is a link-local address, which an import never reads from",
        ));
    }
    if u.scheme() == "http" && !ip.is_some_and(|a| a.is_loopback()) {
        return Err(refuse(
            "is plain http to another host: the pull token and the data would cross the network in clear; use https (the sender's `coffer serve --tls`)",
        ));
    }
    u.path_segments_mut()
        .map_err(|()| ServiceError::internal("endpoint without a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(u)
}

/// The body of `resp`, refused past `cap` bytes (announced or received):
/// a sender, or whatever an endpoint turns out to be, cannot make this side
/// buffer without bound.
async fn capped(
    at: &RemoteExport,
    mut resp: reqwest::Response,
    cap: u64,
) -> Result<Bytes, ServiceError> {
    let too_big = || {
        ServiceError::new(
            ErrorCode::RemoteUnavailable,
            format!(
                "the sending deployment at {} answered more than the {cap} bytes asked for",
                at.endpoint
            ),
        )
    };
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(too_big());
    }
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        ServiceError::new(
            ErrorCode::RemoteUnavailable,
            format!(
                "the sending deployment at {} broke off an answer: {}",
                at.endpoint,
                chain(&e)
            ),
        )
    })? {
        if out.len() as u64 + chunk.len() as u64 > cap {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// Largest JSON answer taken from a sender (a map of 1 GiB, 65,536 changed
/// chunks, an export's description are all far below).
const MAX_JSON: u64 = 4 << 20;
/// Largest error body taken from a sender.
const MAX_ERROR: u64 = 4 << 10;

/// Every error of a transport, with its causes (a TLS failure's reason is
/// in a source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// GET `u` with the pull token; the response if it succeeded, else the
/// sender's refusal as this side's error.
async fn get(
    client: &reqwest::Client,
    at: &RemoteExport,
    u: reqwest::Url,
) -> Result<reqwest::Response, ServiceError> {
    let resp = client
        .get(u)
        .bearer_auth(at.token.as_str())
        .send()
        .await
        .map_err(|e| {
            ServiceError::new(
                ErrorCode::RemoteUnavailable,
                format!(
                    "cannot reach the sending deployment at {}: {}",
                    at.endpoint,
                    chain(&e)
                ),
            )
        })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = capped(at, resp, MAX_ERROR)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let (code, message) = match serde_json::from_str::<ErrorBody>(&body) {
        Ok(b) => (Some(b.error.code), b.error.message),
        Err(_) => (None, body.chars().take(200).collect()),
    };
    Err(match (status.as_u16(), code) {
        (401 | 404, _) => ServiceError::new(
            ErrorCode::ExportNotFound,
            format!(
                "the sending deployment at {} refuses export {}: {message}",
                at.endpoint, at.export_id
            ),
        ),
        (408 | 429 | 500..=599, _) | (_, None) => ServiceError::new(
            ErrorCode::RemoteUnavailable,
            format!(
                "the sending deployment at {} answered {status}: {message}",
                at.endpoint
            ),
        ),
        (_, Some(code)) => ServiceError::internal(format!(
            "the sending deployment at {} refused a request of this one ({code}): {message}",
            at.endpoint
        )),
    })
}

/// A JSON answer.
async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    at: &RemoteExport,
    u: reqwest::Url,
) -> Result<T, ServiceError> {
    let body = capped(at, get(client, at, u).await?, MAX_JSON).await?;
    serde_json::from_slice(&body).map_err(|e| {
        ServiceError::new(
            ErrorCode::RemoteUnavailable,
            format!(
                "the sending deployment at {} answered something that is not an export's: {e}",
                at.endpoint
            ),
        )
    })
}

#[async_trait]
impl Remotes for HttpRemotes {
    async fn describe(&self, at: &RemoteExport) -> Result<Export, ServiceError> {
        let client = self.client(at.ca_pem.as_deref())?;
        let e: Export = get_json(&client, at, url(at, &["v1", "pull", &at.export_id])?).await?;
        if e.id != at.export_id {
            return Err(ServiceError::new(
                ErrorCode::RemoteUnavailable,
                format!(
                    "the sending deployment at {} described export {} when asked for {}",
                    at.endpoint, e.id, at.export_id
                ),
            ));
        }
        Ok(e)
    }

    fn source(&self, at: &RemoteExport, role: &str, size: u64) -> Arc<dyn CopySource> {
        Arc::new(RemoteSource {
            client: self.client(at.ca_pem.as_deref()),
            at: at.clone(),
            role: role.to_string(),
            size,
        })
    }
}

/// One member of another deployment's export, read over HTTP(S).
struct RemoteSource {
    client: Result<reqwest::Client, ServiceError>,
    at: RemoteExport,
    role: String,
    size: u64,
}

impl RemoteSource {
    fn client(&self) -> Result<&reqwest::Client, ServiceError> {
        self.client.as_ref().map_err(Clone::clone)
    }

    fn url(&self, what: &str, query: &[(&str, u64)]) -> Result<reqwest::Url, ServiceError> {
        let mut u = url(
            &self.at,
            &[
                "v1",
                "pull",
                &self.at.export_id,
                "members",
                &self.role,
                what,
            ],
        )?;
        {
            let mut q = u.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, &v.to_string());
            }
        }
        Ok(u)
    }

    fn bad(&self, what: String) -> ServiceError {
        ServiceError::new(
            ErrorCode::RemoteUnavailable,
            format!("the sending deployment at {} {what}", self.at.endpoint),
        )
    }
}

#[async_trait]
impl CopySource for RemoteSource {
    async fn allocation(&self, offset: u64, length: u64) -> Result<Vec<(u64, bool)>, ServiceError> {
        if offset.checked_add(length).is_none_or(|end| end > self.size) {
            return Err(ServiceError::internal("a map beyond the export's size"));
        }
        let mut out: Vec<(u64, bool)> = vec![];
        let mut off = offset;
        while off < offset + length {
            let len = MAP_STEP.min(offset + length - off);
            let u = self.url("map", &[("offset", off), ("length", len)])?;
            let runs: Vec<ExportRun> = get_json(self.client()?, &self.at, u).await?;
            let sum = runs.iter().try_fold(0u64, |a, r| a.checked_add(r.length));
            if sum != Some(len) || runs.iter().any(|r| r.length == 0) {
                return Err(self.bad(format!(
                    "answered a map of {sum:?} bytes for {len} at {off}"
                )));
            }
            for r in runs {
                match out.last_mut() {
                    Some(last) if last.1 == r.hole => last.0 += r.length,
                    _ => out.push((r.length, r.hole)),
                }
            }
            off += len;
        }
        Ok(out)
    }

    async fn read(&self, offset: u64, length: u64) -> Result<Bytes, ServiceError> {
        let mut parts = bytes::BytesMut::with_capacity(usize::try_from(length).unwrap_or(0));
        let mut off = offset;
        while off < offset + length {
            let len = WINDOW.min(offset + length - off);
            let u = self.url("data", &[("offset", off), ("length", len)])?;
            let data = capped(&self.at, get(self.client()?, &self.at, u).await?, len).await?;
            if data.len() as u64 != len {
                return Err(self.bad(format!(
                    "answered {} bytes for a read of {len} at {off}",
                    data.len()
                )));
            }
            if off == offset && len == length {
                return Ok(data);
            }
            parts.extend_from_slice(&data);
            off += len;
        }
        Ok(parts.freeze())
    }

    async fn changed(&self, after: u64, from: u64, to: u64) -> Result<Vec<u64>, ServiceError> {
        let mut out = vec![];
        let mut at = from;
        while at < to {
            let end = (at + CHANGED_STEP).min(to);
            let u = self.url("changed", &[("after", after), ("from", at), ("to", end)])?;
            let c: ExportChanged = get_json(self.client()?, &self.at, u).await?;
            if c.chunks.iter().any(|i| *i < at || *i >= end)
                || c.chunks.windows(2).any(|w| w[0] >= w[1])
            {
                return Err(self.bad(format!(
                    "answered changed chunks outside {at}..{end}, or out of order"
                )));
            }
            out.extend(c.chunks);
            at = end;
        }
        Ok(out)
    }

    async fn own_hash(
        &self,
        changed_after: Option<u64>,
        offset: u64,
        length: u64,
    ) -> Result<Option<String>, ServiceError> {
        let mut q = vec![("offset", offset), ("length", length)];
        q.extend(changed_after.map(|a| ("changed_after", a)));
        let h: ExportHash = get_json(self.client()?, &self.at, self.url("hash", &q)?).await?;
        if !coffer_crypto::Blake3::is_tagged(&h.hash) {
            return Err(self.bad(format!(
                "answered a hash that is not a BLAKE3 one (`blake3:` and 64 hex digits): {:?}",
                h.hash
            )));
        }
        Ok(Some(h.hash))
    }
}
