//! Tags on resources: validation of what callers send (`KEY=VALUE`, the
//! limits of [`coffer_types::tag`]), the list filter `tag=KEY=VALUE`, and
//! filling the tags of a page of resources in one query.

use std::collections::BTreeMap;

use coffer_iam::Action;
use coffer_types::{Id, Kind, Tag};
use coffer_wire::ErrorCode;
use coffer_wire::model::{Disk, Image, ResourceTags, Snapshot, TagRequest};

use crate::{Caller, Result, Service, ServiceError};

fn invalid(e: coffer_types::TagError) -> ServiceError {
    ServiceError::new(ErrorCode::InvalidTag, e.to_string())
}

/// The tags of a request, checked.
pub(crate) fn parse_tags(map: &BTreeMap<String, String>) -> Result<Vec<Tag>> {
    let tags = map
        .iter()
        .map(|(k, v)| Tag::new(k, v))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(invalid)?;
    Tag::set(tags).map_err(invalid)
}

/// The `tag=KEY=VALUE` list filter.
pub(crate) fn tag_filter(v: Option<&str>) -> Result<Option<(String, String)>> {
    let Some(v) = v else { return Ok(None) };
    let (k, val) = v.split_once('=').ok_or_else(|| {
        ServiceError::new(
            ErrorCode::InvalidFilter,
            format!("invalid tag filter '{v}': use tag=KEY=VALUE"),
        )
    })?;
    if k.is_empty() {
        return Err(ServiceError::new(
            ErrorCode::InvalidFilter,
            "invalid tag filter: the key is empty (use tag=KEY=VALUE)",
        ));
    }
    Ok(Some((k.to_string(), val.to_string())))
}

/// A resource as the API shows it, with its tags.
pub(crate) trait Tagged {
    /// Its id.
    fn id(&self) -> &str;
    /// Its tags.
    fn tags_mut(&mut self) -> &mut BTreeMap<String, String>;
}

macro_rules! tagged {
    ($($t:ty),*) => {$(
        impl Tagged for $t {
            fn id(&self) -> &str {
                &self.id
            }
            fn tags_mut(&mut self) -> &mut BTreeMap<String, String> {
                &mut self.tags
            }
        }
    )*};
}
tagged!(Disk, Snapshot, Image);

/// A snapshot or image as the API shows it, which a caller may see
/// through a share.
pub(crate) trait SharedShown: Tagged {
    /// Show it as shared by `(account, region, id)`.
    fn mark_shared(&mut self, owner: (Id, &str, Id));
}

macro_rules! shared_shown {
    ($($t:ty),*) => {$(
        impl SharedShown for $t {
            fn mark_shared(&mut self, owner: (Id, &str, Id)) {
                crate::snapshots::as_shared(
                    &mut self.creation_method,
                    &mut self.source,
                    &mut self.tags,
                    owner,
                );
            }
        }
    )*};
}
shared_shown!(Snapshot, Image);

impl Service {
    /// Fill in the stored tags of `items` (one query), beside any
    /// `coffer:` tags they already carry.
    pub(crate) async fn fill_tags<T: Tagged>(&self, items: &mut [T]) -> Result<()> {
        let ids: Vec<Id> = items.iter().filter_map(|i| i.id().parse().ok()).collect();
        let mut tags = self.meta.tags_of(&ids).await?;
        for item in items {
            let Ok(id) = item.id().parse::<Id>() else {
                continue;
            };
            for t in tags.remove(&id).unwrap_or_default() {
                item.tags_mut().insert(t.key, t.value);
            }
        }
        Ok(())
    }

    /// Finish the views of `items` for `caller`: their stored tags, and
    /// those it sees through a share shown as shared. `owners` are the
    /// items' `(id, account, region)`, in order.
    pub(crate) async fn finish_view<T: SharedShown>(
        &self,
        caller: &Caller,
        items: &mut [T],
        owners: &[(Id, Id, &str)],
    ) -> Result<()> {
        self.fill_tags(items).await?;
        for (dto, &(id, account, region)) in items.iter_mut().zip(owners) {
            if caller.through_share(id, account) {
                dto.mark_shared((account, region, id));
            }
        }
        Ok(())
    }

    /// Add, replace or remove tags of a disk, snapshot or image: its
    /// `*/write` action is needed (a shared resource's recipient cannot
    /// tag it). `coffer:` keys are reserved, set or removed.
    pub async fn update_tags(
        &self,
        caller: &Caller,
        id: &str,
        req: TagRequest,
    ) -> Result<ResourceTags> {
        let rid: Id = id.trim().parse().map_err(|e: coffer_types::IdError| {
            ServiceError::new(ErrorCode::InvalidId, e.to_string())
        })?;
        let (rid, method, origin) = match rid.kind() {
            Kind::Disk => {
                let d = self.authorized_disk(caller, id, Action::DisksWrite).await?;
                (d.id, None, None)
            }
            Kind::Snapshot => {
                let s = self
                    .authorized_snapshot(caller, id, Action::SnapshotsWrite)
                    .await?;
                (s.id, Some(s.created_by), Some(s.origin))
            }
            Kind::Image => {
                let i = self
                    .authorized_image(caller, id, Action::ImagesWrite)
                    .await?;
                (i.id, Some(i.created_by), Some(i.origin))
            }
            k => {
                return Err(ServiceError::new(
                    ErrorCode::InvalidId,
                    format!(
                        "{rid} is a {}: tags are on disks, snapshots and images",
                        k.noun()
                    ),
                ));
            }
        };
        let set = parse_tags(&req.set)?;
        for k in &req.remove {
            if k.starts_with(coffer_types::tag::RESERVED_PREFIX) {
                return Err(ServiceError::new(
                    ErrorCode::InvalidTag,
                    format!(
                        "tag key '{k}' is Coffer's own (prefix `coffer:`): it cannot be removed"
                    ),
                ));
            }
        }
        self.meta
            .retag_resource(rid, &set, &req.remove, coffer_types::tag::MAX_TAGS)
            .await
            .map_err(|e| match e {
                coffer_meta::MetaError::Conflict(m) => ServiceError::new(
                    ErrorCode::InvalidTag,
                    format!("{m}: remove some first (`remove` in the same request)"),
                ),
                other => other.into(),
            })?;
        let mut tags: BTreeMap<String, String> = match (method, origin) {
            (Some(m), Some(o)) => crate::snapshots::origin_tags(m, &o),
            _ => BTreeMap::new(),
        };
        for t in self
            .meta
            .tags_of(&[rid])
            .await?
            .remove(&rid)
            .unwrap_or_default()
        {
            tags.insert(t.key, t.value);
        }
        tracing::info!(resource = %rid, by = %caller.principal.id, "tags changed");
        Ok(ResourceTags {
            resource_id: rid.to_string(),
            tags,
        })
    }
}
