//! Prometheus metrics: lvsd's own, and the kernel's counters read at each scrape, on an opt-in
//! HTTP listener that only serves `GET /metrics`, each connection in its own task with limits.

use super::*;

/// The kernel's counters and the health states, as of the last scrape.
#[derive(Debug, Default)]
pub(super) struct KernelSnapshot {
    pub(super) dump: Mutex<Vec<(ipvs::Service, Vec<ipvs::Dest>)>>,
    pub(super) health: Mutex<Vec<(Labels, bool)>>,
    pub(super) daemons: Mutex<Vec<ipvs::SyncDaemon>>,
}

impl KernelSnapshot {
    pub(super) fn set(
        &self,
        dump: &[(ipvs::Service, Vec<ipvs::Dest>)],
        daemons: &[ipvs::SyncDaemon],
    ) {
        *self.dump.lock().unwrap_or_else(|p| p.into_inner()) = dump.to_vec();
        *self.daemons.lock().unwrap_or_else(|p| p.into_inner()) = daemons.to_vec();
    }
}

impl prometheus_client::collector::Collector for KernelSnapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let dump = self.dump.lock().unwrap_or_else(|p| p.into_inner());
        let svc_labels =
            |s: &ipvs::Service| -> Labels { vec![("service".into(), s.key.to_string())] };
        let real_labels = |s: &ipvs::Service, d: &ipvs::Dest| -> Labels {
            vec![
                ("service".into(), s.key.to_string()),
                ("real".into(), d.key.to_string()),
            ]
        };
        type Pick = fn(&ipvs::Stats) -> u64;
        let counters: [(&str, &str, Pick); 5] = [
            (
                "service_connections",
                "Connections scheduled (kernel counter)",
                |s| s.conns,
            ),
            ("service_in_packets", "Packets in (kernel counter)", |s| {
                s.inpkts
            }),
            (
                "service_out_packets",
                "Packets out (kernel counter; 0 with DR and tunnel)",
                |s| s.outpkts,
            ),
            ("service_in_bytes", "Bytes in (kernel counter)", |s| {
                s.inbytes
            }),
            ("service_out_bytes", "Bytes out (kernel counter)", |s| {
                s.outbytes
            }),
        ];
        for (name, help, pick) in counters {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (s, _) in dump.iter() {
                ConstCounter::new(pick(&s.stats)).encode(m.encode_family(&svc_labels(s))?)?;
            }
        }
        for (name, help, pick) in counters {
            let name = name.replacen("service_", "real_", 1);
            let mut m = encoder.encode_descriptor(&name, help, None, MetricType::Counter)?;
            for (s, dests) in dump.iter() {
                for d in dests {
                    ConstCounter::new(pick(&d.stats))
                        .encode(m.encode_family(&real_labels(s, d))?)?;
                }
            }
        }
        type PickConns = fn(&ipvs::Dest) -> i64;
        let gauges: [(&str, &str, PickConns); 3] = [
            (
                "real_active_connections",
                "Established connections now",
                |d| i64::from(d.conns.active),
            ),
            (
                "real_inactive_connections",
                "Connections in other states now",
                |d| i64::from(d.conns.inactive),
            ),
            ("real_weight", "Scheduling weight in the kernel now", |d| {
                i64::from(d.spec.weight)
            }),
        ];
        for (name, help, pick) in gauges {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (s, dests) in dump.iter() {
                for d in dests {
                    ConstGauge::new(pick(d)).encode(m.encode_family(&real_labels(s, d))?)?;
                }
            }
        }
        let daemons = self.daemons.lock().unwrap_or_else(|p| p.into_inner());
        let view = KernelView::of(&dump, &daemons);
        drop(daemons);
        let mut m = encoder.encode_descriptor(
            "service_fingerprint_info",
            "What a hashing service (mh, sh) maps flows by, as the kernel holds it: a fingerprint of its scheduler, flags and real servers with their weights in kernel order (value 1); directors that map flows alike show the same fingerprint",
            None,
            MetricType::Gauge,
        )?;
        for h in &view.hashing {
            let labels: Labels = vec![
                ("service".into(), h.service.clone()),
                ("scheduler".into(), h.scheduler.clone()),
                ("fingerprint".into(), h.fingerprint.clone()),
            ];
            ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
        }
        let mut m = encoder.encode_descriptor(
            "sync_daemon_info",
            "The kernel's connection-sync daemons: state (master, backup), interface, syncid (value 1)",
            None,
            MetricType::Gauge,
        )?;
        for d in &view.sync_daemons {
            let labels: Labels = vec![
                ("state".into(), d.state.clone()),
                ("interface".into(), d.interface.clone()),
                ("syncid".into(), d.syncid.to_string()),
            ];
            ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
        }
        let mut m = encoder.encode_descriptor(
            "connections",
            "Connections this director's kernel holds now, by state (active: established; inactive: the others), summed over every real server; a sync backup counts the connections it learnt from its master",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in [
            ("active", view.connections.active),
            ("inactive", view.connections.inactive),
        ] {
            let labels: Labels = vec![("state".into(), state.into())];
            ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                .encode(m.encode_family(&labels)?)?;
        }
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let mut m = encoder.encode_descriptor(
            "real_up",
            "Health check state per checked real (1 up, 0 down)",
            None,
            MetricType::Gauge,
        )?;
        for (labels, up) in health.iter() {
            ConstGauge::new(i64::from(*up)).encode(m.encode_family(labels)?)?;
        }
        Ok(())
    }
}

/// How long a metrics client may take to send its request head.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Serves `GET /metrics` on `addr` (read-only; anything else gets 404), each connection in its
/// own task with timeouts. Each scrape reads the kernel's counters through an IPVS connection
/// of its own (scrapes take turns on it), and encodes off the runtime's threads. Returns the
/// address bound (for `:0`).
pub async fn serve_metrics(
    addr: std::net::SocketAddr,
    t: Arc<Telemetry>,
) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen for metrics on {addr}"))?;
    let bound = listener
        .local_addr()
        .context("the metrics listener's address")?;
    tracing::info!(addr = %bound, "metrics on http://{bound}/metrics");
    let kernel: Arc<tokio::sync::Mutex<Option<ipvs::Client>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: cannot accept a connection");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            };
            let t = t.clone();
            let kernel = kernel.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let t = t.clone();
                    let kernel = kernel.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(req, t, kernel).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    // Clients like `nc` shut their side down once the request is sent.
                    .half_close(true)
                    .header_read_timeout(REQUEST_TIMEOUT)
                    .keep_alive(false)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            });
        }
    });
    Ok(bound)
}

type Body = http_body_util::Full<hyper::body::Bytes>;

/// One metrics request's answer.
pub(super) async fn respond(
    req: hyper::Request<hyper::body::Incoming>,
    t: Arc<Telemetry>,
    kernel: Arc<tokio::sync::Mutex<Option<ipvs::Client>>>,
) -> hyper::Response<Body> {
    let reply = |status: u16, kind: &str, body: String| {
        hyper::Response::builder()
            .status(status)
            .header("Content-Type", kind)
            .body(Body::from(body))
            .unwrap_or_default()
    };
    if req.method() != hyper::Method::GET || req.uri().path() != "/metrics" {
        return reply(404, "text/plain", "try GET /metrics\n".into());
    }
    let dump = {
        let mut client = kernel.lock().await;
        if client.is_none() {
            *client = ipvs::Client::connect().await.ok();
        }
        match client.as_mut() {
            Some(c) => {
                let read = async { anyhow::Ok((c.dump().await?, c.daemons().await?)) };
                match read.await {
                    Ok(d) => d,
                    Err(e) => {
                        // A fresh connection next time (the module may have been reloaded).
                        tracing::debug!(error = %e, "metrics: cannot read the IPVS table");
                        *client = None;
                        (vec![], vec![])
                    }
                }
            }
            None => (vec![], vec![]),
        }
    };
    // Encoding every real of a large table is CPU work: not on the runtime's threads.
    let body = tokio::task::spawn_blocking(move || t.metrics(&dump.0, &dump.1))
        .await
        .unwrap_or_else(|_| "# encoding failed\n".into());
    reply(
        200,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        body,
    )
}
