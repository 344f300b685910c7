//! The monitor against a real listener on 127.0.0.1: results of a check that was changed since
//! they were sent are told apart from the current check's, so the daemon never counts an old
//! check's verdict for a new one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use health::Monitor;
use ipvs::{DestKey, ServiceKey};
use plan::health::{CheckKind, CheckSpec};
use tokio::net::TcpListener;

#[tokio::test]
async fn results_of_a_replaced_check_are_not_the_current_ones() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
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
    let mut old = CheckSpec::new(CheckKind::Tcp);
    old.interval = Duration::from_millis(10);
    let (mut monitor, mut reports) = Monitor::new(4);
    monitor.sync([(&id, &old)]);
    // Let results of the first check pile up unread, as they do while the daemon is in a pass.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut new = old.clone();
    new.fall = 1;
    monitor.sync([(&id, &new)]);
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
