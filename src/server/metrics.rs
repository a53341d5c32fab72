//! Prometheus counters for `/metrics`: requests by route template, method and status class,
//! latency histograms, event-stream listeners, rate-limit refusals, and counts of teams,
//! members, codemarks and reviews. Nothing personal: routes are templates (`/api/v1/codemarks/{id}`),
//! never concrete paths.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::db::Stats;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 11] = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Default)]
struct RouteStats {
    /// By status class: 1xx .. 5xx.
    classes: [u64; 5],
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<(String, String), RouteStats>>,
    listeners: AtomicI64,
    rate_limited: AtomicU64,
}

impl Metrics {
    pub fn observe(&self, route: &str, method: &str, status: u16, took: Duration) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let s = routes.entry((route.to_string(), method.to_string())).or_default();
        let class = (status / 100).clamp(1, 5) as usize - 1;
        s.classes[class] += 1;
        let secs = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                s.buckets[i] += 1;
            }
        }
        s.count += 1;
        s.sum += secs;
    }

    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an event-stream listener until the guard drops.
    pub fn listener(self: &std::sync::Arc<Self>) -> ListenerGuard {
        self.listeners.fetch_add(1, Ordering::Relaxed);
        ListenerGuard(self.clone())
    }

    pub fn listeners(&self) -> i64 {
        self.listeners.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self, stats: Option<Stats>) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP marginalia_http_requests_total HTTP requests answered, by route, method and status class.\n",
        );
        out.push_str("# TYPE marginalia_http_requests_total counter\n");
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        for ((route, method), s) in routes.iter() {
            for (i, n) in s.classes.iter().enumerate().filter(|(_, n)| **n > 0) {
                let _ = writeln!(
                    out,
                    "marginalia_http_requests_total{{route=\"{route}\",method=\"{method}\",class=\"{}xx\"}} {n}",
                    i + 1
                );
            }
        }
        out.push_str("# HELP marginalia_http_request_duration_seconds Time to answer, by route and method.\n");
        out.push_str("# TYPE marginalia_http_request_duration_seconds histogram\n");
        for ((route, method), s) in routes.iter() {
            let labels = format!("route=\"{route}\",method=\"{method}\"");
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(out, "marginalia_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}");
            }
            let _ =
                writeln!(out, "marginalia_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "marginalia_http_request_duration_seconds_sum{{{labels}}} {}", s.sum);
            let _ = writeln!(out, "marginalia_http_request_duration_seconds_count{{{labels}}} {}", s.count);
        }
        drop(routes);
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, value: i64| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        };
        gauge(&mut out, "marginalia_sse_listeners", "Open event streams.", "gauge", self.listeners());
        gauge(
            &mut out,
            "marginalia_rate_limited_total",
            "Requests refused by a token's rate limit.",
            "counter",
            self.rate_limited.load(Ordering::Relaxed) as i64,
        );
        if let Some(s) = stats {
            gauge(&mut out, "marginalia_teams", "Teams.", "gauge", s.teams);
            gauge(&mut out, "marginalia_members", "Members of all teams.", "gauge", s.members);
            gauge(&mut out, "marginalia_codemarks", "Codemarks of all teams.", "gauge", s.codemarks);
            gauge(&mut out, "marginalia_reviews", "Feedback requests (reviews) of all teams.", "gauge", s.reviews);
            gauge(
                &mut out,
                "marginalia_events_total",
                "Events written (the newest sequence number).",
                "counter",
                s.events,
            );
        }
        out
    }
}

pub struct ListenerGuard(std::sync::Arc<Metrics>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_land_in_their_class_and_buckets() {
        let m = Metrics::default();
        m.observe("/api/v1/me", "GET", 200, Duration::from_millis(3));
        m.observe("/api/v1/me", "GET", 401, Duration::from_millis(30));
        let text = m.render(None);
        assert!(text.contains("marginalia_http_requests_total{route=\"/api/v1/me\",method=\"GET\",class=\"2xx\"} 1"));
        assert!(text.contains("marginalia_http_requests_total{route=\"/api/v1/me\",method=\"GET\",class=\"4xx\"} 1"));
        assert!(text.contains("route=\"/api/v1/me\",method=\"GET\",le=\"0.005\"} 1"));
        assert!(text.contains("route=\"/api/v1/me\",method=\"GET\",le=\"0.05\"} 2"));
        assert!(text.contains("marginalia_sse_listeners 0"));
    }
}
