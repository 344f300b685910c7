//! Prometheus metrics: lvsd's own, and the kernel's counters read at each scrape, on an opt-in
//! HTTP listener that only serves `GET /metrics`, each connection in its own task with limits.

use super::*;

/// The per-real health states the daemon last published, taken whole by each scrape (an `Arc`:
/// a scrape never holds the daemon up, however slowly its client reads).
#[derive(Debug, Default)]
pub(super) struct HealthStates(Mutex<Arc<Vec<(Labels, bool)>>>);

impl HealthStates {
    pub(super) fn set(&self, up: Vec<(Labels, bool)>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(up);
    }

    pub(super) fn get(&self) -> Arc<Vec<(Labels, bool)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What one scrape encodes beside the daemon's own metrics: the kernel's counters and sync
/// daemons read for it, and the health states. Owned by the scrape, so encoding it (eight lines
/// a real, sent as they are made) holds no lock the daemon takes.
pub(super) struct Scrape {
    pub(super) dump: Vec<(ipvs::Service, Vec<ipvs::Dest>)>,
    pub(super) daemons: Vec<ipvs::SyncDaemon>,
    pub(super) health: Arc<Vec<(Labels, bool)>>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape")
            .field("services", &self.dump.len())
            .field("health", &self.health.len())
            .finish()
    }
}

impl prometheus_client::collector::Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let dump = &self.dump;
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
        let view = KernelView::of(dump, &self.daemons);
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
        let mut m = encoder.encode_descriptor(
            "real_up",
            "Health check state per checked real (1 up, 0 down)",
            None,
            MetricType::Gauge,
        )?;
        for (labels, up) in self.health.iter() {
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

type Bytes = hyper::body::Bytes;
type Body = http_body_util::Either<http_body_util::Full<Bytes>, Chunks>;

/// The metrics text is sent in pieces of about this size, as it is encoded.
const CHUNK: usize = 64 * 1024;
/// Pieces encoded ahead of the client: what a scrape holds in memory, whatever the table's size.
const CHUNKS_AHEAD: usize = 4;

/// A body sent as the encoder produces it. An `Err` ends the response as failed (the client
/// sees a cut response, not a short one it could take for whole).
pub(super) struct Chunks(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::io::Result<hyper::body::Frame<Bytes>>>> {
        self.0
            .poll_recv(cx)
            .map(|piece| piece.map(|r| r.map(hyper::body::Frame::data)))
    }
}

/// The encoder's side of [`Chunks`]: text collected up to [`CHUNK`] bytes, then handed over
/// (waiting while the client is [`CHUNKS_AHEAD`] pieces behind). Fails once the client is gone,
/// which stops the encoding.
struct ChunkWriter {
    buf: String,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
}

impl ChunkWriter {
    fn flush(&mut self) -> std::fmt::Result {
        let piece = std::mem::replace(&mut self.buf, String::with_capacity(CHUNK + 1024));
        self.tx
            .blocking_send(Ok(Bytes::from(piece)))
            .map_err(|_| std::fmt::Error)
    }
}

impl std::fmt::Write for ChunkWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.buf.push_str(s);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }
}

/// One metrics request's answer.
pub(super) async fn respond(
    req: hyper::Request<hyper::body::Incoming>,
    t: Arc<Telemetry>,
    kernel: Arc<tokio::sync::Mutex<Option<ipvs::Client>>>,
) -> hyper::Response<Body> {
    let reply = |status: u16, kind: &str, body: Body| {
        hyper::Response::builder()
            .status(status)
            .header("Content-Type", kind)
            .body(body)
            .unwrap_or_else(|_| {
                let mut r = hyper::Response::new(Body::Left(http_body_util::Full::default()));
                *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                r
            })
    };
    if req.method() != hyper::Method::GET || req.uri().path() != "/metrics" {
        let body = http_body_util::Full::new(Bytes::from_static(b"try GET /metrics\n"));
        return reply(404, "text/plain", Body::Left(body));
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
    // Encoding every real of a large table is CPU work: not on the runtime's threads. The text
    // goes out as it is made, so a scrape of a large table does not hold all of it at once.
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut w = ChunkWriter {
            buf: String::with_capacity(CHUNK + 1024),
            tx,
        };
        let written = t.write_metrics(dump.0, dump.1, &mut w);
        let end = match written {
            Ok(()) => w.flush(),
            Err(e) => Err(e),
        };
        if end.is_err() {
            // The client left (nothing to tell), or the encoder failed: cut the response.
            let _ =
                w.tx.blocking_send(Err(std::io::Error::other("metrics encoding failed")));
        }
    });
    reply(
        200,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        Body::Right(Chunks(rx)),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_text_goes_out_in_pieces_and_stops_when_the_client_leaves() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
        let mut w = ChunkWriter {
            buf: String::new(),
            tx,
        };
        let line = "x".repeat(1000);
        for _ in 0..(CHUNK / 1000 + 1) {
            w.write_str(&line).unwrap();
        }
        let piece = rx.try_recv().unwrap().unwrap();
        assert!(piece.len() >= CHUNK, "a full piece: {}", piece.len());
        assert!(rx.try_recv().is_err(), "one piece so far");
        w.write_str("tail").unwrap();
        w.flush().unwrap();
        assert_eq!(&rx.try_recv().unwrap().unwrap()[..], b"tail");
        drop(rx);
        assert!(w.write_str(&line.repeat(CHUNK / 1000 + 1)).is_err());
    }

    #[test]
    fn a_client_that_stops_reading_holds_up_nothing_of_the_daemons() {
        let t = Telemetry::new(std::path::Path::new("/etc/lvsd/lvsd.yaml"), "director");
        let up: Vec<(Labels, bool)> = (0..20_000)
            .map(|i| {
                let labels: Labels = vec![
                    (
                        "service".into(),
                        format!("TCP 10.0.{}.{}:80", i / 250, i % 250),
                    ),
                    ("real".into(), "10.1.0.1:80".into()),
                ];
                (labels, true)
            })
            .collect();
        t.health(vec![], up.clone());
        let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
        let encoder = {
            let t = t.clone();
            std::thread::spawn(move || {
                let mut w = ChunkWriter {
                    buf: String::new(),
                    tx,
                };
                t.write_metrics(vec![], vec![], &mut w)
            })
        };
        // The client reads nothing: the encoder fills the pieces ahead and waits.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while rx.len() < CHUNKS_AHEAD {
            assert!(
                std::time::Instant::now() < deadline,
                "the encoder never filled the pieces ahead"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Meanwhile the daemon publishes health and ramps, and counts a pass.
        let (done, published) = std::sync::mpsc::channel();
        {
            let t = t.clone();
            std::thread::spawn(move || {
                t.health(vec![], up);
                t.ramps(vec![]);
                let _ = done.send(());
            });
        }
        published
            .recv_timeout(Duration::from_secs(30))
            .expect("the daemon's updates wait for no scrape");
        assert!(
            !encoder.is_finished(),
            "the scrape is still waiting on its client"
        );
        drop(rx);
        assert!(
            encoder.join().unwrap().is_err(),
            "a client gone stops the encoding"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scrape_is_answered_whole_over_http() {
        let t = Telemetry::new(std::path::Path::new("/etc/lvsd/lvsd.yaml"), "director");
        let addr = serve_metrics("127.0.0.1:0".parse().unwrap(), t)
            .await
            .unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert!(got.starts_with("HTTP/1.0 200"), "{got}");
        assert!(
            got.contains("lvsd_connections{state=\"active\"} 0"),
            "{got}"
        );
        assert!(got.trim_end().ends_with("# EOF"), "{got}");
    }
}
