//! `iam explain`: why a principal may or may not do an action on a
//! resource, told only as far as the caller may see (a principal or an
//! assignment hidden from the caller is never revealed by the answer).

use std::collections::HashSet;

use coffer_iam::{Action, Allowed, Decision, Scope, Target, authorize};
use coffer_types::{Id, Kind};

use crate::access::*;
use crate::error::ErrorCode;
use crate::model::*;
use crate::*;

impl Service {
    /// Why a principal may or may not do an action on a resource. The
    /// caller needs `iam/read` on the resource, unless it asks about
    /// itself; a resource it may not see is "not found" whether it exists
    /// or not.
    pub async fn explain(&self, caller: &Caller, req: ExplainRequest) -> Result<Explanation> {
        let action: Action = req.action.parse().map_err(|e: coffer_iam::UnknownAction| {
            ServiceError::new(ErrorCode::UnknownAction, e.to_string())
        })?;
        let scope = parse_scope(&req.resource_id)?;
        let principal = match &req.principal_id {
            Some(p) => parse_id(p, Kind::Principal)?,
            None => caller.principal.id,
        };
        let myself = principal == caller.principal.id;
        let target = self.resolve(scope).await?;
        let base = |decision: coffer_types::Decision,
                    status: u16,
                    reasons: Vec<String>,
                    assignment: Option<Id>| {
            Explanation {
                principal_id: principal.to_string(),
                action: action.to_string(),
                resource_id: scope.to_string(),
                decision,
                status,
                reasons,
                assignment_id: assignment.map(|a| a.to_string()),
            }
        };
        if myself {
            // About oneself: a resource one may not see is answered exactly
            // as one that does not exist.
            let visible = target
                .as_ref()
                .is_some_and(|t| self.sees(&caller.subject, t));
            if !visible {
                return Ok(base(
                    coffer_types::Decision::Deny,
                    404,
                    vec![format!(
                        "no {} {scope} is visible to principal {principal}: it does not exist, or no role of {principal} lets it see it",
                        scope.noun()
                    )],
                    None,
                ));
            }
        } else {
            // About someone else: needs iam/read on the resource.
            let t = target.as_ref().ok_or_else(|| not_found_of(scope))?;
            self.check(caller, Action::IamRead, t)?;
        }
        let p = self
            .meta
            .principal(principal)
            .await?
            .ok_or_else(|| not_found_of(Scope::Id(principal)))?;
        let subject = self.subject_of(&p).await?;
        let target = target.ok_or_else(|| not_found_of(scope))?;
        // What the caller may learn of the principal's assignments: those at
        // scopes where it may read role assignments (all, about itself).
        let mut shown = HashSet::new();
        for g in &subject.grants {
            let ok = myself || {
                let t = self.resolve(g.scope).await?;
                t.is_some_and(|t| authorize(&caller.subject, Action::IamRead, &t).is_allowed())
            };
            if ok {
                shown.insert(g.id);
            }
        }
        // A principal the caller may not see, none of whose assignments it
        // may read, and who cannot see the resource either, is answered
        // exactly as an id that names nobody: explain tells who has access
        // to what the caller may inspect, not who exists elsewhere.
        if !myself && shown.is_empty() && !self.sees(&subject, &target) {
            let seen = match self.resolve(Scope::Id(principal)).await? {
                Some(t) => self.sees(&caller.subject, &t),
                None => false,
            };
            if !seen {
                return Err(not_found_of(Scope::Id(principal)));
            }
        }
        Ok(match authorize(&subject, action, &target) {
            Decision::Allow(why) => {
                let (why, assignment) = match &why {
                    Allowed::Assignment { grant, .. } if !shown.contains(&grant.id) => (
                        "an assignment at a scope above, which you may not see, grants it"
                            .to_string(),
                        None,
                    ),
                    Allowed::Assignment { grant, .. } => (why.to_string(), Some(grant.id)),
                    other => (other.to_string(), None),
                };
                // The scopes the caller may see of the chain (a folder tree
                // above the resource may be hidden from it).
                let chain = target.chain();
                let names: Vec<String> = (0..chain.len())
                    .map(|i| {
                        let above = Target::new(chain[i..].to_vec());
                        if myself || i == 0 || self.sees(&caller.subject, &above) {
                            chain[i].to_string()
                        } else {
                            "(hidden)".to_string()
                        }
                    })
                    .collect();
                base(
                    coffer_types::Decision::Allow,
                    200,
                    vec![
                        format!("allowed: {why}"),
                        format!("scopes checked, the resource first: {}", names.join(" < ")),
                    ],
                    assignment,
                )
            }
            Decision::Deny(mut d) => {
                let status = if d.visible { 403 } else { 404 };
                let before = d.held.len();
                d.held.retain(|g| shown.contains(&g.id));
                let mut reason = d.reason(principal);
                if d.held.len() < before {
                    reason.push_str(&format!(
                        " ({} more assignment(s) of {principal} apply here at scopes you may not see; none grants '{action}')",
                        before - d.held.len()
                    ));
                }
                base(coffer_types::Decision::Deny, status, vec![reason], None)
            }
        })
    }
}
