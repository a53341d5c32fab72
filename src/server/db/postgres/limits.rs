//! Rate limits shared by every server process: one token-bucket row per token in an unlogged
//! table, refilled and taken from in one `INSERT ... ON CONFLICT DO UPDATE ... RETURNING` on the
//! database's clock, so two processes serving the same token draw from one bucket.
//!
//! The statement is a point write in a transaction of its own, so it runs on a shared lane
//! (`Db::shared`), pipelined with the other requests' point reads and checks.
//!
//! When the database does not answer, the request is let through: the same request then needs
//! the database for everything else and is answered 503 there.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{PostgresStorage, describe};
use crate::server::limits::{RateLimiter, Verdict};

/// Buckets untouched for longer than they take to refill are deleted every this many checks.
const SWEEP_EVERY: u64 = 10_000;

pub struct PostgresRateLimiter {
    storage: PostgresStorage,
    rate: f64,
    burst: f64,
    checks: AtomicU64,
}

impl PostgresRateLimiter {
    pub(super) fn new(storage: PostgresStorage, per_second: f64, burst: f64) -> PostgresRateLimiter {
        PostgresRateLimiter { storage, rate: per_second, burst: burst.max(1.0), checks: AtomicU64::new(0) }
    }

    async fn take(&self, token_id: &str) -> Result<Result<(), Duration>, String> {
        let c = self.storage.inner.data.shared("could not check a rate limit").await.map_err(|e| e.to_string())?;
        let stmt = c
            .prepare_cached(
                "INSERT INTO rate_buckets AS b (token_id, tokens, at, granted)
                 VALUES ($1, $3::float8 - 1, extract(epoch FROM clock_timestamp())::float8 * 1000, true)
                 ON CONFLICT (token_id) DO UPDATE SET
                     tokens = least($3::float8, b.tokens + greatest(excluded.at - b.at, 0) / 1000 * $2::float8)
                              - CASE WHEN least($3::float8, b.tokens + greatest(excluded.at - b.at, 0) / 1000
                                                * $2::float8) >= 1
                                     THEN 1 ELSE 0 END,
                     granted = least($3::float8, b.tokens + greatest(excluded.at - b.at, 0) / 1000 * $2::float8) >= 1,
                     at = greatest(b.at, excluded.at)
                 RETURNING granted, tokens",
            )
            .await
            .map_err(|e| describe(&e))?;
        let row = c.query_one(&stmt, &[&token_id, &self.rate, &self.burst]).await.map_err(|e| describe(&e))?;
        let (granted, tokens): (bool, f64) = (row.get(0), row.get(1));
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            let full_after_ms = self.burst / self.rate * 1000.0;
            if let Err(e) = c
                .execute(
                    "DELETE FROM rate_buckets WHERE at < extract(epoch FROM clock_timestamp())::float8 * 1000 - $1::float8",
                    &[&full_after_ms],
                )
                .await
            {
                tracing::debug!("could not sweep rate-limit buckets: {}", describe(&e));
            }
        }
        Ok(if granted { Ok(()) } else { Err(Duration::from_secs_f64(((1.0 - tokens) / self.rate).max(0.001))) })
    }
}

impl RateLimiter for PostgresRateLimiter {
    fn check<'a>(&'a self, token_id: &'a str) -> Verdict<'a> {
        Box::pin(async move {
            if self.rate <= 0.0 {
                return Ok(());
            }
            match self.take(token_id).await {
                Ok(verdict) => verdict,
                Err(e) => {
                    tracing::debug!("rate limit not checked ({}): {e}", self.storage.place());
                    Ok(())
                }
            }
        })
    }
}
