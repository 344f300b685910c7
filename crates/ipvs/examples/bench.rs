//! Benchmark (run in the VM by tests/bench.sh, not a test): programs S services x R reals with
//! this crate and with `ipvsadm -R` on the same rules, then dumps the table with each, every
//! measurement in a fresh network namespace (the kernel keeps deleted destinations in a trash
//! list for minutes, which slows later writers in the same namespace). Prints times and ratios;
//! the median of several rounds is reported.
//!
//! Usage: bench [SERVICES] [REALS] [ROUNDS]

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipvs::save::format_rules;
use ipvs::*;
use nix::sched::{CloneFlags, unshare};

fn fresh_netns() -> Result<(), String> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
    let st = Command::new("/sbin/ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .map_err(|e| format!("ip: {e}"))?;
    if !st.success() {
        return Err("ip link set lo up failed".into());
    }
    Ok(())
}

fn requests(services: u32, reals: u32) -> Vec<Request> {
    let mut out = Vec::with_capacity((services * (reals + 1)) as usize);
    for s in 0..services {
        let k = ServiceKey::tcp(IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + s + 1)), 80);
        out.push(Request::NewService(
            k,
            ServiceSpec::new("wlc", Family::Inet),
        ));
        for r in 0..reals {
            let addr = IpAddr::V4(Ipv4Addr::from(0x0b00_0000u32 + r * 65_536 + s + 1));
            out.push(Request::NewDest(
                k,
                DestKey { addr, port: 8080 },
                DestSpec::new(ForwardMethod::DirectRoute, 1),
            ));
        }
    }
    out
}

fn rules_text(reqs: &[Request]) -> String {
    let mut rules: Vec<ipvs::save::Rule> = vec![];
    for r in reqs {
        match r {
            Request::NewService(k, s) => rules.push((*k, s.clone(), vec![])),
            Request::NewDest(_, d, s) => {
                if let Some(last) = rules.last_mut() {
                    last.2.push((*d, *s));
                }
            }
            _ => {}
        }
    }
    format_rules(&rules)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_cmd(args: &[&str], stdin: Option<&str>) -> Result<Duration, String> {
    let start = Instant::now();
    let mut child = Command::new("ipvsadm")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("ipvsadm: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
    }
    let st = child.wait().map_err(|e| format!("wait: {e}"))?;
    if !st.success() {
        return Err(format!("ipvsadm {args:?} failed"));
    }
    Ok(start.elapsed())
}

async fn ours(reqs: &[Request], objects: usize) -> Result<(Duration, Duration), String> {
    fresh_netns()?;
    let start = Instant::now();
    let mut c = Client::connect().await.map_err(|e| e.to_string())?;
    for r in c.execute(reqs).await {
        r.map_err(|e| e.to_string())?;
    }
    let apply = start.elapsed();
    let start = Instant::now();
    let dump = c.dump().await.map_err(|e| e.to_string())?;
    let dump_time = start.elapsed();
    let n: usize = dump.iter().map(|(_, d)| d.len() + 1).sum();
    if n != objects {
        return Err(format!("dump returned {n} objects, expected {objects}"));
    }
    Ok((apply, dump_time))
}

fn theirs(text: &str) -> Result<(Duration, Duration), String> {
    fresh_netns()?;
    let apply = time_cmd(&["-R"], Some(text))?;
    let dump = time_cmd(&["-Sn"], None)?;
    Ok((apply, dump))
}

fn main() -> Result<(), String> {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().map_err(|_| format!("not a number: {a}")))
        .collect::<Result<_, _>>()?;
    let services = args.first().copied().unwrap_or(1000);
    let reals = args.get(1).copied().unwrap_or(10);
    let rounds = args.get(2).copied().unwrap_or(3).max(1);
    let reqs = requests(services, reals);
    let text = rules_text(&reqs);
    let objects = reqs.len();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (mut oa, mut od, mut ta, mut td) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (a, d) = rt.block_on(ours(&reqs, objects))?;
        oa.push(a);
        od.push(d);
        let (a, d) = theirs(&text)?;
        ta.push(a);
        td.push(d);
    }
    let (oa, od, ta, td) = (median(oa), median(od), median(ta), median(td));
    let ratio = |them: Duration, us: Duration| them.as_secs_f64() / us.as_secs_f64().max(1e-9);
    println!(
        "objects: {objects} ({services} services x {reals} reals), median of {rounds} rounds, fresh namespace each"
    );
    println!(
        "{:<12} {:>12} {:>14} {:>8}",
        "", "lvsd ipvs", "ipvsadm", "ratio"
    );
    println!(
        "{:<12} {:>10.3} s {:>12.3} s {:>7.1}x   (ipvsadm -R)",
        "cold apply",
        oa.as_secs_f64(),
        ta.as_secs_f64(),
        ratio(ta, oa)
    );
    println!(
        "{:<12} {:>10.3} s {:>12.3} s {:>7.1}x   (ipvsadm -Sn)",
        "full dump",
        od.as_secs_f64(),
        td.as_secs_f64(),
        ratio(td, od)
    );
    Ok(())
}
