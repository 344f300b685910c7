//! The monitor against a real listener on 127.0.0.1: results of a check that was changed since
//! they were sent are told apart from the current check's, so the daemon never counts an old
//! check's verdict for a new one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use health::Monitor;
use model::{DestKey, ServiceKey};
use plan::health::{CheckId, CheckKind, CheckSpec};
use tokio::net::TcpListener;

/// A check's id whose real is a listener on 127.0.0.1 that accepts every connection.
async fn listening_real() -> CheckId {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let _ = l.accept().await;
        }
    });
    (
        ServiceKey::tcp("127.0.0.1".parse().unwrap(), 80),
        DestKey {
            addr: addr.ip(),
            port: addr.port(),
        },
    )
}

#[tokio::test]
async fn results_of_a_replaced_check_are_not_the_current_ones() {
    let id = listening_real().await;
    let mut old = CheckSpec::new(CheckKind::Tcp);
    old.interval = Duration::from_millis(10);
    let (mut monitor, mut reports) = Monitor::new(4, std::sync::Arc::new(|_| {}));
    monitor.sync([(&id, &old, false)]);
    // Let results of the first check pile up unread, as they do while the daemon is in a pass.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut new = old.clone();
    new.fall = 1;
    monitor.sync([(&id, &new, false)]);
    let mut stale = 0;
    loop {
        let r = tokio::time::timeout(Duration::from_secs(5), reports.recv())
            .await
            .expect("a report within 5 s")
            .unwrap();
        assert_eq!(r.id, id);
        if monitor.is_current(&r) {
            break;
        }
        stale += 1;
    }
    assert!(
        stale > 0,
        "the first check's results were queued before it was replaced"
    );
    // Removing the check makes even its latest results stale.
    let r = reports.recv().await.unwrap();
    monitor.sync(std::iter::empty());
    assert!(!monitor.is_current(&r));
}

#[tokio::test]
async fn a_check_reports_its_first_result_transitions_and_new_reasons_only() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let _ = l.accept().await;
        }
    });
    let id = (
        ServiceKey::tcp("127.0.0.1".parse().unwrap(), 80),
        DestKey {
            addr: addr.ip(),
            port: addr.port(),
        },
    );
    let mut spec = CheckSpec::new(CheckKind::Tcp);
    spec.interval = Duration::from_millis(10);
    spec.timeout = Duration::from_millis(200);
    spec.rise = 2;
    spec.fall = 3;
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = started.clone();
    let (mut monitor, mut reports) = Monitor::new(
        4,
        std::sync::Arc::new(move |_| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }),
    );
    // Starting down: the first success is said (a reason at last), the rise comes second.
    monitor.sync([(&id, &spec, false)]);
    let first = reports.recv().await.unwrap();
    assert!(first.outcome.ok && !first.up && !first.changed, "{first:?}");
    let rise = reports.recv().await.unwrap();
    assert!(rise.up && rise.changed, "{rise:?}");
    // Then nothing while nothing changes, though it keeps probing: ten more probes, and no
    // report among them.
    let probes = || started.load(std::sync::atomic::Ordering::Relaxed);
    let more = probes() + 10;
    tokio::time::timeout(Duration::from_secs(30), async {
        while probes() < more {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("it keeps probing");
    assert!(reports.try_recv().is_err(), "steady checks say nothing");
    // The listener goes: a new reason at once, the fall after three failures.
    server.abort();
    let _ = server.await;
    let mut said = vec![];
    let fall = loop {
        let r = reports.recv().await.unwrap();
        if r.changed {
            break r;
        }
        // Before the fall: still up, each report a reason not said just before.
        assert!(r.up && !r.outcome.ok, "{r:?}");
        assert_ne!(said.last(), Some(&r.outcome.reason), "said twice: {said:?}");
        said.push(r.outcome.reason);
    };
    assert!(!fall.up && !said.is_empty(), "{fall:?} after {said:?}");
}

/// The daemon's monitor runs its probes on a thread of its own: they report to a channel read on
/// another runtime, and dropping the monitor stops every probe (the channel closes: no probe
/// task is left holding it).
#[tokio::test]
async fn a_monitor_on_its_own_thread_probes_and_stops_with_it() {
    let id = listening_real().await;
    let mut spec = CheckSpec::new(CheckKind::Tcp);
    spec.interval = Duration::from_millis(20);
    let (mut monitor, mut reports) =
        Monitor::on_own_thread(4, std::sync::Arc::new(|_| {})).unwrap();
    monitor.sync([(&id, &spec, false)]);
    let r = tokio::time::timeout(Duration::from_secs(5), reports.recv())
        .await
        .expect("a report within 5 s")
        .unwrap();
    assert!(r.outcome.ok, "{:?}", r.outcome);
    // Rise (2 by default) successes later, the real is up.
    let up = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(r) = reports.recv().await {
            if r.up && r.changed {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(up, Ok(true), "the real came up");
    drop(monitor);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while reports.recv().await.is_some() {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "the probes' channel closes once the monitor is gone"
    );
}
