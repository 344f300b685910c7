//! Checks that probe alike share one probe, and probes keep to their grid: real listeners on
//! 127.0.0.1 count the connections; tokio's paused clock times the slots where the schedule
//! is what is tested.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use health::{Monitor, Report};
use model::{DestKey, ServiceKey};
use plan::health::{CheckId, CheckKind, CheckSpec};
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

/// A listener counting the connections it accepts.
async fn counting() -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicU64::new(0));
    let count = n.clone();
    tokio::spawn(async move {
        loop {
            if l.accept().await.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (addr, n)
}

/// A listener that accepts and never answers: an http check of it lasts its whole timeout.
async fn mute() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = vec![];
        loop {
            if let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        }
    });
    addr
}

fn id(service: u8, real: SocketAddr) -> CheckId {
    (
        ServiceKey::tcp(std::net::Ipv4Addr::new(10, 100, 0, service).into(), 80),
        DestKey {
            addr: real.ip(),
            port: real.port(),
        },
    )
}

fn tcp(interval_ms: u64) -> CheckSpec {
    let mut s = CheckSpec::new(CheckKind::Tcp);
    s.interval = Duration::from_millis(interval_ms);
    s.timeout = Duration::from_millis(500);
    s
}

/// The reports that arrived so far.
fn drain(rx: &mut UnboundedReceiver<Report>) -> Vec<Report> {
    let mut v = vec![];
    while let Ok(r) = rx.try_recv() {
        v.push(r);
    }
    v
}

/// A monitor whose probes' start instants are recorded.
fn recording(concurrency: usize) -> (Monitor, UnboundedReceiver<Report>, Arc<Mutex<Vec<Instant>>>) {
    let starts = Arc::new(Mutex::new(vec![]));
    let heard = starts.clone();
    let (m, rx) = Monitor::new(
        concurrency,
        Arc::new(move |_| heard.lock().unwrap().push(Instant::now())),
    );
    (m, rx, starts)
}

#[tokio::test]
async fn two_services_checking_one_target_make_one_probe_and_both_hear_it() {
    let (addr, accepted) = counting().await;
    let a = id(1, addr);
    let b = id(2, addr);
    let spec_a = tcp(100);
    // Rise and fall are the service's own: still the same probe.
    let mut spec_b = tcp(100);
    spec_b.rise = 1;
    spec_b.fall = 5;
    let (mut monitor, mut rx) = Monitor::new(16, Arc::new(|_| {}));
    monitor.sync([(&a, &spec_a, false), (&b, &spec_b, false)]);
    assert_eq!((monitor.len(), monitor.probes()), (2, 1));
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let n = accepted.load(Ordering::SeqCst);
    assert!((8..=12).contains(&n), "{n} connections in 1 s at 100 ms");
    let reports = drain(&mut rx);
    // Each check its own state: b (rise 1) is up after the first success, a (rise 2) after
    // the second.
    let ups = |i: CheckId| {
        reports
            .iter()
            .filter(|r| r.id == i && r.changed && r.up)
            .count()
    };
    assert_eq!((ups(a), ups(b)), (1, 1), "{reports:?}");
    assert!(reports.iter().all(|r| monitor.is_current(r)));
    let first_up = |i: CheckId| reports.iter().position(|r| r.id == i && r.up).unwrap();
    assert!(first_up(b) < first_up(a), "{reports:?}");
}

#[tokio::test]
async fn different_probes_of_one_target_are_made_apart() {
    let (addr, accepted) = counting().await;
    let a = id(1, addr);
    let b = id(2, addr);
    let spec_a = tcp(100);
    let mut spec_b = tcp(100);
    spec_b.timeout = Duration::from_millis(400);
    let (mut monitor, _rx) = Monitor::new(16, Arc::new(|_| {}));
    monitor.sync([(&a, &spec_a, false), (&b, &spec_b, false)]);
    assert_eq!(monitor.probes(), 2);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let n = accepted.load(Ordering::SeqCst);
    assert!(
        (17..=23).contains(&n),
        "{n} connections in 1 s of two probes at 100 ms"
    );
}

#[tokio::test(start_paused = true)]
async fn a_check_leaving_a_shared_probe_keeps_the_others_rhythm_and_state() {
    let (addr, _) = counting().await;
    let a = id(1, addr);
    let b = id(2, addr);
    let spec = tcp(1000);
    let (mut monitor, mut rx, starts) = recording(16);
    monitor.sync([(&a, &spec, false), (&b, &spec, false)]);
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let before = drain(&mut rx);
    let last_b = before.iter().rfind(|r| r.id == b).unwrap().clone();
    // a goes, b stays: no new start, no new generation for b.
    monitor.sync([(&b, &spec, false)]);
    assert_eq!((monitor.len(), monitor.probes()), (1, 1));
    assert!(monitor.is_current(&last_b), "b was not restarted");
    tokio::time::sleep(Duration::from_millis(5000)).await;
    let starts = starts.lock().unwrap().clone();
    assert!((10..=11).contains(&starts.len()), "{starts:?}");
    let first = starts[0];
    for (i, s) in starts.iter().enumerate() {
        assert_eq!(
            s.duration_since(first),
            Duration::from_secs(i as u64),
            "start {i} off the grid: {starts:?}"
        );
    }
    // And a joins again: it hears the shared probe's last result at once, the rhythm kept.
    monitor.sync([(&a, &spec, false), (&b, &spec, false)]);
    let joined = drain(&mut rx);
    assert!(
        joined.iter().any(|r| r.id == a && monitor.is_current(r)),
        "{joined:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn first_probes_are_spread_over_the_interval() {
    let (addr, _) = counting().await;
    let interval = Duration::from_secs(10);
    // A hundred distinct probes (their timeouts differ) of one target.
    let checks: Vec<(CheckId, CheckSpec)> = (0..100u64)
        .map(|i| {
            let mut s = tcp(10_000);
            s.timeout = Duration::from_millis(500 + i);
            (id(u8::try_from(i).unwrap(), addr), s)
        })
        .collect();
    let (mut monitor, _rx, starts) = recording(256);
    let t0 = Instant::now();
    monitor.sync(checks.iter().map(|(i, s)| (i, s, false)));
    assert_eq!(monitor.probes(), 100);
    tokio::time::sleep(interval - Duration::from_millis(1)).await;
    let starts = starts.lock().unwrap().clone();
    assert_eq!(
        starts.len(),
        100,
        "each probe's first slot is within its interval"
    );
    let mut seconds = [0usize; 10];
    for s in &starts {
        seconds[usize::try_from(s.duration_since(t0).as_secs()).unwrap()] += 1;
    }
    // Uniform would be 10 a second; all at once (no spreading) would be 100 in the first.
    assert!(seconds.iter().all(|&n| n <= 25), "{seconds:?}");
}

#[tokio::test(start_paused = true)]
async fn a_probe_made_late_does_not_make_the_next_ones_later() {
    // One probe at a time: a slow probe (an http check of a server that never answers, 600 ms
    // each 700 ms) holds the only permit most of the time, so a quick check every second keeps
    // being made to wait. Its next slots stay where they were: it makes all its probes.
    let slow_target = mute().await;
    let (quick_target, accepted) = counting().await;
    let mut slow = CheckSpec::new(CheckKind::Http {
        tls: false,
        path: "/".into(),
        expect_status: vec![],
        expect_body: None,
        host: None,
    });
    slow.interval = Duration::from_millis(700);
    slow.timeout = Duration::from_millis(600);
    let quick = tcp(1000);
    let (s, q) = (id(1, slow_target), id(2, quick_target));
    let late = Arc::new(Mutex::new(vec![]));
    let heard = late.clone();
    let (mut monitor, _rx) = Monitor::new(1, Arc::new(move |l| heard.lock().unwrap().push(l)));
    monitor.sync([(&s, &slow, false), (&q, &quick, false)]);
    tokio::time::sleep(Duration::from_secs(100)).await;
    drop(monitor);
    // Let the listener count what reached it (the clock is paused; this waits in real time).
    tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(200)))
        .await
        .unwrap();
    let n = accepted.load(Ordering::SeqCst);
    assert!(n >= 99, "{n} quick probes in 100 s at 1 s");
    let late = late.lock().unwrap();
    assert!(
        late.iter().any(|l| !l.is_zero()),
        "the permit was contended"
    );
    assert!(
        late.iter().all(|l| *l < Duration::from_millis(700)),
        "never more than one slow probe late"
    );
}
