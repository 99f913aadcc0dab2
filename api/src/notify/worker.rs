//! The background task of `lasect-api serve`: enqueue new events, then send what is due.

use std::sync::Arc;
use std::time::Duration;

use super::outbox;

/// How often the outbox is looked at.
pub const POLL: Duration = Duration::from_secs(2);

pub async fn run(pool: sqlx::PgPool, secrets: Option<Arc<lasect_pki::secrets::KeyFile>>) {
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = outbox::enqueue(&pool).await {
            tracing::warn!(error = %e, "enqueue alert notifications failed; next poll retries");
            continue;
        }
        // The key file is read when needed, so a rotation is picked up.
        let keyring = secrets.as_ref().and_then(|k| k.keyring().ok());
        if let Err(e) = outbox::deliver_due(&pool, keyring.as_deref()).await {
            tracing::warn!(error = %e, "deliver alert notifications failed; next poll retries");
        }
    }
}
