//! The JSON bodies of the Lasect API, declared once for both ends: `lasect-api` deserializes
//! the requests and serializes the answers with these types, the `lasect` CLI serializes the
//! requests and deserializes the answers with the same ones, so a field renamed or retyped on
//! one side is a compile error on the other.
//!
//! Light on purpose: serde only, and utoipa behind the `openapi` feature (the API's OpenAPI
//! document); the CLI does not build the server's axum/sqlx stack for them.
//!
//! - [`auth`]: roles, logging in and out, changing a password, API tokens.
//! - [`alerts`]: alerts, their state changes and silences.
//! - [`alert_rules`]: alerting rules (the rule language), a stored rule, the set `apply` takes.
//! - [`alert_channels`]: notification channels, the routes to them and the deliveries.
//! - [`users`]: users, their roles and label grants, creating one, resetting a password.
//! - [`agents`]: agents, enrollment tokens, agent certificates.
//! - [`audit`]: the audit log.
//! - [`instances`]: an instance, the list, its detail, the body that adds one and the answers
//!   to adding and testing it.
//!
//! A doc comment on a type or field here is its description in the OpenAPI document: moving a
//! type here keeps its comments as they were (plain `//` comments say what the document
//! should not).
//! - [`migrations`]: fleet schema migrations, the body that starts one and what it shows.
//! - [`backup_restore`], [`backup_schedules`]: restores, restore drills and their progress;
//!   backup and drill schedules and their firings ([`backups`]: the stored catalogue).
//! - [`runs`]: a run as the API shows it, its result pages, the bodies that start SQL runs and
//!   the limits every run-creating body may carry.
//! - [`data`]: the bodies that start an export or a dump.
//! - [`schema`]: the schema explorer's snapshot, changes and foreign-key graph, and the
//!   extensions of an instance.
//! - [`json_integer`]: integers as JSON Schema defines them (`10.0` is one).

pub mod agents;
pub mod alert_channels;
pub mod alert_rules;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod backup_restore;
pub mod backup_schedules;
pub mod backups;
pub mod data;
pub mod instances;
pub mod json_integer;
pub mod migrations;
pub mod replication;
pub mod runs;
pub mod schema;
pub mod users;
