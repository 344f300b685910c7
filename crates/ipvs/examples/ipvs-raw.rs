//! The benchmark's floor and probes (run in the VM by tests/bench/lvsd-bench.sh, not a test):
//! this crate alone, without a file, a plan or lvsd's bookkeeping.
//!
//! - `write S R`: writes S services × R reals (the benchmark's generated table) in batches,
//!   acks only at chunk ends: the floor of a cold apply. Prints seconds.
//! - `dump`: reads the whole table (services, then every service's reals): the floor of a
//!   no-op. Prints seconds, the objects read and the process's CPU seconds for the read (user
//!   and system: the kernel's dump runs in the reader's context), the floor of a resync.
//! - `count N`: waits until the table holds N services (e.g. while keepalived loads its
//!   config). Prints seconds.
//! - `rename-wait SRC DST SERVICE REAL WEIGHT` and `signal-wait PID SIGNAL SERVICE REAL WEIGHT`:
//!   renames a file into place (or signals a process), then polls the one service over netlink
//!   until REAL has WEIGHT: an edit's latency from outside the daemon. Prints milliseconds.
//!   Polls every millisecond, not without pause: a spinning probe took one of the test VM's two
//!   vCPUs from the daemon it was timing.
//! - `listen ADDR...`: accepts and closes TCP connections on each address until killed (the
//!   lab's real servers for health checks at scale: one task a listener on one thread, cheap
//!   enough not to be what is measured, also with thousands of addresses).
//! - `connect SECONDS ADDR...`: the floor of a tcp health check: each address connected to
//!   once a second for SECONDS (the slots spread over the second on 10 ms ticks, as lvsd's
//!   probes are), each a blocking `connect` (on loopback the whole handshake runs inside it)
//!   closed with a reset, on one thread with no runtime: the kernel's share of a probe and
//!   hardly anything else. Prints the connections made and their CPU seconds.
//! - `lateness [EARLIER]`: reads Prometheus text on stdin and prints p50 and p99 of
//!   `lvsd_check_lateness_seconds` (from its buckets); with the file of an earlier scrape, of
//!   the probes started between the two.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ipvs::*;

/// The benchmark's i-th service address (10.1.x.y:80 for the first 64,000, then 10.100.x.y,
/// 10.199.x.y: never the reals' 10.2.x.y; as tests/bench/lvsd-bench.sh writes).
fn service(i: u32) -> ServiceKey {
    let addr = Ipv4Addr::new(
        10,
        (1 + 99 * (i / 64_000)) as u8,
        (i % 64_000 / 250) as u8,
        (i % 250 + 1) as u8,
    );
    ServiceKey::tcp(IpAddr::V4(addr), 80)
}

/// The j-th real (1-based, 10.2.a.b:80).
fn real(j: u32) -> DestKey {
    DestKey {
        addr: IpAddr::V4(Ipv4Addr::new(10, 2, (j / 250) as u8, (j % 250 + 1) as u8)),
        port: 80,
    }
}

/// This process's user and system CPU time so far, in seconds (from /proc/self/stat, in
/// clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime are the 12th and
    // 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|w| w.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    ticks as f64 / 100.0
}

fn parse_socket(s: &str) -> Result<(IpAddr, u16), String> {
    let a: SocketAddr = s.parse().map_err(|e| format!("{s}: {e}"))?;
    Ok((a.ip(), a.port()))
}

async fn weight_of(c: &mut Client, svc: &ServiceKey, real: &DestKey) -> Option<u32> {
    c.dests(svc)
        .await
        .ok()?
        .into_iter()
        .find(|d| d.key == *real)
        .map(|d| d.spec.weight)
}

async fn wait_weight(c: &mut Client, svc: &ServiceKey, real: &DestKey, w: u32, t0: Instant) {
    while weight_of(c, svc, real).await != Some(w) {
        if t0.elapsed() > Duration::from_secs(120) {
            println!("timeout");
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("{:.1}", t0.elapsed().as_secs_f64() * 1000.0);
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> Result<T, String> {
    args.get(i)
        .ok_or_else(|| format!("argument {i} missing"))?
        .parse()
        .map_err(|_| format!("argument {i} is not valid"))
}

async fn run(args: Vec<String>) -> Result<(), String> {
    let cmd = args.first().map(String::as_str).unwrap_or_default();
    match cmd {
        "write" => {
            let (s, r): (u32, u32) = (arg(&args, 1)?, arg(&args, 2)?);
            let mut reqs = Vec::with_capacity((s * (r + 1)) as usize);
            for i in 0..s {
                let k = service(i);
                reqs.push(Request::NewService(
                    k,
                    ServiceSpec::new("wlc", Family::Inet),
                ));
                for j in 1..=r {
                    reqs.push(Request::NewDest(
                        k,
                        real(j),
                        DestSpec::new(ForwardMethod::DirectRoute, 1),
                    ));
                }
            }
            let mut c = Client::connect().await.map_err(|e| e.to_string())?;
            let t0 = Instant::now();
            let results = c.execute(&reqs).await;
            let took = t0.elapsed();
            let failed = results.iter().filter(|r| r.is_err()).count();
            if failed > 0 {
                return Err(format!("{failed} of {} writes failed", reqs.len()));
            }
            println!("{:.3}", took.as_secs_f64());
        }
        "dump" => {
            let mut c = Client::connect().await.map_err(|e| e.to_string())?;
            let t0 = Instant::now();
            let cpu0 = cpu_seconds();
            let d = c.dump().await.map_err(|e| e.to_string())?;
            let objects: usize = d.iter().map(|(_, ds)| 1 + ds.len()).sum();
            println!(
                "{:.3} {objects} {:.2}",
                t0.elapsed().as_secs_f64(),
                cpu_seconds() - cpu0
            );
        }
        "count" => {
            let n: usize = arg(&args, 1)?;
            let mut c = Client::connect().await.map_err(|e| e.to_string())?;
            let t0 = Instant::now();
            while c.services().await.map_err(|e| e.to_string())?.len() < n {
                if t0.elapsed() > Duration::from_secs(600) {
                    return Err("timeout".into());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            println!("{:.3}", t0.elapsed().as_secs_f64());
        }
        "rename-wait" | "signal-wait" => {
            let (sa, sp) = parse_socket(&args[3.min(args.len() - 1)])?;
            let (ra, rp) = parse_socket(&args[4.min(args.len() - 1)])?;
            let w: u32 = arg(&args, 5)?;
            let svc = ServiceKey::tcp(sa, sp);
            let real = DestKey { addr: ra, port: rp };
            let mut c = Client::connect().await.map_err(|e| e.to_string())?;
            let t0 = Instant::now();
            // The wall clock of the rename or signal on stderr (seconds into the UTC day), to
            // be placed against the daemon's log.
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| {
                    (d.as_secs() % 86_400) as f64 + f64::from(d.subsec_micros()) / 1e6
                });
            eprintln!(
                "at {:02}:{:02}:{:09.6}",
                (wall / 3600.0) as u64,
                (wall % 3600.0 / 60.0) as u64,
                wall % 60.0
            );
            if cmd == "rename-wait" {
                std::fs::rename(&args[1], &args[2]).map_err(|e| e.to_string())?;
            } else {
                let pid: i32 = arg(&args, 1)?;
                let sig: i32 = arg(&args, 2)?;
                let sig = nix::sys::signal::Signal::try_from(sig).map_err(|e| e.to_string())?;
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
                    .map_err(|e| e.to_string())?;
            }
            wait_weight(&mut c, &svc, &real, w, t0).await;
        }
        "listen" => {
            // Accepted and closed at once: a health check's connect succeeds. The number of
            // connections accepted so far is written to the file named by LISTEN_COUNT every
            // second (the probes actually made, whoever makes them).
            let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            for a in &args[1..] {
                let l = tokio::net::TcpListener::bind(a)
                    .await
                    .map_err(|e| format!("{a}: {e}"))?;
                let n = accepted.clone();
                tokio::spawn(async move {
                    loop {
                        if l.accept().await.is_ok() {
                            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
            let path = std::env::var_os("LISTEN_COUNT");
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Some(path) = &path {
                    let n = accepted.load(std::sync::atomic::Ordering::Relaxed);
                    let _ = std::fs::write(path, format!("{n}\n"));
                }
            }
        }
        "connect" => {
            let seconds: u64 = args
                .get(1)
                .and_then(|a| a.parse().ok())
                .ok_or("connect SECONDS ADDR...")?;
            let targets: Vec<SocketAddr> = args[2..]
                .iter()
                .map(|a| a.parse().map_err(|e| format!("{a}: {e}")))
                .collect::<Result<_, String>>()?;
            let (made, cpu) = connect_floor(&targets, seconds);
            println!("{made} {cpu:.2}");
        }
        "lateness" => {
            // The buckets of a scrape; with a file of an earlier scrape as argument, only what
            // was counted between the two (the steady state, not the start's burst).
            fn read_buckets(text: &str) -> Vec<(f64, f64)> {
                let mut out = vec![];
                for line in text.lines() {
                    let Some(rest) = line.strip_prefix("lvsd_check_lateness_seconds_bucket{le=\"")
                    else {
                        continue;
                    };
                    let Some((le, count)) = rest.split_once("\"} ") else {
                        continue;
                    };
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap_or(f64::INFINITY)
                    };
                    out.push((le, count.trim().parse().unwrap_or(0.0)));
                }
                out
            }
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| e.to_string())?;
            let mut buckets = read_buckets(&text);
            if let Some(before) = args.get(1) {
                let before = std::fs::read_to_string(before).map_err(|e| e.to_string())?;
                let before = read_buckets(&before);
                for (b, (_, was)) in buckets.iter_mut().zip(before) {
                    b.1 -= was;
                }
            }
            let total = buckets.last().map_or(0.0, |b| b.1);
            let q = |p: f64| -> String {
                buckets
                    .iter()
                    .find(|(_, c)| *c >= p * total)
                    .map_or("n/a".into(), |(le, _)| {
                        if le.is_finite() {
                            format!("{:.0}ms", le * 1000.0)
                        } else {
                            ">max".into()
                        }
                    })
            };
            println!("p50 <= {} p99 <= {} ({total} checks)", q(0.5), q(0.99));
        }
        _ => {
            return Err(
                "usage: ipvs-raw write S R | dump | count N | rename-wait SRC DST SVC REAL W | signal-wait PID SIG SVC REAL W | listen ADDR... | connect SECONDS ADDR... | lateness"
                    .into(),
            );
        }
    }
    Ok(())
}

/// `connect`: every target once a second for `seconds`, on 10 ms ticks; the connections made
/// and this process's CPU seconds meanwhile.
fn connect_floor(targets: &[SocketAddr], seconds: u64) -> (u64, f64) {
    const TICKS: usize = 100;
    let tick = Duration::from_millis(10);
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut made = 0u64;
    for t in 0..(seconds as usize * TICKS) {
        let due = start + tick * t as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        // The targets whose slot falls in this tick: target k at k/n of the second.
        let slot = t % TICKS;
        for (k, a) in targets.iter().enumerate() {
            if k * TICKS / targets.len() != slot {
                continue;
            }
            if let Ok(s) = std::net::TcpStream::connect(a) {
                let _ = nix::sys::socket::setsockopt(
                    &s,
                    nix::sys::socket::sockopt::Linger,
                    &nix::libc::linger {
                        l_onoff: 1,
                        l_linger: 0,
                    },
                );
                made += 1;
            }
        }
    }
    (made, cpu_seconds() - cpu0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(args).await {
        eprintln!("ipvs-raw: {e}");
        std::process::exit(1);
    }
}
