//! The console's pages, one module per resource kind. Each handler calls
//! the service method the API route of the same action calls, with the
//! session's caller.

pub mod access;
pub mod audit;
pub mod deployment;
pub mod disks;
pub mod exports;
pub mod grants;
pub mod images;
pub mod jobs;
pub mod keys;
pub mod lineage;
pub mod org;
pub mod overview;
pub mod permissions;
pub mod principals;
pub mod secrets;
pub mod snapshots;
pub mod tags;
pub mod usage;

use coffer_wire::ListParams;

/// `Some(s)` for a filter the person filled in, `None` for an empty field.
pub(crate) fn filled(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The list parameters of a whole first page (the console lists at most
/// 1000 of a kind on one page, and says so when there are more).
pub(crate) fn first_page() -> ListParams {
    ListParams {
        limit: Some(1000),
        ..Default::default()
    }
}

/// The form of a change confirmed by typing the resource's name.
#[derive(serde::Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    pub(crate) confirm: String,
}

/// Whether the caller may do `action` at `resource` (`/` or an id), as
/// `iam explain` answers it about itself: the service decides, the page
/// only leaves out a form the caller could not use.
pub(crate) async fn may(
    c: &crate::Console,
    s: &crate::session::Session,
    action: &str,
    resource: &str,
) -> bool {
    c.service
        .explain(
            &s.caller,
            coffer_wire::ExplainRequest {
                principal_id: None,
                action: action.to_string(),
                resource_id: resource.to_string(),
            },
        )
        .await
        .is_ok_and(|x| x.decision == coffer_types::Decision::Allow)
}
