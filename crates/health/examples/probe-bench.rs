//! How many probes the monitor makes of what it is asked, how late, and at what CPU cost, on
//! this host: `S` services × `R` reals checked over tcp every `I`, the reals spread over `D`
//! distinct targets (listeners on 127.0.0.1, each accept counted), for `T` seconds.
//!
//! ```text
//! cargo run --release -p lvsd-health --example probe-bench -- \
//!     --services 50 --reals 10 --distinct 500 --interval 1s --seconds 20 [--concurrency 64] \
//!     [--workers 2] [--own-thread yes|no] [--http-delay 150ms]
//! ```
//!
//! With `--http-delay`, the checks are http and each listener answers after that long: probes
//! that last (as they do on an emulated host), to see what bounds the rate.
//!
//! The monitor runs on a multi-threaded runtime of `--workers` threads (2, as in the daemon), or
//! with `--workers 0` on a single-threaded one; the probes run on a thread of their own (as in
//! the daemon) unless `--own-thread no` puts them on that runtime.
//!
//! The listeners run on a thread of their own, whose CPU is left out of the figure per probe
//! (on loopback the whole handshake runs in the prober's `connect`, so the accept side is only
//! `accept` and `close`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use health::Monitor;
use model::{DestKey, ServiceKey};
use nix::sys::resource::{UsageWho, getrusage};
use plan::health::{CheckKind, CheckSpec};

struct Args {
    services: usize,
    reals: usize,
    distinct: usize,
    interval: Duration,
    seconds: u64,
    concurrency: usize,
    workers: usize,
    /// The probes on a thread of their own, as in the daemon (else on the runtime above).
    own_thread: bool,
    /// Serve HTTP, answering after this long, and check over http (0: tcp checks).
    delay: Duration,
}

fn duration(s: &str) -> Duration {
    if let Some(ms) = s.strip_suffix("ms") {
        Duration::from_millis(ms.parse().expect("a duration in ms"))
    } else {
        let secs: f64 = s.trim_end_matches('s').parse().expect("a duration");
        Duration::from_secs_f64(secs)
    }
}

fn args() -> Args {
    let mut a = Args {
        services: 50,
        reals: 10,
        distinct: 0,
        interval: Duration::from_secs(1),
        seconds: 20,
        concurrency: health::probe_bound(),
        workers: 2,
        own_thread: true,
        delay: Duration::ZERO,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    for pair in v.chunks(2) {
        let val = pair.get(1).expect("a value after each option");
        match pair[0].as_str() {
            "--services" => a.services = val.parse().unwrap(),
            "--reals" => a.reals = val.parse().unwrap(),
            "--distinct" => a.distinct = val.parse().unwrap(),
            "--interval" => a.interval = duration(val),
            "--seconds" => a.seconds = val.parse().unwrap(),
            "--concurrency" => a.concurrency = val.parse().unwrap(),
            "--workers" => a.workers = val.parse().unwrap(),
            "--http-delay" => a.delay = duration(val),
            "--own-thread" => a.own_thread = val == "yes",
            o => panic!("unknown option {o}"),
        }
    }
    if a.distinct == 0 {
        a.distinct = a.services * a.reals;
    }
    a
}

fn cpu(who: UsageWho) -> Duration {
    let u = getrusage(who).unwrap();
    let t = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(tv.tv_sec()).unwrap())
            + Duration::from_micros(u64::try_from(tv.tv_usec()).unwrap())
    };
    t(u.user_time()) + t(u.system_time())
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    let a = args();
    let accepts = Arc::new(AtomicU64::new(0));
    let (ports_tx, ports_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (cpu_tx, cpu_rx) = std::sync::mpsc::channel();
    let counted = accepts.clone();
    let distinct = a.distinct;
    let delay = a.delay;
    // The real servers: a thread of their own, their CPU measured apart.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut ports = Vec::with_capacity(distinct);
            for _ in 0..distinct {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ports.push(l.local_addr().unwrap().port());
                let counted = counted.clone();
                tokio::spawn(async move {
                    loop {
                        if let Ok((mut s, _)) = l.accept().await {
                            counted.fetch_add(1, Ordering::Relaxed);
                            if !delay.is_zero() {
                                tokio::spawn(async move {
                                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                                    let mut buf = [0u8; 1024];
                                    let _ = s.read(&mut buf).await;
                                    tokio::time::sleep(delay).await;
                                    let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await;
                                });
                            }
                        }
                    }
                });
            }
            ports_tx.send(ports).unwrap();
            let before = cpu(UsageWho::RUSAGE_THREAD);
            tokio::task::spawn_blocking(move || stop_rx.recv())
                .await
                .unwrap()
                .ok();
            cpu_tx.send(cpu(UsageWho::RUSAGE_THREAD) - before).unwrap();
        });
    });
    let ports: Vec<u16> = ports_rx.recv().unwrap();

    // `--workers 0`: one thread, the probes on the thread that waits (no hand-offs between
    // threads).
    let rt = if a.workers == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(a.workers)
            .enable_all()
            .build()
            .unwrap()
    };
    let late = Arc::new(Mutex::new(Vec::<u64>::with_capacity(1 << 20)));
    let (asked, sent, cpu_used, lateness) = rt.block_on(async {
        let mut spec = CheckSpec::new(if a.delay.is_zero() {
            CheckKind::Tcp
        } else {
            CheckKind::Http {
                tls: false,
                path: "/".into(),
                expect_status: vec![],
                expect_body: None,
                host: None,
            }
        });
        spec.interval = a.interval;
        spec.timeout = Duration::from_secs(1);
        let checks: Vec<_> = (0..a.services)
            .flat_map(|s| {
                let service = ServiceKey::tcp(
                    std::net::Ipv4Addr::from(0x0a64_0000 + u32::try_from(s).unwrap()).into(),
                    80,
                );
                let ports = &ports;
                (0..a.reals).map(move |r| {
                    let port = ports[(s * a.reals + r) % ports.len()];
                    (
                        service,
                        DestKey {
                            addr: "127.0.0.1".parse().unwrap(),
                            port,
                        },
                    )
                })
            })
            .collect();
        let heard = late.clone();
        let on_start: health::OnStart = Arc::new(move |d: Duration| {
            heard
                .lock()
                .unwrap()
                .push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        });
        let (mut monitor, mut reports) = if a.own_thread {
            Monitor::on_own_thread(a.concurrency, on_start).unwrap()
        } else {
            Monitor::new(a.concurrency, on_start)
        };
        tokio::spawn(async move { while reports.recv().await.is_some() {} });
        let cpu0 = cpu(UsageWho::RUSAGE_SELF);
        let sent0 = accepts.load(Ordering::Relaxed);
        monitor.sync(checks.iter().map(|id| (id, &spec, true)));
        tokio::time::sleep(Duration::from_secs(a.seconds)).await;
        let sent = accepts.load(Ordering::Relaxed) - sent0;
        let cpu_used = cpu(UsageWho::RUSAGE_SELF) - cpu0;
        drop(monitor);
        let lateness = std::mem::take(&mut *late.lock().unwrap());
        let asked = checks.len() as f64 * a.seconds as f64 / a.interval.as_secs_f64();
        (asked, sent, cpu_used, lateness)
    });
    stop_tx.send(()).unwrap();
    let server_cpu = cpu_rx.recv().unwrap();
    let mut l = lateness;
    l.sort_unstable();
    let needed =
        a.distinct.min(a.services * a.reals) as f64 * a.seconds as f64 / a.interval.as_secs_f64();
    let prober_cpu = cpu_used.saturating_sub(server_cpu);
    println!(
        "checks {} ({} services x {} reals over {} targets), interval {:?}, {} s, concurrency {}, http delay {:?}",
        a.services * a.reals,
        a.services,
        a.reals,
        a.distinct,
        a.interval,
        a.seconds,
        a.concurrency,
        a.delay
    );
    println!(
        "probes asked {asked:.0} (distinct targets x slots: {needed:.0}), sent {sent} ({:.0}% of distinct), rate {:.0}/s",
        100.0 * sent as f64 / needed,
        sent as f64 / a.seconds as f64
    );
    println!(
        "lateness p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} probes started)",
        pct(&l, 0.5) as f64 / 1000.0,
        pct(&l, 0.99) as f64 / 1000.0,
        l.last().copied().unwrap_or(0) as f64 / 1000.0,
        l.len()
    );
    println!(
        "cpu {:.2} s ({:.0}% of one cpu) without the listeners' {:.2} s; {:.0} us per probe",
        prober_cpu.as_secs_f64(),
        100.0 * prober_cpu.as_secs_f64() / a.seconds as f64,
        server_cpu.as_secs_f64(),
        prober_cpu.as_micros() as f64 / sent.max(1) as f64
    );
}
