//! `coffer job …`: background jobs (re-encrypting copies): list, show,
//! wait (a progress bar), cancel.

use clap::Subcommand;
use coffer_types::ImageState;
use coffer_types::Kind;
use coffer_wire::{Image, Job, JobQuery, Snapshot};

use crate::client::{Client, Paging, seg};
use crate::output::{Output, View};

/// A job's table columns.
pub const COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("KIND", "/kind"),
    ("STATE", "/state"),
    ("SOURCE", "/source_id"),
    ("TARGET", "/target_id"),
    ("DONE", "/bytes_done"),
    ("TOTAL", "/bytes_total"),
    ("CREATED", "/created_at"),
];

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Jobs of the accounts whose snapshots you may see, oldest first.
    List {
        /// Only jobs in this state: running, succeeded, failed, cancelled.
        #[arg(long)]
        state: Option<String>,
        /// Only jobs of this account (id or name).
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// A job's state and progress.
    Show {
        /// Job id.
        job: String,
    },
    /// Wait for a job to end, with a progress bar; then show what it made.
    Wait {
        /// Job id.
        job: String,
        /// Give up after this many seconds (the job goes on).
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Cancel a running job: nothing of the copy stays.
    Cancel {
        /// Job id.
        job: String,
    },
}

/// How long one poll of a running job waits on the server (`wait_ms`):
/// the progress bar moves this often, and a job that ends is seen at once.
const POLL_MS: u64 = 250;

/// Wait for job `id` with a progress bar (bytes, rate, ETA), then show
/// the snapshot it made; fail naming the reason if it failed.
pub async fn wait(c: &Client, out: &Output, id: &str, timeout: u64) -> anyhow::Result<()> {
    let path = format!("/v1/jobs/{}", seg(id));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let bar = progress_bar()?;
    let mut first = true;
    loop {
        // The first look answers at once; the next ones wait on the server
        // for the job to end, up to POLL_MS.
        let wait = if first { 0 } else { POLL_MS };
        first = false;
        let asked = std::time::Instant::now();
        let j: Job = c.get(&format!("{path}?wait_ms={wait}")).await?;
        bar.set_length(j.bytes_total);
        bar.set_position(j.bytes_done);
        bar.set_message(j.message.clone().unwrap_or_else(|| j.state.clone()));
        match j.state.as_str() {
            "succeeded" => {
                bar.finish_and_clear();
                if let Some(image) = &j.image_id {
                    let i: Image = c.get(&format!("/v1/images/{}", seg(image))).await?;
                    return out.show(&i, View::Fields);
                }
                let s: Snapshot = c
                    .get(&format!("/v1/snapshots/{}", seg(&j.target_id)))
                    .await?;
                return out.show(&s, View::Fields);
            }
            "failed" | "cancelled" => {
                bar.abandon();
                anyhow::bail!(
                    "job {id} {}: {}; nothing of the copy was kept",
                    j.state,
                    j.message.unwrap_or_default()
                );
            }
            _ => {}
        }
        if std::time::Instant::now() >= deadline {
            bar.abandon();
            anyhow::bail!(
                "job {id} is still running after {timeout} s ({} of {} bytes); it goes on: `coffer job wait {id}` again, or `coffer job cancel {id}`",
                j.bytes_done,
                j.bytes_total
            );
        }
        // A server that answered early though the job runs (one that does
        // not wait): the rest of the interval here, so the CLI never spins.
        let early = std::time::Duration::from_millis(wait).saturating_sub(asked.elapsed());
        if !early.is_zero() {
            tokio::time::sleep(early).await;
        }
    }
}

/// Wait for a pending image's copy jobs with one progress bar (the bytes
/// of all its snapshots), then show the image; fail naming the job that
/// failed.
pub async fn wait_image(
    c: &Client,
    out: &Output,
    image: &Image,
    timeout: u64,
) -> anyhow::Result<()> {
    let path = format!("/v1/images/{}", seg(&image.id));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let bar = progress_bar()?;
    loop {
        let mut jobs = vec![];
        for j in &image.copy_jobs {
            jobs.push(c.get::<Job>(&format!("/v1/jobs/{}", seg(j))).await?);
        }
        bar.set_length(jobs.iter().map(|j| j.bytes_total).sum());
        bar.set_position(jobs.iter().map(|j| j.bytes_done).sum());
        let running = jobs.iter().filter(|j| j.state == "running").count();
        bar.set_message(format!("{running} of {} snapshots copying", jobs.len()));
        if let Some(j) = jobs.iter().find(|j| j.state == "failed") {
            bar.abandon();
            anyhow::bail!(
                "image {} failed: job {} failed: {}; delete the image (`coffer image delete {}`) and copy again",
                image.id,
                j.id,
                j.message.clone().unwrap_or_default(),
                image.id
            );
        }
        let i: Image = c.get(&path).await?;
        match i.state {
            ImageState::Available => {
                bar.finish_and_clear();
                return out.show(&i, View::Fields);
            }
            ImageState::Failed => {
                bar.abandon();
                anyhow::bail!(
                    "image {} failed: a job of its copy was cancelled or failed (`coffer job list`); delete it (`coffer image delete {}`)",
                    i.id,
                    i.id
                );
            }
            ImageState::Pending => {}
        }
        if std::time::Instant::now() >= deadline {
            bar.abandon();
            anyhow::bail!(
                "image {} is still pending after {timeout} s; its copy goes on: `coffer image show {}` shows its jobs",
                i.id,
                i.id
            );
        }
        // Wait on the server for a running job to end (up to POLL_MS);
        // the next round looks at them all again.
        match jobs.iter().find(|j| j.state == "running") {
            Some(j) => {
                // Only a wait: an error here is seen (or gone) next round.
                let asked = std::time::Instant::now();
                let _ = c
                    .get::<Job>(&format!("/v1/jobs/{}?wait_ms={POLL_MS}", seg(&j.id)))
                    .await;
                let early =
                    std::time::Duration::from_millis(POLL_MS).saturating_sub(asked.elapsed());
                tokio::time::sleep(early).await;
            }
            None => tokio::time::sleep(std::time::Duration::from_millis(POLL_MS)).await,
        }
    }
}

/// The progress bar of a copy: bytes, rate, ETA.
fn progress_bar() -> anyhow::Result<indicatif::ProgressBar> {
    Ok(indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )?
        .progress_chars("=> "),
    ))
}

/// Run a job command.
pub async fn run(c: &Client, out: &Output, cmd: JobCmd) -> anyhow::Result<()> {
    match cmd {
        JobCmd::List {
            state,
            account,
            paging,
        } => {
            let q = JobQuery {
                state,
                account: crate::resolve::opt(c, Kind::Account, account.as_deref()).await?,
                ..JobQuery::default()
            };
            let l = c.list::<_, Job>("/v1/jobs", &q, &paging).await?;
            out.show_list(&l, View::Columns(COLUMNS))
        }
        JobCmd::Show { job } => {
            let j: Job = c.get(&format!("/v1/jobs/{}", seg(&job))).await?;
            out.show(&j, View::Fields)
        }
        JobCmd::Wait { job, timeout } => wait(c, out, &job, timeout).await,
        JobCmd::Cancel { job } => {
            let j: Job = c.action(&format!("/v1/jobs/{}/cancel", seg(&job))).await?;
            out.show(&j, View::Fields)
        }
    }
}
