//! The one list path every resource kind uses: a page of at most `limit`
//! items (default 100, at most 1000) in (created_at, id) order, and a
//! `next` token that resumes after the last item. Disks and snapshots page
//! in the database ([`coffer_meta::ListFilter`], one query a page); the
//! organisation and IAM kinds, which are few per caller, page the visible
//! items in memory with the same order and the same token.
//!
//! A filter naming a scope the caller cannot see (a hidden tenant, account
//! or principal) is answered exactly as one naming nothing that exists: 404
//! with the kind's not-found code.

use coffer_wire::model::{
    Account, Disk, EncryptionSet, Folder, Image, Job, Key, Principal, RoleAssignment, Secret,
    Share, Snapshot, Tenant, Token, Vault,
};
use coffer_wire::{ErrorCode, ListParams, Page};

use coffer_meta::{ListFilter, Visible};
use coffer_types::{Id, Kind};

use crate::{Result, Service, ServiceError};

/// A filter naming a resource by id: 400 `InvalidFilter` unless it is an
/// id of `kind`.
pub(crate) fn id_filter(param: &str, v: Option<&str>, kind: Kind) -> Result<Option<Id>> {
    v.map(|s| {
        Id::parse_kind(s.trim(), kind).map_err(|e| {
            ServiceError::new(
                ErrorCode::InvalidFilter,
                format!("invalid {param} filter: {e}"),
            )
        })
    })
    .transpose()
}

impl Service {
    /// Names are unique per account and kind, so a name can stand for an
    /// id: 409 `NameTaken` if `account` already has a `kind` named `name`.
    /// A check before the work of a create, so a taken name costs nothing;
    /// the database's unique index decides between racing creates (the
    /// insert then fails with the same error).
    pub(crate) async fn check_name_free(&self, kind: Kind, account: Id, name: &str) -> Result<()> {
        let f = ListFilter {
            visible: Visible::All,
            name: Some(name.to_string()),
            account: Some(account),
            zone: None,
            attached: None,
            source: None,
            tag: None,
            state: None,
            after: None,
            limit: 1,
        };
        let taken = match kind {
            Kind::Disk => !self.meta.list_disks_page(&f).await?.is_empty(),
            Kind::Snapshot => !self.meta.list_snapshots_page(&f).await?.is_empty(),
            Kind::Image => !self.meta.list_images_page(&f).await?.is_empty(),
            Kind::Share => !self.meta.list_shares_page(&f).await?.is_empty(),
            other => {
                return Err(ServiceError::internal(format!(
                    "no name rule for {other:?}"
                )));
            }
        };
        if taken {
            return Err(ServiceError::name_taken(kind, account, name));
        }
        Ok(())
    }
}

impl Service {
    /// The filter of one page of a kind owned by accounts that has only
    /// the `name` and `account` filters (vaults, encryption sets): what the
    /// caller may see with `action`.
    pub(crate) async fn owned_filter(
        &self,
        caller: &crate::Caller,
        action: coffer_iam::Action,
        kind: Kind,
        q: &ListParams,
        p: Paging,
    ) -> Result<ListFilter> {
        Ok(ListFilter {
            visible: self.visible(caller, action, kind).await?,
            name: q.name.clone(),
            account: self.account_filter(caller, q.account.as_deref()).await?,
            zone: None,
            attached: None,
            source: None,
            tag: crate::tags::tag_filter(q.tag.as_deref())?,
            state: None,
            after: p.after,
            limit: p.size + 1,
        })
    }
}

/// An item of a list: its position in the list's order.
pub(crate) trait Listed {
    /// (created_at, id).
    fn sort_key(&self) -> (&str, &str);
}

macro_rules! listed {
    ($($t:ty),*) => {$(
        impl Listed for $t {
            fn sort_key(&self) -> (&str, &str) {
                (&self.created_at, &self.id)
            }
        }
    )*};
}
listed!(
    Disk,
    Snapshot,
    Tenant,
    Folder,
    Account,
    Principal,
    Token,
    RoleAssignment,
    Vault,
    Key,
    Secret,
    EncryptionSet,
    Image,
    Share,
    Job
);

/// Where a page starts and how long it is.
pub(crate) struct Paging {
    /// Resume after this (created_at, id).
    pub after: Option<(String, String)>,
    /// Items per page.
    pub size: u32,
}

/// The paging of a query: its page size checked, its token decoded.
pub(crate) fn paging(q: &ListParams) -> Result<Paging> {
    let size = q.page_size().ok_or_else(|| {
        ServiceError::new(
            ErrorCode::InvalidPage,
            format!(
                "limit {} is out of range: give 1 to {}",
                q.limit.unwrap_or_default(),
                coffer_wire::MAX_PAGE
            ),
        )
    })?;
    let after = match q.next.as_deref() {
        None => None,
        Some(t) => Some(decode(t).ok_or_else(|| {
            ServiceError::new(
                ErrorCode::InvalidPage,
                "the next token is not one this list gave: pass a page's `next` unchanged, or omit it to start from the first page",
            )
        })?),
    };
    Ok(Paging { after, size })
}

fn encode(created_at: &str, id: &str) -> String {
    hex::encode(format!("{created_at} {id}"))
}

fn decode(token: &str) -> Option<(String, String)> {
    let raw = String::from_utf8(hex::decode(token).ok()?).ok()?;
    let (at, id) = raw.split_once(' ')?;
    if at.is_empty() || id.is_empty() || id.contains(' ') {
        return None;
    }
    Some((at.to_string(), id.to_string()))
}

/// A page from up to `size + 1` items already in order and past the
/// cursor: the extra one only says that more remain.
pub(crate) fn finish<T: Listed>(mut items: Vec<T>, size: u32) -> Page<T> {
    let size = size as usize;
    let next = if items.len() > size {
        items.truncate(size);
        items.last().map(|l| {
            let (at, id) = l.sort_key();
            encode(at, id)
        })
    } else {
        None
    };
    Page { items, next }
}

/// A page of items the caller may see, filtered by name, in memory.
pub(crate) fn page_in_memory<T: Listed>(
    mut items: Vec<T>,
    q: &ListParams,
    name_of: impl Fn(&T) -> &str,
) -> Result<Page<T>> {
    let p = paging(q)?;
    items.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let items: Vec<T> = items
        .into_iter()
        .filter(|i| q.name.as_deref().is_none_or(|n| name_of(i) == n))
        .filter(|i| {
            p.after
                .as_ref()
                .is_none_or(|(at, id)| i.sort_key() > (at.as_str(), id.as_str()))
        })
        .take(p.size as usize + 1)
        .collect();
    Ok(finish(items, p.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(i: usize) -> Tenant {
        Tenant {
            id: format!("tnt-{i:016x}"),
            name: format!("t{}", i % 3),
            allow_cross_tenant_key_grants: false,
            created_at: format!("2026-12-01T00:00:{:02}.000Z", i / 2),
        }
    }

    #[test]
    fn pages_cover_every_item_once_in_order() {
        let all: Vec<Tenant> = (0..25).map(tenant).collect();
        let mut q = ListParams {
            limit: Some(7),
            ..Default::default()
        };
        let mut seen = vec![];
        let mut pages = 0;
        loop {
            let p = page_in_memory(all.clone(), &q, |t| &t.name).unwrap();
            pages += 1;
            assert!(p.items.len() <= 7);
            seen.extend(p.items.into_iter().map(|t| t.id));
            match p.next {
                Some(n) => q.next = Some(n),
                None => break,
            }
        }
        assert_eq!(pages, 4);
        let want: Vec<String> = all.iter().map(|t| t.id.clone()).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn a_bad_limit_or_token_is_refused() {
        for limit in [0, 1001] {
            let q = ListParams {
                limit: Some(limit),
                ..Default::default()
            };
            let e = paging(&q).err().unwrap();
            assert_eq!(e.code, ErrorCode::InvalidPage);
        }
        for bad in ["zz", "00", &hex::encode("no-space")] {
            let q = ListParams {
                next: Some(bad.to_string()),
                ..Default::default()
            };
            assert_eq!(
                paging(&q).err().unwrap().code,
                ErrorCode::InvalidPage,
                "{bad}"
            );
        }
    }

    #[test]
    fn the_name_filter_keeps_only_that_name() {
        let all: Vec<Tenant> = (0..9).map(tenant).collect();
        let q = ListParams {
            name: Some("t1".into()),
            ..Default::default()
        };
        let p = page_in_memory(all, &q, |t| &t.name).unwrap();
        assert_eq!(p.items.len(), 3);
        assert!(p.items.iter().all(|t| t.name == "t1"));
        assert!(p.next.is_none());
    }
}
