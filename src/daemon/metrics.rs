//! Prometheus metrics over HTTP (`GET /metrics`), off unless `daemon.metrics_listen`
//! is set. The engine hands over its [`Readings`]; `prometheus-client` turns them into
//! the OpenMetrics text, and `hyper` speaks HTTP/1.1.
//!
//! Anyone who can reach the port can connect, so connections are bounded: at most
//! [`MAX_CONNECTIONS`] at once (the rest wait in the kernel's backlog and cost the
//! daemon no descriptor), each ended after [`CONNECTION_TIME`]. A local user holding a
//! thousand connections open must not take the descriptors the daemon needs for
//! netlink, its logs and its store.

use super::control::{Call, ClusterStatus, Request, Response};
use http_body_util::Full;
use hyper::body::Bytes;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// The longest a connection may take, request and answer.
pub const CONNECTION_TIME: Duration = Duration::from_secs(10);
/// How long a client may take to send its request head.
const HEADER_TIME: Duration = Duration::from_secs(5);

/// One source's numbers.
#[derive(Debug, Clone)]
pub struct SourceReading {
    pub name: String,
    pub lines: u64,
    pub behind_bytes: u64,
    /// Age of its newest line, by the line's own time.
    pub lag_seconds: f64,
}

/// What the engine knows at one moment, for the metrics.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    pub sources: Vec<SourceReading>,
    pub skipped: [(&'static str, u64); 3],
    pub events: BTreeMap<String, u64>,
    pub failures: u64,
    /// Bans made, by origin (`policy`, `manual`).
    pub bans: BTreeMap<String, u64>,
    pub unbans: u64,
    pub active_bans: u64,
    /// Errors by enforcer; every configured enforcer is listed, with 0 if none.
    pub enforcer_errors: BTreeMap<&'static str, u64>,
    pub unenforced_bans: u64,
    pub table_rebuilds: u64,
    /// Alerts by kind; every kind is listed.
    pub alerts: BTreeMap<String, u64>,
    pub tracked_addresses: u64,
    pub tracked_prefixes: u64,
    pub store_errors: u64,
    /// Packets refused per `[[block]]`.
    pub blocks: Vec<(String, u64)>,
    /// The fleet link, when `[cluster]` is on.
    pub cluster: Option<ClusterStatus>,
}

type Labels = Vec<(&'static str, String)>;

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

fn gauge(v: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    g
}

fn counters<'a>(
    label: &'static str,
    rows: impl IntoIterator<Item = (&'a str, u64)>,
) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    for (k, v) in rows {
        f.get_or_create(&vec![(label, k.to_string())]).inc_by(v);
    }
    f
}

/// The metrics in the OpenMetrics text format. Names are those saslguard always had
/// (`saslguard_` prefix, counters ending in `_total`).
pub fn render(r: &Readings) -> String {
    let mut reg = Registry::with_prefix("saslguard");
    reg.register(
        "lines_read",
        "Lines read, by source",
        counters(
            "source",
            r.sources.iter().map(|s| (s.name.as_str(), s.lines)),
        ),
    );
    reg.register(
        "lines_skipped",
        "Lines skipped, by reason",
        counters("reason", r.skipped),
    );
    reg.register(
        "events",
        "Events parsed, by kind",
        counters("kind", r.events.iter().map(|(k, v)| (k.as_str(), *v))),
    );
    reg.register("failures", "Failed logins counted", counter(r.failures));
    reg.register(
        "bans",
        "Bans made, by origin (policy or manual)",
        counters(
            "origin",
            ["policy", "manual"].map(|o| (o, r.bans.get(o).copied().unwrap_or(0))),
        ),
    );
    reg.register("unbans", "Bans lifted by hand", counter(r.unbans));
    reg.register("active_bans", "Bans in force", gauge(r.active_bans));
    reg.register(
        "enforcer_errors",
        "Errors of the enforcers",
        counters("enforcer", r.enforcer_errors.iter().map(|(k, v)| (*k, *v))),
    );
    reg.register(
        "unenforced_bans",
        "Active bans an enforcer has not taken yet (being retried)",
        gauge(r.unenforced_bans),
    );
    reg.register(
        "nft_table_rebuilds",
        "Times an enforcer's state (the nftables table) was found removed and rebuilt with the active bans",
        counter(r.table_rebuilds),
    );
    reg.register(
        "alerts",
        "Alerts raised, by kind",
        counters("kind", r.alerts.iter().map(|(k, v)| (k.as_str(), *v))),
    );
    let behind = Family::<Labels, Gauge>::default();
    let lag = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for s in &r.sources {
        let l = vec![("source", s.name.clone())];
        behind
            .get_or_create(&l)
            .set(i64::try_from(s.behind_bytes).unwrap_or(i64::MAX));
        lag.get_or_create(&l).set(s.lag_seconds);
    }
    reg.register(
        "source_lag_bytes",
        "Bytes written to a followed file and not read yet",
        behind,
    );
    reg.register(
        "source_lag_seconds",
        "Age of the newest line read, by its own timestamp",
        lag,
    );
    reg.register(
        "tracked_addresses",
        "Addresses in the sliding windows",
        gauge(r.tracked_addresses),
    );
    reg.register(
        "tracked_prefixes",
        "Prefixes in the sliding windows",
        gauge(r.tracked_prefixes),
    );
    reg.register(
        "store_errors",
        "Failed store writes",
        counter(r.store_errors),
    );
    if let Some(c) = &r.cluster {
        reg.register(
            "cluster_connected",
            "1 while the fleet's database is reachable",
            gauge(u64::from(c.connected)),
        );
        reg.register(
            "cluster_published",
            "Failures, bans and lifts this node published to the fleet",
            counter(c.published),
        );
        reg.register(
            "cluster_received",
            "Failures, bans and lifts received from the other nodes",
            counter(c.received),
        );
        reg.register(
            "cluster_queued",
            "Waiting for the fleet's database",
            gauge(c.queued),
        );
        reg.register(
            "cluster_dropped",
            "Dropped from the full queue while the database was away",
            counter(c.dropped),
        );
        reg.register(
            "cluster_refused",
            "Fleet bans this node's own checks refused",
            counter(c.refused),
        );
        let lag = Gauge::<f64, AtomicU64>::default();
        lag.set(c.lag_seconds);
        reg.register(
            "cluster_lag_seconds",
            "Replication lag: from the time the last received failure or ban carries (its log line's, its start) to its arrival here",
            lag,
        );
    }
    reg.register(
        "block_refused_packets",
        "Packets refused by each block, by block name",
        counters("block", r.blocks.iter().map(|(k, v)| (k.as_str(), *v))),
    );
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &reg);
    out
}

pub async fn serve(listener: tokio::net::TcpListener, engine: mpsc::Sender<Call>) {
    let gate = super::accept::gate(MAX_CONNECTIONS);
    loop {
        let (stream, permit) = super::accept::next(&listener, &gate, "metrics").await;
        let engine = engine.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(CONNECTION_TIME, answer(stream, engine)).await;
        });
    }
}

/// Serves one connection: `GET /metrics` (or `/`) asks the engine; anything else is 404.
async fn answer(stream: tokio::net::TcpStream, engine: mpsc::Sender<Call>) {
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let engine = engine.clone();
        async move { Ok::<_, Infallible>(respond(req.method(), req.uri().path(), &engine).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIME)
        .keep_alive(false)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}

async fn respond(
    method: &hyper::Method,
    path: &str,
    engine: &mpsc::Sender<Call>,
) -> hyper::Response<Full<Bytes>> {
    let reply = |status: u16, kind: &str, body: String| {
        hyper::Response::builder()
            .status(status)
            .header("Content-Type", kind)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if method != hyper::Method::GET || !(path == "/metrics" || path == "/") {
        return reply(404, "text/plain", "only GET /metrics is here\n".into());
    }
    let (tx, rx) = oneshot::channel();
    if engine.send((Request::Metrics, tx)).await.is_err() {
        return reply(503, "text/plain", "saslguard is stopping\n".into());
    }
    match rx.await {
        Ok(Response::Metrics(m)) => reply(
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            m.text,
        ),
        _ => reply(503, "text/plain", "saslguard is stopping\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_those_saslguard_always_had() {
        let r = Readings {
            sources: vec![SourceReading {
                name: "file:/var/log/mail\"log".into(),
                lines: 7,
                behind_bytes: 3,
                lag_seconds: 1.5,
            }],
            failures: 13,
            active_bans: 2,
            unbans: 1,
            bans: [("policy".to_string(), 3)].into(),
            ..Readings::default()
        };
        let text = render(&r);
        for want in [
            "saslguard_active_bans 2",
            "saslguard_bans_total{origin=\"policy\"} 3",
            "saslguard_bans_total{origin=\"manual\"} 0",
            "saslguard_unbans_total 1",
            "saslguard_failures_total 13",
            "saslguard_unenforced_bans 0",
            "saslguard_lines_read_total{source=\"file:/var/log/mail\\\"log\"} 7",
            "saslguard_source_lag_seconds{source=\"file:/var/log/mail\\\"log\"} 1.5",
            "# TYPE saslguard_failures counter",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == want), "no {want:?} in:\n{text}");
        }
    }
}
