//! Names for ids. Disk and snapshot names are unique per account (tenants,
//! folders, accounts and principals have names too), so every command that
//! takes an id also takes a name: `coffer disk show web`. An argument that
//! has the shape of an id of the right kind is used as is; anything else is
//! looked up by exact name among what the caller may see.

use anyhow::bail;
use coffer_types::{Id, Kind, Name};
use serde::Deserialize;

use crate::client::{Client, Paging};

#[derive(Deserialize)]
struct Named {
    id: String,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
}

/// The list route and CLI noun of a kind that has names.
fn route(kind: Kind) -> anyhow::Result<(&'static str, &'static str)> {
    Ok(match kind {
        Kind::Disk => ("/v1/disks", "disk"),
        Kind::Snapshot => ("/v1/snapshots", "snapshot"),
        Kind::Image => ("/v1/images", "image"),
        Kind::Tenant => ("/v1/tenants", "tenant"),
        Kind::Folder => ("/v1/folders", "folder"),
        Kind::Account => ("/v1/accounts", "account"),
        Kind::Principal => ("/v1/principals", "principal"),
        Kind::Vault => ("/v1/vaults", "vault"),
        Kind::EncryptionSet => ("/v1/encryption-sets", "encryption-set"),
        other => bail!("a {} is named by its id only", other.noun()),
    })
}

/// The id of the `kind` that `given` names: `given` itself if it is such
/// an id, else the one resource of that kind named `given` that the caller
/// may see.
pub async fn id(c: &Client, kind: Kind, given: &str) -> anyhow::Result<String> {
    let given = given.trim();
    if let Ok(id) = given.parse::<Id>() {
        if id.kind() == kind {
            return Ok(id.to_string());
        }
        bail!(
            "'{given}' is a {} id, not a {} id ({} ids start with '{}-')",
            id.kind().noun(),
            kind.noun(),
            kind.noun(),
            kind.prefix()
        );
    }
    let (path, noun) = route(kind)?;
    if let Err(e) = Name::new(given) {
        bail!(
            "'{}' is neither a {noun} id ({}-…) nor a valid name: {e}",
            given.chars().take(80).collect::<String>(),
            kind.prefix()
        );
    }
    #[derive(serde::Serialize)]
    struct ByName<'a> {
        name: &'a str,
    }
    let found = c
        .list::<_, Named>(
            path,
            &ByName { name: given },
            &Paging {
                max_items: Some(10),
                ..Paging::default()
            },
        )
        .await?
        .items;
    match found.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => bail!(
            "no {noun} named '{given}' is visible to you (names match exactly; `coffer {noun} list` shows what you may see)"
        ),
        many => {
            let which: Vec<String> = many
                .iter()
                .map(|n| match (&n.account_id, &n.tenant_id) {
                    (Some(a), _) => format!("{} (account {a})", n.id),
                    (None, Some(t)) => format!("{} (tenant {t})", n.id),
                    _ => n.id.clone(),
                })
                .collect();
            bail!(
                "the name '{given}' matches several {noun}s you may see: {}; give the id instead",
                which.join(", ")
            )
        }
    }
}

/// [`id`] for an optional argument.
pub async fn opt(c: &Client, kind: Kind, given: Option<&str>) -> anyhow::Result<Option<String>> {
    match given {
        Some(g) => Ok(Some(id(c, kind, g).await?)),
        None => Ok(None),
    }
}
