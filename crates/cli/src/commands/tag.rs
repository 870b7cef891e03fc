//! `coffer tag …`: add, replace or remove tags of a disk, snapshot or image
//! after it was made (AWS's `create-tags` / `delete-tags`, Azure's `az tag
//! update`).

use clap::Subcommand;
use coffer_wire::{ResourceTags, TagRequest};

use crate::client::{Client, seg};
use crate::output::{Output, View};

#[derive(Debug, Subcommand)]
pub enum TagCmd {
    /// Add tags to a disk, snapshot or image, or replace their values.
    Add {
        /// The resource's id (disk-…, snap-…, img-…).
        resource: String,
        /// A tag, KEY=VALUE (repeat for more).
        #[arg(long = "tag", required = true)]
        tags: Vec<String>,
    },
    /// Remove tags of a disk, snapshot or image by key.
    Remove {
        /// The resource's id (disk-…, snap-…, img-…).
        resource: String,
        /// A tag key (repeat for more).
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
    },
}

/// Run a tag command.
pub async fn run(c: &Client, out: &Output, cmd: TagCmd) -> anyhow::Result<()> {
    let (resource, body) = match cmd {
        TagCmd::Add { resource, tags } => (
            resource,
            TagRequest {
                set: super::snapshot::tag_map(&tags)?,
                remove: vec![],
            },
        ),
        TagCmd::Remove { resource, keys } => (
            resource,
            TagRequest {
                set: Default::default(),
                remove: keys,
            },
        ),
    };
    let t: ResourceTags = c
        .patch(&format!("/v1/tags/{}", seg(resource.trim())), &body)
        .await?;
    out.show(&t, View::Fields)
}
