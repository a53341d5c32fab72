//! Per-token rate limits: a token bucket per token, behind [`RateLimiter`]. One process keeps
//! its buckets in memory ([`LocalRateLimiter`]); several processes sharing a PostgreSQL keep
//! them in the database (`db::postgres`), so a token's limit holds whichever process it hits.
//! Pure arithmetic in [`Bucket`]; the clock is handed in.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Requests per second sustained, by default: a person's editor and a CI bot stay far below.
pub const DEFAULT_PER_SECOND: f64 = 20.0;
/// Requests allowed at once after a quiet spell (a client catching up after being away).
pub const DEFAULT_BURST: f64 = 200.0;

/// What [`RateLimiter::check`] answers: `Err` is how long to wait.
pub type Verdict<'a> = Pin<Box<dyn Future<Output = Result<(), Duration>> + Send + 'a>>;

pub trait RateLimiter: Send + Sync + 'static {
    /// Takes one request's worth from `token_id`'s bucket, or says how long to wait.
    fn check<'a>(&'a self, token_id: &'a str) -> Verdict<'a>;
}

/// A token bucket: `capacity` requests at once, refilled at `rate` per second.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn full(capacity: f64, now: Instant) -> Bucket {
        Bucket { tokens: capacity, at: now }
    }

    /// Takes one token at `now`, or answers how long until one is there.
    pub fn take(&mut self, rate: f64, capacity: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// Buckets in this process's memory. `rate` 0 turns limits off.
pub struct LocalRateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl LocalRateLimiter {
    pub fn new(per_second: f64, burst: f64) -> LocalRateLimiter {
        LocalRateLimiter { rate: per_second, burst: burst.max(1.0), buckets: Mutex::default() }
    }
}

impl RateLimiter for LocalRateLimiter {
    fn check<'a>(&'a self, token_id: &'a str) -> Verdict<'a> {
        Box::pin(std::future::ready(self.take(token_id)))
    }
}

impl LocalRateLimiter {
    fn take(&self, token_id: &str) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            // Forget buckets that have refilled: they hold nothing a new one would not.
            let full_after = Duration::from_secs_f64(self.burst / self.rate);
            buckets.retain(|_, b| now.saturating_duration_since(b.at) < full_after);
        }
        let bucket = buckets.entry(token_id.to_string()).or_insert_with(|| Bucket::full(self.burst, now));
        bucket.take(self.rate, self.burst, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(3.0, t0);
        for _ in 0..3 {
            b.take(10.0, 3.0, t0).unwrap();
        }
        let wait = b.take(10.0, 3.0, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        b.take(10.0, 3.0, t0 + Duration::from_millis(100)).unwrap();
        assert!(b.take(10.0, 3.0, t0 + Duration::from_millis(100)).is_err());
        // A long quiet spell refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            b.take(10.0, 3.0, later).unwrap();
        }
        assert!(b.take(10.0, 3.0, later).is_err());
    }

    #[test]
    fn zero_turns_limits_off() {
        let l = LocalRateLimiter::new(0.0, 1.0);
        for _ in 0..1000 {
            l.take("t").unwrap();
        }
        let l = LocalRateLimiter::new(1.0, 2.0);
        l.take("t").unwrap();
        l.take("t").unwrap();
        assert!(l.take("t").is_err());
        l.take("other").unwrap();
    }
}
