//! The HTTP client of the Coffer API: typed calls with the API's own wire
//! types (`coffer-wire`), errors decoded into [`ApiFailure`] (the API's
//! stable code, status and message), and lists followed page by page.

use anyhow::Context;
use coffer_wire::Page;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::profile;

/// An API failure, shown to the user with its code.
#[derive(Debug)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: u16,
    /// The API's stable error code, e.g. `DiskNotFound`.
    pub code: String,
    /// What went wrong and what to do next.
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{} {}]", self.message, self.status, self.code)
    }
}

impl std::error::Error for ApiFailure {}

/// How much of a list to fetch: the CLI pages through every item unless
/// `--max-items` says otherwise (as `aws` does).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Paging {
    /// Stop after this many items; if more remain, the token to go on
    /// from is printed on stderr (`NextToken: …`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_items: Option<u32>,
    /// Start where a previous `--max-items` listing stopped.
    #[arg(long, value_name = "TOKEN")]
    pub starting_token: Option<String>,
    /// Items fetched per API call (1 to 1000; default 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: Option<u32>,
}

/// Items of a list, and the token to go on from if `--max-items` cut it.
pub struct Listed<T> {
    /// The items, in the API's order.
    pub items: Vec<T>,
    /// Where to go on from, if more remain.
    pub next_token: Option<String>,
}

/// A client of one endpoint with one token.
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    token: zeroize::Zeroizing<String>,
    ca_cert: Option<String>,
    /// The remote's name, for a client of a remote (see
    /// [`Client::for_remote`]).
    remote: Option<String>,
}

impl Client {
    /// A client for `profile` (see [`profile::resolve`]).
    pub fn new(profile: Option<&str>) -> anyhow::Result<Self> {
        let r = profile::resolve(profile)?;
        Self::build(r.endpoint, r.token, r.ca_cert, None)
    }

    /// A client of remote `name` (`coffer remote add`): another
    /// deployment, with the endpoint, token and CA saved for it.
    pub fn for_remote(name: &str) -> anyhow::Result<Self> {
        let r = profile::remote(name)?;
        let (Some(endpoint), Some(token)) = (r.endpoint, r.token) else {
            anyhow::bail!(
                "remote {name} has no endpoint or no token: add it again with `coffer remote add {name} --endpoint URL --token-file FILE`"
            );
        };
        Self::build(
            endpoint.trim_end_matches('/').to_string(),
            token,
            r.ca_cert,
            Some(name.to_string()),
        )
    }

    fn build(
        endpoint: String,
        token: zeroize::Zeroizing<String>,
        ca_cert: Option<String>,
        remote: Option<String>,
    ) -> anyhow::Result<Self> {
        let mut http = reqwest::Client::builder();
        if let Some(pem) = &ca_cert {
            let ca =
                reqwest::Certificate::from_pem(pem.as_bytes()).with_context(|| match &remote {
                    Some(n) => format!("remote {n}'s CA certificate is not valid PEM"),
                    None => "the profile's CA certificate is not valid PEM".to_string(),
                })?;
            http = http.tls_certs_only([ca]);
        }
        Ok(Self {
            http: http.build().context("cannot set up the HTTP client")?,
            endpoint,
            token,
            ca_cert,
            remote,
        })
    }

    /// The CA certificate (PEM) this client trusts for the endpoint, if its
    /// profile names one (the deployment CA).
    pub fn ca_cert(&self) -> Option<&str> {
        self.ca_cert.as_deref()
    }

    /// The API endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `GET path`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(Method::GET, path, None::<&()>, None::<&()>).await
    }

    /// `GET path?query`.
    pub async fn get_with<Q: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Q,
    ) -> anyhow::Result<T> {
        let pairs = query_pairs(query)?;
        self.send(Method::GET, path, Some(&pairs), None::<&()>)
            .await
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(Method::POST, path, None::<&()>, Some(body)).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(Method::PATCH, path, None::<&()>, Some(body))
            .await
    }

    /// `POST path` without a body (actions such as attach).
    pub async fn action<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(Method::POST, path, None::<&()>, None::<&()>)
            .await
    }

    /// `DELETE path`.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(Method::DELETE, path, None::<&()>, None::<&()>)
            .await
    }

    /// `GET path?query`, following `next` until the list ends or
    /// `paging.max_items` items are in hand.
    pub async fn list<Q: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Q,
        paging: &Paging,
    ) -> anyhow::Result<Listed<T>> {
        let mut base = query_pairs(query)?;
        base.retain(|(k, _)| k != "limit" && k != "next");
        let mut items = Vec::new();
        let mut next = paging.starting_token.clone();
        loop {
            let want = paging
                .max_items
                .map(|m| m.saturating_sub(u32::try_from(items.len()).unwrap_or(u32::MAX)));
            let limit = match (paging.page_size, want) {
                (Some(p), Some(w)) => Some(p.min(w)),
                (p, None) => p,
                (None, Some(w)) => Some(w.min(coffer_wire::MAX_PAGE)),
            };
            let mut pairs = base.clone();
            if let Some(l) = limit {
                pairs.push(("limit".into(), l.to_string()));
            }
            if let Some(n) = &next {
                pairs.push(("next".into(), n.clone()));
            }
            let page: Page<T> = self
                .send(Method::GET, path, Some(&pairs), None::<&()>)
                .await?;
            items.extend(page.items);
            next = page.next;
            let full = paging.max_items.is_some_and(|m| items.len() >= m as usize);
            if next.is_none() || full {
                return Ok(Listed {
                    items,
                    next_token: next,
                });
            }
        }
    }

    async fn send<Q: Serialize + ?Sized, B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: Option<&Q>,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.endpoint);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(self.token.as_str());
        if let Some(q) = query {
            req = req.query(q);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| match &self.remote {
            Some(name) => anyhow::anyhow!(
                "cannot reach remote {name} at {}: {e}. Check its endpoint (`coffer remote list`; `coffer remote add {name} …` replaces it)",
                self.endpoint
            ),
            None => anyhow::anyhow!(
                "cannot reach the Coffer API at {}: {e}. Is `coffer serve` running? Check the endpoint of your profile (`coffer configure`) or COFFER_ENDPOINT",
                self.endpoint
            ),
        })?;
        let status = resp.status();
        let text = resp.text().await.context("reading the API's response")?;
        if status.is_success() {
            return serde_json::from_str(&text).with_context(|| {
                format!(
                    "the API answered {path} with a body this CLI does not understand (is the server a different version?): {}",
                    text.chars().take(200).collect::<String>()
                )
            });
        }
        let body: Option<coffer_wire::ErrorBody> = serde_json::from_str(&text).ok();
        Err(match body {
            Some(b) => ApiFailure {
                status: status.as_u16(),
                code: b.error.code.as_str().to_string(),
                message: b.error.message,
            },
            None => {
                // An error from something in front of the API (a proxy),
                // or a code this CLI does not know yet.
                let v: serde_json::Value =
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
                ApiFailure {
                    status: status.as_u16(),
                    code: v
                        .pointer("/error/code")
                        .and_then(|c| c.as_str())
                        .unwrap_or("Error")
                        .to_string(),
                    message: v
                        .pointer("/error/message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                }
            }
        }
        .into())
    }
}

/// A query struct (e.g. `coffer_wire::DiskQuery`) as `key=value` pairs,
/// unset fields left out.
fn query_pairs<Q: Serialize>(query: &Q) -> anyhow::Result<Vec<(String, String)>> {
    let v = serde_json::to_value(query).context("encoding the query")?;
    let serde_json::Value::Object(map) = v else {
        anyhow::bail!("a list query must be a struct");
    };
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some((k, s)),
            other => Some((k, other.to_string())),
        })
        .collect())
}

/// Percent-encode one path segment (ids are plain, but user input may not be).
pub fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
