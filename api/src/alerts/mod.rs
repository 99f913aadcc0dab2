//! Alerting, part 1 (issue 18): rules, their evaluation in the store, alert states, history
//! and silences. Notifications (webhook, Slack, email, Alertmanager) read `alert_events`,
//! which each round writes in the transaction that changes the states.
//!
//! - [`rule`]: the rule model, its validation and plan ([`rule::compile`]);
//! - [`query`]: the SQL of a plan, run over the family tables;
//! - [`state`]: inactive → pending → firing → resolved, with `for` and hysteresis;
//! - [`evaluator`]: the round (exactly once across API processes) and its background task;
//! - [`store`]: rules in the store, `apply` and its diff;
//! - [`live`]: state changes pushed on the live WebSocket;
//! - [`selector`], [`template`]: label matchers and annotation templates.
//!
//! The model and the default pack: docs/ALERTS.md. Tables: `migrations/sql/V23__alerts.sql`.

pub mod evaluator;
pub mod live;
pub mod metrics;
pub mod query;
pub mod rule;
pub mod selector;
pub mod state;
pub mod store;
pub mod template;
