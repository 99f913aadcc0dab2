//! Notifications of alerts, part 2 of issue 18: channels (signed webhook, Slack, Alertmanager),
//! routes that choose them by severity and labels, and a durable outbox in the store.
//!
//! The life of a notification:
//! 1. the evaluator records a state change in `alert_events` (V23);
//! 2. [`outbox::enqueue`] passes the notifier's cursor over those events, under the cursor's row
//!    lock, and writes one delivery per (event, channel) of the routes that match, in the same
//!    transaction as the cursor: each event is enqueued exactly once whatever the number of API
//!    processes. Firing alerts whose last notice is older than a route's repeat interval get a
//!    `repeat` delivery there too;
//! 3. [`outbox::deliver_one`] claims the oldest due delivery of an (alert, channel) that has no
//!    older one pending (`FOR UPDATE SKIP LOCKED`), calls the receiver while it holds the row
//!    lock, and records the attempt: delivered, retried later with exponential backoff and
//!    jitter, or failed once the channel's give-up time has passed (or the receiver refused it
//!    for good, a 4xx other than 408 and 429).
//!
//! A process that dies after the receiver answered and before its commit leaves the delivery
//! pending: the receiver gets it again with the same `Idempotency-Key` (at least once).
//! Tables: `migrations/sql/V25__alert_notifications.sql`; payloads: docs/ALERTS.md.

pub mod channel;
pub mod outbox;
pub mod payload;
pub mod send;
pub mod worker;
