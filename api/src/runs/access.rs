//! Who may read what of a run.
//!
//! A run's metadata (kind, instance, status, timings, requester) is visible to whoever can view
//! its instance. Its parameters, summary, errors, result pages and download carry data of the
//! monitored database (query text and results, a plan with literals, a `pg_dump`), so they are
//! visible only to:
//! - its requester (the same user, even if its role was lowered since; through an API token
//!   only if the token is limited to `user` or more: a viewer-limited token can ask for no run,
//!   so it reads no run's data, not even its user's own dumps);
//! - an admin of the instance;
//! - whoever holds, on the instance, the role needed to create that kind of run with those
//!   parameters ([`lasect_runs::RunKind::requires`]): a user may read other users' read-only
//!   query results, since it could run the same query, but not the result of a write or of a
//!   full dump.
//!
//! Runs requested by `system` (periodic snapshots and metadata) have no requester.

use lasect_runs::{Requires, RunKind};
use serde_json::Value;

use crate::auth::{Principal, Role};

/// How much of a run a caller sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAccess {
    /// Kind, instance, status, timings, requester; no parameters, summary, errors or result.
    Metadata,
    /// Everything, result pages and download included.
    Full,
}

/// The role a run of this kind with these parameters needs; a kind this API does not know
/// (a newer process wrote it) is an admin's.
pub fn role_to_create(kind: &str, params: &Value) -> Role {
    match kind.parse::<RunKind>().map(|k| k.requires(params)) {
        Ok(Requires::User) => Role::User,
        Ok(Requires::Admin) | Err(_) => Role::Admin,
    }
}

/// The user named by `runs.requested_by` (`user:<name>` or `token:<id>:<name>`); `None` for
/// `system` and anything else.
pub fn requester(requested_by: &str) -> Option<&str> {
    if let Some(name) = requested_by.strip_prefix("user:") {
        return Some(name);
    }
    let rest = requested_by.strip_prefix("token:")?;
    let (id, name) = rest.split_once(':')?;
    id.parse::<i64>().ok().map(|_| name)
}

/// Whether `principal` asked for the run (the same user).
pub fn is_requester(principal: &Principal, requested_by: &str) -> bool {
    requester(requested_by) == Some(principal.username.as_str())
}

/// What `principal` may see of a run on an instance with `labels`; `None` when it may not see
/// the run at all (it cannot view the instance).
pub fn access(
    principal: &Principal,
    kind: &str,
    params: &Value,
    requested_by: &str,
    labels: &Value,
) -> Option<RunAccess> {
    let role = principal.role_for_labels(labels)?;
    let needed = role_to_create(kind, params);
    let own = is_requester(principal, requested_by)
        && principal.api_token.is_none_or(|(_, cap)| cap >= Role::User);
    if own || role >= Role::Admin || role >= needed {
        Some(RunAccess::Full)
    } else {
        Some(RunAccess::Metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::LabelGrant;
    use serde_json::json;

    fn principal(name: &str, role: Option<Role>, grants: &[(&str, &str, Role)]) -> Principal {
        Principal {
            user_id: 1,
            username: name.to_owned(),
            role,
            grants: grants
                .iter()
                .map(|(k, v, r)| LabelGrant {
                    key: (*k).to_owned(),
                    value: (*v).to_owned(),
                    role: *r,
                })
                .collect(),
            api_token: None,
            session: None,
            must_change_password: false,
        }
    }

    #[test]
    fn requesters_are_parsed_exactly() {
        assert_eq!(requester("user:ann"), Some("ann"));
        assert_eq!(requester("token:12:ann"), Some("ann"));
        assert_eq!(requester("token:12:a:b"), Some("a:b"));
        assert_eq!(requester("token:x:ann"), None);
        assert_eq!(requester("system"), None);
        assert_eq!(requester("userann"), None);
        let bob = principal("bob", Some(Role::Viewer), &[]);
        assert!(!is_requester(&bob, "user:jimbob"), "no suffix matching");
        assert!(is_requester(&bob, "token:3:bob"));
    }

    #[test]
    fn every_kind_by_every_role() {
        let labels = json!({"env": "prod"});
        let viewer = principal("v", Some(Role::Viewer), &[]);
        let user = principal("u", Some(Role::User), &[]);
        let admin = principal("a", Some(Role::Admin), &[]);
        let scoped_admin = principal("s", Some(Role::Viewer), &[("env", "prod", Role::Admin)]);
        let other_scope = principal("o", None, &[("env", "dev", Role::Admin)]);
        for kind in RunKind::ALL {
            for params in [
                json!({}),
                json!({"write": true}),
                json!({"schema_only": false}),
            ] {
                let needed = role_to_create(kind.as_str(), &params);
                let see = |p: &Principal, by: &str| access(p, kind.as_str(), &params, by, &labels);
                // The requester sees everything, even with a lower role now.
                assert_eq!(see(&viewer, "user:v"), Some(RunAccess::Full), "{kind}");
                assert_eq!(see(&viewer, "user:u"), Some(RunAccess::Metadata), "{kind}");
                let user_sees = if needed <= Role::User {
                    RunAccess::Full
                } else {
                    RunAccess::Metadata
                };
                assert_eq!(see(&user, "user:a"), Some(user_sees), "{kind} {params}");
                assert_eq!(see(&admin, "user:u"), Some(RunAccess::Full), "{kind}");
                assert_eq!(
                    see(&scoped_admin, "user:u"),
                    Some(RunAccess::Full),
                    "{kind}"
                );
                assert_eq!(see(&other_scope, "user:u"), None, "{kind}");
                assert_eq!(see(&other_scope, "user:o"), None, "not even its own");
            }
        }
    }

    #[test]
    fn a_viewer_token_reads_no_runs_data_not_even_its_users_own() {
        let labels = json!({});
        let mut admin = principal("a", Some(Role::Admin), &[]);
        admin.api_token = Some((7, Role::Viewer));
        let dump = json!({"schema_only": false});
        assert_eq!(
            access(&admin, "dump_sql", &dump, "user:a", &labels),
            Some(RunAccess::Metadata)
        );
        // A user-limited token of the requester reads its own run, though user could not ask
        // for a full dump: the requester clause.
        admin.api_token = Some((7, Role::User));
        assert_eq!(
            access(&admin, "dump_sql", &dump, "user:a", &labels),
            Some(RunAccess::Full)
        );
        assert_eq!(
            access(&admin, "dump_sql", &dump, "user:b", &labels),
            Some(RunAccess::Metadata)
        );
    }

    #[test]
    fn unknown_kinds_are_an_admins() {
        assert_eq!(role_to_create("format_disk", &json!({})), Role::Admin);
    }
}
