//! One probe of one real server: connect, ask, judge, within a hard timeout. Every outcome has
//! a reason an operator can act on ("connection refused", "status 503", "exit 2", "timeout
//! after 1s (killed)").

use std::borrow::Cow;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use plan::health::{CheckKind, CheckSpec};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Healthy.
    pub ok: bool,
    /// Why, in a few words. Borrowed when it is a fixed phrase ("connected", "exit 0",
    /// "connection refused"): the common results of thousands of probes a second allocate
    /// nothing.
    pub reason: Cow<'static, str>,
}

impl Outcome {
    fn ok(reason: impl Into<Cow<'static, str>>) -> Self {
        Outcome {
            ok: true,
            reason: reason.into(),
        }
    }
    fn fail(reason: impl Into<Cow<'static, str>>) -> Self {
        Outcome {
            ok: false,
            reason: reason.into(),
        }
    }
}

/// Most of a response a check reads: enough for any status line, headers and a health page.
const MAX_RESPONSE: usize = 64 * 1024;

/// Probes `target` as `spec` says. Never takes longer than the timeout (plus the moment it
/// takes to kill an exec check's processes).
pub async fn probe(target: SocketAddr, spec: &CheckSpec) -> Outcome {
    if let CheckKind::Exec { command } = &spec.kind {
        return exec(target, command, spec.timeout).await;
    }
    match tokio::time::timeout(spec.timeout, network(target, spec)).await {
        Ok(o) => o,
        Err(_) => Outcome::fail(format!("timeout after {}", show(spec.timeout))),
    }
}

fn show(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// An I/O error in words, without the "(os error N)" tail.
fn words(e: &std::io::Error) -> Cow<'static, str> {
    // The usual failure of a check, said without building it each time.
    if e.kind() == std::io::ErrorKind::ConnectionRefused {
        return Cow::Borrowed("connection refused");
    }
    let s = e.to_string();
    Cow::Owned(s.split(" (os error").next().unwrap_or(&s).to_lowercase())
}

async fn network(target: SocketAddr, spec: &CheckSpec) -> Outcome {
    let tcp = match TcpStream::connect(target).await {
        Ok(s) => s,
        Err(e) => return Outcome::fail(words(&e)),
    };
    let CheckKind::Http {
        tls,
        path,
        expect_status,
        expect_body,
        host,
    } = &spec.kind
    else {
        // Closed with a reset, not a FIN: the check leaves no TIME_WAIT socket behind (5,000
        // checks a second would keep 300,000 of them) and costs the real server two packets
        // fewer.
        #[allow(deprecated)]
        let _ = tcp.set_linger(Some(Duration::ZERO));
        return Outcome::ok("connected");
    };
    let _ = tcp.set_nodelay(true);
    let host_header = match (host, target.ip()) {
        (Some(h), _) => h.clone(),
        (None, std::net::IpAddr::V6(a)) => format!("[{a}]"),
        (None, a) => a.to_string(),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: lvsd-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    let response = if *tls {
        let name = match host {
            Some(h) => match ServerName::try_from(h.clone()) {
                Ok(n) => n,
                Err(_) => return Outcome::fail(format!("`{h}` is not a TLS server name")),
            },
            None => ServerName::IpAddress(target.ip().into()),
        };
        let Some(config) = tls_config() else {
            return Outcome::fail("TLS is unavailable (no usable protocol version)");
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        match connector.connect(name, tcp).await {
            Ok(s) => exchange(s, &request).await,
            Err(e) => return Outcome::fail(format!("TLS handshake failed: {}", words(&e))),
        }
    } else {
        exchange(tcp, &request).await
    };
    let bytes = match response {
        Ok(b) => b,
        Err(e) => return Outcome::fail(words(&e)),
    };
    judge(&bytes, expect_status, expect_body.as_deref())
}

/// Sends the request and reads the response until the server closes, the body is complete
/// by its Content-Length, or the size limit.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &str,
) -> std::io::Result<Vec<u8>> {
    s.write_all(request.as_bytes()).await?;
    s.flush().await?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(n) => n,
            // A server that closes without TLS close_notify has still answered.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() >= MAX_RESPONSE || complete(&buf) {
            break;
        }
    }
    Ok(buf)
}

/// The headers are in and the body is as long as Content-Length says.
fn complete(buf: &[u8]) -> bool {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|len| buf.len() >= end + 4 + len)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Judges a response: the status (any 2xx/3xx unless listed) and the body substring.
pub fn judge(bytes: &[u8], expect_status: &[u16], expect_body: Option<&str>) -> Outcome {
    if bytes.is_empty() {
        return Outcome::fail("connected, then closed without a response");
    }
    let text = String::from_utf8_lossy(bytes);
    let status_line = text.lines().next().unwrap_or_default();
    let mut words = status_line.split_whitespace();
    let status = match (
        words.next(),
        words.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => code,
        _ => {
            let shown: String = status_line.chars().take(40).collect();
            return Outcome::fail(format!("not an HTTP response: `{shown}`"));
        }
    };
    let good = if expect_status.is_empty() {
        (200..400).contains(&status)
    } else {
        expect_status.contains(&status)
    };
    if !good {
        return Outcome::fail(format!("status {status}"));
    }
    if let Some(want) = expect_body {
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        if !body.contains(want) {
            return Outcome::fail(format!("status {status}, but the body lacks `{want}`"));
        }
    }
    Outcome::ok(format!("status {status}"))
}

/// Runs the program without a shell, in its own process group, with `{address}` and `{port}`
/// replaced. At the timeout the whole group is killed (a script's children too).
async fn exec(target: SocketAddr, command: &[String], timeout: Duration) -> Outcome {
    let Some((program, args)) = command.split_first() else {
        return Outcome::fail("no command");
    };
    let fill = |a: &String| {
        a.replace("{address}", &target.ip().to_string())
            .replace("{port}", &target.port().to_string())
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args.iter().map(fill))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::fail(format!("cannot run {program}: {}", words(&e))),
    };
    // Kills the whole group if this probe is abandoned (the daemon stops, the check is
    // removed): dropping the child alone would kill only the program, not what it started.
    let group = GroupGuard(child.id().and_then(|p| i32::try_from(p).ok()));
    tokio::select! {
        status = child.wait() => match status {
            Ok(s) if s.success() => Outcome::ok("exit 0"),
            Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
                (Some(c), _) => Outcome::fail(format!("exit {c}")),
                (None, Some(sig)) => Outcome::fail(format!("killed by signal {sig}")),
                _ => Outcome::fail("ended abnormally"),
            },
            Err(e) => Outcome::fail(format!("cannot wait for {program}: {}", words(&e))),
        },
        _ = tokio::time::sleep(timeout) => {
            group.kill();
            let _ = child.wait().await;
            Outcome::fail(format!("timeout after {} (killed)", show(timeout)))
        }
    }
}

/// An exec check's process group, killed when the probe ends in any way.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&self) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for GroupGuard {
    /// Also after a normal exit: a check's leftover background children go with it.
    fn drop(&mut self) {
        self.kill();
    }
}

/// Shared TLS settings: rustls with ring, certificates not verified (a health check asks
/// whether the server answers; back ends often have self-signed or internal certificates),
/// handshake signatures still verified.
fn tls_config() -> Option<Arc<ClientConfig>> {
    static CONFIG: OnceLock<Option<Arc<ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(AnyCertificate(provider.clone()));
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .ok()
                .map(|b| {
                    Arc::new(
                        b.dangerous()
                            .with_custom_certificate_verifier(verifier)
                            .with_no_client_auth(),
                    )
                })
        })
        .clone()
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
