//! Prometheus metrics of the API, served at `GET /metrics` (OpenMetrics text) on the API's own
//! listener. Names are prefixed `lasect_api_`:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `lasect_api_requests_total` | counter | `route` (the route's path template, e.g. `/api/v1/instances/{id}/metrics/{family}`, or `unmatched`), `method`, `status` |
//! | `lasect_api_request_duration_seconds` | histogram | `route`, `method`: time to the response head (for `/api/v1/live`, to the upgrade) |
//! | `lasect_api_live_clients` | gauge | connected WebSocket clients |
//! | `lasect_api_live_slow_clients_dropped_total` | counter | clients closed for falling behind |
//! | `lasect_api_live_notifications_dropped_total` | counter | store announcements dropped because the reader was behind |
//!
//! Route labels are templates, never raw paths, and methods outside [`METHODS`] count as
//! `OTHER`, so label cardinality stays fixed whatever a scanner sends.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::AppState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

/// The API's metrics; cheap to clone.
#[derive(Clone)]
pub struct HttpMetrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpMetrics")
    }
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    live_clients: Gauge,
    live_slow: Counter,
    live_notifications: Counter,
    alerts: crate::alerts::metrics::AlertMetrics,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lasect_api");
        let requests = Family::<RequestLabels, Counter>::default();
        // 1 ms .. ~33 s.
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.001, 2.0, 16))) as fn() -> Histogram,
        );
        let live_clients = Gauge::default();
        let live_slow = Counter::default();
        let live_notifications = Counter::default();
        registry.register("requests", "HTTP requests answered", requests.clone());
        registry.register(
            "request_duration_seconds",
            "Time to answer an HTTP request",
            duration.clone(),
        );
        registry.register(
            "live_clients",
            "Connected live clients",
            live_clients.clone(),
        );
        registry.register(
            "live_slow_clients_dropped",
            "Live clients closed for falling behind",
            live_slow.clone(),
        );
        registry.register(
            "live_notifications_dropped",
            "Store announcements dropped because the live reader was behind",
            live_notifications.clone(),
        );
        let alerts = crate::alerts::metrics::AlertMetrics::register(&mut registry);
        HttpMetrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                duration,
                live_clients,
                live_slow,
                live_notifications,
                alerts,
            }),
        }
    }

    /// The alert evaluator's figures (`crate::alerts::metrics`), served with these.
    pub fn alerts(&self) -> &crate::alerts::metrics::AlertMetrics {
        &self.inner.alerts
    }

    fn observe(&self, route: &str, method: &str, status: StatusCode, seconds: f64) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status: status.as_u16(),
            })
            .inc();
        self.inner
            .duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(seconds);
    }

    /// The OpenMetrics text; the live figures are read from `state` now.
    pub fn render(&self, state: &AppState) -> Result<String, std::fmt::Error> {
        let i = &self.inner;
        i.live_clients
            .set(i64::try_from(state.live.clients()).unwrap_or(i64::MAX));
        // Counters only go up: add what happened since the last scrape.
        let slow = state.live.dropped_slow_clients() as u64;
        i.live_slow.inc_by(slow.saturating_sub(i.live_slow.get()));
        let notes = state.live.dropped_notifications() as u64;
        i.live_notifications
            .inc_by(notes.saturating_sub(i.live_notifications.get()));
        let mut text = String::new();
        encode(&mut text, &i.registry)?;
        Ok(text)
    }
}

/// The methods counted under their own name.
pub const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// `method` as a metric label: one of [`METHODS`] or `OTHER`.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method.as_str())
        .copied()
        .unwrap_or("OTHER")
}

/// The route template a request matched, passed from [`mark_route`] to [`track`] in the
/// response (the router adds `MatchedPath` only once it has routed, inside the outer layers).
#[derive(Debug, Clone)]
struct RouteTemplate(MatchedPath);

/// Route layer: tells [`track`] which route answered.
pub async fn mark_route(request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(RouteTemplate(matched));
    }
    response
}

/// Outer layer: counts and times every request by route template (or `unmatched`), method and
/// status.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<RouteTemplate>()
        .map_or("unmatched", |r| r.0.as_str());
    state.metrics.observe(
        route,
        method,
        response.status(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus metrics (OpenMetrics text)", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "Not authenticated", body = super::openapi::ErrorBody),
        (status = 503, description = "Store unavailable (checking the token needs it)", body = super::openapi::ErrorBody),
    )
)]
pub async fn scrape(State(state): State<AppState>) -> Response {
    match state.metrics.render(&state) {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => super::api_error::ApiError::internal(format_args!("encode metrics: {e}"))
            .into_response(),
    }
}
