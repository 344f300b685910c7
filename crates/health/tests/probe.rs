//! Probes against real sockets and processes on this machine: tiny TCP, HTTP and HTTPS
//! (rustls, a self-signed fixture certificate) servers on 127.0.0.1, and shell scripts for exec
//! checks, including one that hangs with a child and must be killed, child and all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use health::{judge, probe};
use plan::health::{CheckKind, CheckSpec};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn http(tls: bool) -> CheckSpec {
    let mut c = CheckSpec::new(CheckKind::Http {
        tls,
        path: "/healthz".into(),
        expect_status: vec![],
        expect_body: None,
        host: None,
    });
    c.timeout = Duration::from_millis(500);
    c
}

/// Serves one connection with `response`; the request comes back on the channel.
async fn one_shot(response: &'static str) -> (SocketAddr, oneshot::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
        s.write_all(response.as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
    });
    (addr, rx)
}

#[tokio::test]
async fn tcp_connects_or_says_why_not() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let c = CheckSpec::new(CheckKind::Tcp);
    let o = probe(addr, &c).await;
    assert!(o.ok, "{o:?}");
    drop(l);
    let o = probe(addr, &c).await;
    assert!(!o.ok);
    assert_eq!(o.reason, "connection refused");
}

#[tokio::test]
async fn http_status_body_and_host() {
    let (addr, req) = one_shot("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nhealthy").await;
    let o = probe(addr, &http(false)).await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.reason, "status 200");
    let req = req.await.unwrap();
    assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("\r\nHost: 127.0.0.1\r\n"), "{req}");

    let (addr, _) = one_shot("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").await;
    let o = probe(addr, &http(false)).await;
    assert_eq!((o.ok, &*o.reason), (false, "status 503"));

    let mut c = http(false);
    c.kind = CheckKind::Http {
        tls: false,
        path: "/".into(),
        expect_status: vec![200],
        expect_body: Some("ready".into()),
        host: Some("www.example.com".into()),
    };
    let (addr, req) = one_shot("HTTP/1.0 200 OK\r\n\r\nnot yet").await;
    let o = probe(addr, &c).await;
    assert!(!o.ok);
    assert_eq!(o.reason, "status 200, but the body lacks `ready`");
    assert!(req.await.unwrap().contains("\r\nHost: www.example.com\r\n"));
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s);
    });
    let o = probe(addr, &http(false)).await;
    // A timeout, not the server's close 5 s later (which would be another reason).
    assert_eq!((o.ok, &*o.reason), (false, "timeout after 500ms"));
    hold.abort();
}

#[tokio::test]
async fn https_with_a_self_signed_certificate() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let certs = vec![CertificateDer::from_pem_file(format!("{dir}/cert.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut s = acceptor.accept(s).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        s.shutdown().await.unwrap();
    });
    let o = probe(addr, &http(true)).await;
    assert!(o.ok, "{o:?}");
    // Plain HTTP against a TLS port is a failure with a reason, not a hang or a panic.
    let (addr, _) = one_shot("not tls at all").await;
    let o = probe(addr, &http(true)).await;
    assert!(!o.ok);
    assert!(o.reason.starts_with("TLS handshake failed"), "{o:?}");
}

fn script(name: &str, body: &str) -> String {
    let dir = std::env::temp_dir().join(format!("lvsd-exec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p.to_string_lossy().into_owned()
}

/// True once process `pid` is gone or a zombie (killed; reaped by init soon after), within 1 s.
async fn dies(pid: &str) -> bool {
    for _ in 0..50 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn exec(command: Vec<String>, timeout_ms: u64) -> CheckSpec {
    let mut c = CheckSpec::new(CheckKind::Exec { command });
    c.timeout = Duration::from_millis(timeout_ms);
    c
}

#[tokio::test]
async fn exec_exit_codes_and_arguments() {
    let target: SocketAddr = "[2001:db8::101]:8080".parse().unwrap();
    let out = std::env::temp_dir().join(format!("lvsd-exec-args-{}", std::process::id()));
    let s = script(
        "args.sh",
        &format!("echo \"$@\" > {}; exit 0", out.display()),
    );
    let o = probe(
        target,
        &exec(vec![s, "{address}".into(), "port={port}".into()], 2000),
    )
    .await;
    assert!(o.ok, "{o:?}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().trim(),
        "2001:db8::101 port=8080"
    );
    let s = script("two.sh", "exit 2");
    let o = probe(target, &exec(vec![s], 2000)).await;
    assert_eq!((o.ok, &*o.reason), (false, "exit 2"));
    let o = probe(target, &exec(vec!["/nonexistent/check".into()], 2000)).await;
    assert!(!o.ok);
    assert!(
        o.reason.starts_with("cannot run /nonexistent/check"),
        "{o:?}"
    );
}

#[tokio::test]
async fn a_hanging_exec_check_is_killed_with_its_children() {
    let pidfile = std::env::temp_dir().join(format!("lvsd-exec-pid-{}", std::process::id()));
    // The script starts a child that would outlive it, and waits.
    let s = script(
        "hang.sh",
        &format!("sleep 30 & echo $! > {}; wait", pidfile.display()),
    );
    let o = probe("127.0.0.1:1".parse().unwrap(), &exec(vec![s], 300)).await;
    assert_eq!((o.ok, &*o.reason), (false, "timeout after 300ms (killed)"));
    let child = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    assert!(
        dies(&child).await,
        "the check's child {child} survived the kill"
    );
}

#[test]
fn judging_responses() {
    assert!(judge(b"HTTP/1.1 204 No Content\r\n\r\n", &[], None).ok);
    assert!(judge(b"HTTP/1.1 302 Found\r\n\r\n", &[], None).ok);
    assert!(!judge(b"HTTP/1.1 302 Found\r\n\r\n", &[200], None).ok);
    assert_eq!(
        judge(b"", &[], None).reason,
        "connected, then closed without a response"
    );
    assert_eq!(
        judge(b"SSH-2.0-OpenSSH_9.2\r\n", &[], None).reason,
        "not an HTTP response: `SSH-2.0-OpenSSH_9.2`"
    );
    assert!(judge(b"HTTP/1.1 200 OK\r\n\r\nall ready", &[200], Some("ready")).ok);
}

#[tokio::test]
async fn an_abandoned_exec_check_takes_its_children_along() {
    // The daemon stops (or the check is removed) while a check runs: nothing may stay behind.
    let pidfile = std::env::temp_dir().join(format!("lvsd-exec-drop-{}", std::process::id()));
    let s = script(
        "drop.sh",
        &format!("sleep 30 & echo $! > {}; wait", pidfile.display()),
    );
    let spec = exec(vec![s], 60_000);
    let _ = tokio::time::timeout(
        Duration::from_millis(300),
        probe("127.0.0.1:1".parse().unwrap(), &spec),
    )
    .await;
    let child = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    assert!(
        dies(&child).await,
        "the abandoned check's child {child} survived"
    );
}

#[tokio::test]
async fn exec_arguments_never_reach_a_shell() {
    let marker = std::env::temp_dir().join(format!("lvsd-exec-pwned-{}", std::process::id()));
    let out = std::env::temp_dir().join(format!("lvsd-exec-literal-{}", std::process::id()));
    let s = script(
        "literal.sh",
        &format!("printf '%s|' \"$@\" > {}", out.display()),
    );
    let evil = format!(
        "$(touch {}); `touch {}`",
        marker.display(),
        marker.display()
    );
    let o = probe(
        "127.0.0.1:1".parse().unwrap(),
        &exec(vec![s, evil.clone(), "{address}&&true".into()], 2000),
    )
    .await;
    assert!(o.ok, "{o:?}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("{evil}|127.0.0.1&&true|")
    );
    assert!(!marker.exists(), "an argument was run by a shell");
}
