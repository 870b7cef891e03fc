//! [`S3Store`]: objects in a bucket of any S3-compatible service (AWS S3,
//! Ceph RGW, MinIO, Garage, SeaweedFS...), through the `object_store`
//! crate, which signs requests, retries transient failures with
//! exponential backoff, and reads credentials from the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web
//! identity, instance metadata).
//!
//! A successful PUT is durable at once on S3, so [`ObjectStore::sync`] is a
//! no-op; the volume still commits a chunk map only after every object it
//! names was put successfully, so a failed upload never leaves a chunk map
//! pointing at a missing object. Objects are immutable: a put uses
//! `If-None-Match: *` and a second put of a key is `AlreadyExists`.
//!
//! Chunk objects are at most a few MiB, below the size where multipart
//! uploads pay off, so every put is one request.

use std::ops::Range;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt as _, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore as _, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};

use crate::{ObjectStore, StoreError, validate_key};

/// Where an [`S3Store`] keeps its objects, parsed from
/// `s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION&ca_cert=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`), may be empty.
    pub prefix: String,
    /// Endpoint URL of an S3-compatible service; `None` for AWS.
    pub endpoint: Option<String>,
    /// Region (`us-east-1` when not given).
    pub region: String,
    /// Take credentials from the instance/container metadata service when
    /// the environment has none (`credentials=instance`). Off by default:
    /// a private cloud has no such service, and a clear "no credentials"
    /// error beats a request to a link-local address.
    pub instance_credentials: bool,
    /// A PEM file of CA certificates that an `https://` endpoint's
    /// certificate must chain to (a private CA), instead of the system's
    /// roots (`ca_cert=PATH`).
    pub ca_cert: Option<std::path::PathBuf>,
}

impl S3Location {
    /// Parse an `s3://` URL.
    ///
    /// # Errors
    /// [`StoreError::InvalidKey`] naming what is wrong.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::InvalidKey(format!("store URL '{url}': {why}"));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("must start with s3://"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket name"));
        }
        let mut loc = Self {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: None,
            region: "us-east-1".into(),
            instance_credentials: false,
            ca_cert: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("endpoint", v)) => loc.endpoint = Some(v.to_string()),
                Some(("region", v)) => loc.region = v.to_string(),
                Some(("credentials", "instance")) => loc.instance_credentials = true,
                Some(("ca_cert", v)) if !v.is_empty() => loc.ca_cert = Some(v.into()),
                _ => {
                    return Err(bad(
                        "unknown parameter (use endpoint=URL, region=NAME, credentials=instance, ca_cert=PATH)",
                    ));
                }
            }
        }
        Ok(loc)
    }
}

/// An object store in an S3 bucket.
#[derive(Debug)]
pub struct S3Store {
    s3: AmazonS3,
    loc: S3Location,
}

fn io(key: &str, e: object_store::Error) -> StoreError {
    if e.to_string().contains("<Code>NoSuchBucket</Code>") {
        return StoreError::Io {
            key: key.to_string(),
            cause: std::io::Error::other(
                "the bucket does not exist: create it first (e.g. `aws s3 mb s3://BUCKET`)",
            ),
        };
    }
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound(key.to_string()),
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            StoreError::AlreadyExists(key.to_string())
        }
        other => StoreError::Io {
            key: key.to_string(),
            cause: std::io::Error::other(other),
        },
    }
}

impl S3Store {
    /// Connect to the bucket at `loc`, with credentials from the
    /// environment. Plain `http://` endpoints are allowed (a service on
    /// loopback or a private network).
    ///
    /// # Errors
    /// If the configuration is unusable (no credentials, bad endpoint).
    pub fn open(loc: S3Location) -> Result<Self, StoreError> {
        Self::open_with(loc, None)
    }

    /// As [`S3Store::open`], with explicit credentials `(access key id,
    /// secret access key)` instead of the environment's.
    ///
    /// # Errors
    /// If the configuration is unusable.
    pub fn open_with(
        loc: S3Location,
        credentials: Option<(&str, &str)>,
    ) -> Result<Self, StoreError> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&loc.bucket)
            .with_region(&loc.region);
        if let Some((id, secret)) = credentials {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        } else if !loc.instance_credentials
            && [
                "AWS_ACCESS_KEY_ID",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ]
            .iter()
            .all(|v| std::env::var_os(v).is_none())
        {
            return Err(StoreError::Io {
                key: format!("s3://{}", loc.bucket),
                cause: std::io::Error::other(
                    "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                     (or add credentials=instance to the store URL to use the instance metadata service)",
                ),
            });
        }
        if let Some(e) = &loc.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if let Some(path) = &loc.ca_cert {
            let unusable = |why: String| StoreError::Io {
                key: format!("s3://{}", loc.bucket),
                cause: std::io::Error::other(format!("ca_cert {}: {why}", path.display())),
            };
            let pem = std::fs::read(path).map_err(|e| unusable(e.to_string()))?;
            let certs = object_store::Certificate::from_pem_bundle(&pem)
                .map_err(|e| unusable(e.to_string()))?;
            if certs.is_empty() {
                return Err(unusable("no certificate in it".into()));
            }
            let mut options = object_store::ClientOptions::new().with_no_system_certificates(true);
            for c in certs {
                options = options.with_root_certificate(c);
            }
            b = b.with_client_options(options);
        }
        let s3 = b.build().map_err(|e| io(&loc.bucket, e))?;
        Ok(Self { s3, loc })
    }

    fn path(&self, key: &str) -> Path {
        if self.loc.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.loc.prefix))
        }
    }

    /// The store key of a bucket path, if it is under this store's prefix.
    fn strip<'a>(&self, p: &'a str) -> Option<&'a str> {
        if self.loc.prefix.is_empty() {
            Some(p)
        } else {
            p.strip_prefix(&self.loc.prefix)
                .and_then(|r| r.strip_prefix('/'))
        }
    }
}

impl S3Store {
    /// Number and total bytes of the objects under `prefix`, from the
    /// listing alone (no object is read): for usage reports and tests.
    ///
    /// # Errors
    /// If the listing fails.
    pub async fn usage(&self, prefix: &str) -> Result<(u64, u64), StoreError> {
        let objects = self.listing(prefix).await?;
        Ok((objects.len() as u64, objects.iter().map(|o| o.1).sum()))
    }

    /// `(key, size)` of every object whose key starts with `prefix`.
    async fn listing(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        // S3 lists by string prefix; object_store by whole path segments:
        // list the enclosing directory, then filter.
        let dir = prefix.trim_end_matches('/');
        let base = if !dir.is_empty() {
            Some(self.path(dir))
        } else if self.loc.prefix.is_empty() {
            None
        } else {
            Some(Path::from(self.loc.prefix.as_str()))
        };
        let metas: Vec<object_store::ObjectMeta> = self
            .s3
            .list(base.as_ref())
            .try_collect()
            .await
            .map_err(|e| io(prefix, e))?;
        Ok(metas
            .iter()
            .filter_map(|m| Some((self.strip(m.location.as_ref())?, m.size)))
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, size)| (k.to_string(), size))
            .collect())
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        validate_key(key)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.s3
            .put_opts(&self.path(key), PutPayload::from(data), opts)
            .await
            .map_err(|e| match e {
                // A put cannot miss its object: the bucket is what is missing.
                object_store::Error::NotFound { .. } => StoreError::Io {
                    key: key.to_string(),
                    cause: std::io::Error::other(format!(
                        "bucket '{}' does not exist or is not accessible with these credentials",
                        self.loc.bucket
                    )),
                },
                other => io(key, other),
            })?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<BytesMut, StoreError> {
        validate_key(key)?;
        let r = self.s3.get(&self.path(key)).await.map_err(|e| io(key, e))?;
        let b = r.bytes().await.map_err(|e| io(key, e))?;
        // Callers open objects in place: hand over an owned, mutable buffer.
        Ok(BytesMut::from(&b[..]))
    }

    /// One ranged GET in the common case. S3 answers a range that starts
    /// at or past the end of the object (every range of an empty object)
    /// with 416 InvalidRange, which `object_store` reports as an untyped
    /// error: on such an error a HEAD tells a range past the end (empty
    /// bytes) from a real failure (the error).
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        validate_key(key)?;
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let path = self.path(key);
        match self.s3.get_range(&path, range.clone()).await {
            Ok(b) => Ok(b),
            Err(e @ object_store::Error::Generic { .. }) => match self.s3.head(&path).await {
                Ok(meta) if meta.size <= range.start => Ok(Bytes::new()),
                Err(object_store::Error::NotFound { .. }) => {
                    Err(StoreError::NotFound(key.to_string()))
                }
                _ => Err(io(key, e)),
            },
            Err(e) => Err(io(key, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        match self.s3.delete(&self.path(key)).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io(key, e)),
        }
    }

    /// DeleteObjects requests of up to 1000 keys each (`object_store`'s
    /// `delete_stream`, up to 20 requests at a time). S3 reports a missing
    /// key as deleted; a per-key `NoSuchKey` error, which some compatible
    /// services send instead, counts as deleted too.
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            validate_key(key)?;
        }
        let Some(first_key) = keys.first() else {
            return Ok(());
        };
        let paths: Vec<object_store::Result<Path>> =
            keys.iter().map(|k| Ok(self.path(k))).collect();
        let mut results = self.s3.delete_stream(futures::stream::iter(paths).boxed());
        let what = if keys.len() == 1 {
            first_key.clone()
        } else {
            format!("{first_key} and {} more", keys.len() - 1)
        };
        let mut first = None;
        while let Some(r) = results.next().await {
            let Err(e) = r else { continue };
            if e.to_string().contains("(code: NoSuchKey)") {
                continue;
            }
            // A missing bucket is an error (`io` says so), a missing key is not.
            match io(&what, e) {
                StoreError::NotFound(_) => {}
                e => {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .listing(prefix)
            .await?
            .into_iter()
            .map(|o| o.0)
            .collect())
    }

    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "s3://{}/{}{}",
            self.loc.bucket,
            self.loc.prefix,
            self.loc
                .endpoint
                .as_ref()
                .map(|e| format!(" at {e}"))
                .unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_store_urls() {
        let l =
            S3Location::parse("s3://bucket/coffer/prod?endpoint=http://127.0.0.1:9000&region=eu-1")
                .unwrap();
        assert_eq!(l.bucket, "bucket");
        assert_eq!(l.prefix, "coffer/prod");
        assert_eq!(l.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(l.region, "eu-1");
        assert!(!l.instance_credentials);
        assert!(
            S3Location::parse("s3://b?credentials=instance")
                .unwrap()
                .instance_credentials
        );
        let l = S3Location::parse("s3://b").unwrap();
        assert_eq!(
            (l.prefix.as_str(), l.region.as_str(), l.endpoint),
            ("", "us-east-1", None)
        );
        for bad in [
            "http://b",
            "s3://",
            "s3:///x",
            "s3://b?color=red",
            "s3://b?credentials=x",
        ] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
    }
}
