//! Storage used per account over time: the sampler that records what every
//! account holds once per interval (`ServiceConfig::usage_interval`), and
//! the account's usage as the API and the console show it (the figures now
//! and the samples). Every node samples; samples are keyed by the start of
//! their interval, so a deployment keeps one per account per interval.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coffer_iam::{Action, Scope};
use coffer_meta::UsageRow;
use coffer_types::Kind;

use crate::access::*;
use crate::error::ErrorCode;
use crate::model::*;
use crate::*;

/// At most this many samples in one answer (the newest).
pub const MAX_USAGE_SAMPLES: u32 = 1000;

/// `t` as stored in a sample: RFC 3339 UTC, whole seconds.
fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The start of the interval of length `every` holding `t`.
fn interval_start(t: SystemTime, every: Duration) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let every = every.as_secs().max(1);
    UNIX_EPOCH + Duration::from_secs(secs - secs % every)
}

fn sample(r: &UsageRow, at: String) -> UsageSample {
    UsageSample {
        at,
        disks: r.disks,
        disk_bytes: r.disk_bytes,
        snapshots: r.snapshots,
        snapshot_bytes: r.snapshot_bytes,
        images: r.images,
        stored_bytes: r.stored_bytes,
    }
}

impl Service {
    /// Record one sample of every account's usage, at the start of the
    /// current interval, and forget samples older than the retention.
    pub async fn sample_usage(&self) -> Result<usize> {
        let now = SystemTime::now();
        let at = stamp(interval_start(now, self.config.usage_interval));
        let keep_from = stamp(
            now.checked_sub(self.config.usage_retention)
                .unwrap_or(UNIX_EPOCH),
        );
        if self.meta.usage_sampled(&at).await? {
            return Ok(0);
        }
        let rows = self.meta.measure_usage(None).await?;
        self.meta.record_usage(&at, &rows, &keep_from).await?;
        Ok(rows.len())
    }

    /// Sample usage now and at the start of every interval after.
    pub fn spawn_usage(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.sample_usage().await {
                    tracing::warn!(error = %e, "cannot sample storage usage; will retry");
                }
                let now = SystemTime::now();
                let next = interval_start(now, me.config.usage_interval) + me.config.usage_interval;
                let wait = next.duration_since(now).unwrap_or(Duration::from_secs(1));
                tokio::time::sleep(wait.max(Duration::from_millis(100))).await;
            }
        })
    }

    /// `account`'s usage: the figures now and the samples from `since`
    /// (RFC 3339; all kept when `None`). Readable by whoever may read the
    /// account's disks (the figures add up what those lists show).
    pub async fn account_usage(
        &self,
        caller: &Caller,
        account: &str,
        since: Option<&str>,
    ) -> Result<AccountUsage> {
        let id = parse_id(account, Kind::Account)?;
        self.check_scope(caller, Action::DisksRead, Scope::Id(id))
            .await?;
        let since = match since.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(stamp(humantime::parse_rfc3339_weak(s).map_err(|e| {
                ServiceError::new(
                    ErrorCode::InvalidFilter,
                    format!(
                        "since '{}' is not a time ({e}): give RFC 3339, e.g. 2027-01-31T00:00:00Z",
                        s.chars().take(40).collect::<String>()
                    ),
                )
            })?)),
        };
        let current = self
            .meta
            .measure_usage(Some(id))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| not_found_of(Scope::Id(id)))?;
        let samples = self
            .meta
            .usage_samples(id, since.as_deref(), MAX_USAGE_SAMPLES)
            .await?;
        Ok(AccountUsage {
            account_id: id.to_string(),
            interval_seconds: self.config.usage_interval.as_secs(),
            current: sample(&current, stamp(SystemTime::now())),
            samples: samples.iter().map(|r| sample(r, r.at.clone())).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_fall_on_interval_starts() {
        let t = UNIX_EPOCH + Duration::from_secs(3 * 3600 + 1234);
        let hour = Duration::from_secs(3600);
        assert_eq!(
            interval_start(t, hour),
            UNIX_EPOCH + Duration::from_secs(3 * 3600)
        );
        assert_eq!(stamp(interval_start(t, hour)), "1970-01-01T03:00:00Z");
        // A sub-second interval still moves on (at least one second).
        assert_eq!(interval_start(t, Duration::from_millis(10)), t);
    }
}
