//! LISTEN on the store for the API's live feeds.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};

/// A listener on `channel` over its own one-connection pool (same connect options as `pool`):
/// a listener holds its connection forever and must not take one from the requests. Returns
/// once it is LISTENing, so nothing notified after this is missed.
pub async fn dedicated_listener(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let own = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with((*pool.connect_options()).clone());
    let mut listener = PgListener::connect_with(&own).await?;
    listener.listen(channel).await?;
    Ok(listener)
}
