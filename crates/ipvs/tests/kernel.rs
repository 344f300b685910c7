//! Kernel tests: the client against the real IPVS of the test VM's kernel (run by tests/run.sh,
//! inside the VM, as root). Each test gets a fresh network namespace — IPVS state is per namespace
//! — by unsharing it on its own test thread. Every state is checked twice: read back through the
//! client, and through `ipvsadm -Sn`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;

use ipvs::save::{Rule, parse_rules, rules_of};
use ipvs::*;
use nix::errno::Errno;
use nix::sched::{CloneFlags, unshare};

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` with a connected client in a fresh network namespace with `lo` up (the kernel refuses
/// destinations while it is down).
fn in_netns<F, Fut>(f: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    unshare(CloneFlags::CLONE_NEWNET)
        .expect("unshare(CLONE_NEWNET): kernel tests run as root in the VM");
    sh("/sbin/ip", &["link", "set", "lo", "up"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = Client::connect().await.expect("connect");
        f(client).await
    });
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
}

fn seed_vip() -> ServiceKey {
    ServiceKey::tcp(v4(172, 16, 1, 50), 80)
}

/// What both our dump and `ipvsadm -Sn` show, in a form that compares across the two: ipvsadm
/// prints local destinations as `-g` and omits thresholds.
fn comparable(rules: &[Rule]) -> Vec<String> {
    let mut out: Vec<String> = rules
        .iter()
        .flat_map(|(k, s, d)| {
            let mut flags = s.flags.without_kernel_bits();
            flags.0 &= ServiceFlags::PERSISTENT.0;
            let head = format!(
                "{k} {} persistent={} timeout={} netmask={} pe={:?}",
                s.scheduler,
                flags.0,
                if flags.0 != 0 { s.timeout } else { 0 },
                s.netmask,
                s.pe_name
            );
            let mut lines = vec![head];
            for (dk, ds) in d {
                let fwd = match ds.forward {
                    ForwardMethod::Local => ForwardMethod::DirectRoute,
                    f => f,
                };
                lines.push(format!("{k} -> {dk} {fwd} w={}", ds.weight));
            }
            lines
        })
        .collect();
    out.sort();
    out
}

/// Asserts that `ipvsadm -Sn` sees the same table as our client, and returns our dump.
async fn assert_ipvsadm_agrees(client: &mut Client) -> Vec<(Service, Vec<Dest>)> {
    let dump = client.dump().await.expect("dump");
    let theirs = parse_rules(&sh("ipvsadm", &["-Sn"])).expect("ipvsadm -Sn parses");
    assert_eq!(
        comparable(&rules_of(&dump)),
        comparable(&theirs),
        "our dump vs ipvsadm -Sn"
    );
    dump
}

/// Dumps until `ready` holds: the kernel folds per-CPU counters into the statistics it exports
/// only on its estimator tick (every 2 s), so fresh traffic shows up with a delay.
async fn dump_when(
    c: &mut Client,
    ready: impl Fn(&[(Service, Vec<Dest>)]) -> bool,
) -> Vec<(Service, Vec<Dest>)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let d = c.dump().await.expect("dump");
        if ready(&d) || std::time::Instant::now() > deadline {
            return d;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

fn ok_all(results: BatchResult) {
    for (i, r) in results.into_iter().enumerate() {
        if let Err(e) = r {
            panic!("request {i} failed: {e}");
        }
    }
}

#[test]
fn info_of_an_empty_table() {
    in_netns(|mut c| async move {
        let info = c.info().await.expect("info");
        assert_eq!(info.version_string(), "1.2.1");
        assert!(info.conn_tab_size >= 4096, "{info:?}");
        assert!(c.services().await.expect("services").is_empty());
        assert!(sh("ipvsadm", &["-Sn"]).trim().is_empty());
        assert!(c.family_id() >= 0x10);
    });
}

#[test]
fn the_seed_director_like_ipvsadm() {
    in_netns(|mut c| async move {
        let dr = DestSpec::new(ForwardMethod::DirectRoute, 1);
        ok_all(
            c.execute(&[
                Request::NewService(seed_vip(), ServiceSpec::new("wlc", Family::Inet)),
                Request::NewDest(
                    seed_vip(),
                    DestKey {
                        addr: v4(172, 16, 1, 101),
                        port: 80,
                    },
                    dr,
                ),
                Request::NewDest(
                    seed_vip(),
                    DestKey {
                        addr: v4(172, 16, 1, 102),
                        port: 80,
                    },
                    dr,
                ),
            ])
            .await,
        );
        let dump = assert_ipvsadm_agrees(&mut c).await;
        assert_eq!(dump.len(), 1);
        let (svc, dests) = &dump[0];
        assert_eq!(svc.spec.scheduler, "wlc");
        assert!(svc.spec.flags.contains(ServiceFlags::HASHED));
        assert_eq!(dests.len(), 2);
        assert!(dests.iter().all(|d| d.spec == dr));
        let one = c.service(&seed_vip()).await.expect("get").expect("present");
        assert_eq!(one.key, seed_vip());
        assert_eq!(
            c.service(&ServiceKey::tcp(v4(1, 2, 3, 4), 80))
                .await
                .expect("get"),
            None
        );
    });
}

/// Schedulers the kernel has loaded, read from /sys/module rather than assumed.
fn kernel_schedulers() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir("/sys/module")
        .expect("/sys/module")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter_map(|n| n.strip_prefix("ip_vs_").map(str::to_string))
        .filter(|n| n != "ftp" && !n.starts_with("pe_"))
        .collect();
    out.sort();
    out
}

#[test]
fn every_scheduler_the_kernel_ships() {
    let scheds = kernel_schedulers();
    assert!(
        scheds.len() >= 13,
        "expected Debian's 13 schedulers, found {scheds:?}"
    );
    in_netns(|mut c| async move {
        let reqs: Vec<Request> = scheds
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Request::NewService(
                    ServiceKey::tcp(v4(10, 0, 0, 1), 1000 + i as u16),
                    ServiceSpec::new(s.as_str(), Family::Inet),
                )
            })
            .collect();
        ok_all(c.execute(&reqs).await);
        let dump = assert_ipvsadm_agrees(&mut c).await;
        let mut got: Vec<String> = dump.iter().map(|(s, _)| s.spec.scheduler.clone()).collect();
        got.sort();
        assert_eq!(got, scheds);
    });
}

#[test]
fn protocols_families_and_fwmarks() {
    in_netns(|mut c| async move {
        let keys = [
            ServiceKey::tcp(v4(10, 0, 0, 1), 80),
            ServiceKey::Addr {
                protocol: Protocol::Udp,
                addr: v4(10, 0, 0, 1),
                port: 53,
            },
            ServiceKey::Addr {
                protocol: Protocol::Sctp,
                addr: v4(10, 0, 0, 1),
                port: 9999,
            },
            ServiceKey::tcp(v6(0x50), 443),
            ServiceKey::Addr {
                protocol: Protocol::Udp,
                addr: v6(0x50),
                port: 53,
            },
            ServiceKey::Addr {
                protocol: Protocol::Sctp,
                addr: v6(0x50),
                port: 9999,
            },
            ServiceKey::Fwmark {
                mark: 7,
                family: Family::Inet,
            },
            ServiceKey::Fwmark {
                mark: 8,
                family: Family::Inet6,
            },
        ];
        let mut reqs = vec![];
        for k in keys {
            reqs.push(Request::NewService(k, ServiceSpec::new("rr", k.family())));
            let addr = if k.family() == Family::Inet {
                v4(10, 0, 1, 2)
            } else {
                v6(0x102)
            };
            reqs.push(Request::NewDest(
                k,
                DestKey { addr, port: 8080 },
                DestSpec::new(ForwardMethod::Masq, 2),
            ));
        }
        ok_all(c.execute(&reqs).await);
        let dump = assert_ipvsadm_agrees(&mut c).await;
        assert_eq!(dump.len(), keys.len());
        for k in keys {
            let (_, d) = dump
                .iter()
                .find(|(s, _)| s.key == k)
                .expect("service present");
            assert_eq!(d.len(), 1, "{k}");
            assert_eq!(d[0].key.family(), k.family());
        }
    });
}

#[test]
fn forwarding_methods_and_tunnel_settings() {
    in_netns(|mut c| async move {
        let k = ServiceKey::tcp(v4(10, 0, 0, 1), 80);
        let mut ipip = DestSpec::new(ForwardMethod::Tunnel, 1);
        ipip.tunnel_type = TunnelType::Ipip;
        let mut gue = DestSpec::new(ForwardMethod::Tunnel, 1);
        gue.tunnel_type = TunnelType::Gue;
        gue.tunnel_port = 6080;
        gue.tunnel_flags = 1;
        let mut gre = DestSpec::new(ForwardMethod::Tunnel, 1);
        gre.tunnel_type = TunnelType::Gre;
        gre.tunnel_flags = 2;
        let dests = [
            (
                v4(10, 0, 1, 1),
                DestSpec::new(ForwardMethod::DirectRoute, 1),
            ),
            (v4(10, 0, 1, 2), DestSpec::new(ForwardMethod::Masq, 1)),
            (v4(10, 0, 1, 3), ipip),
            (v4(10, 0, 1, 4), gue),
            (v4(10, 0, 1, 5), gre),
        ];
        let mut reqs = vec![Request::NewService(
            k,
            ServiceSpec::new("wrr", Family::Inet),
        )];
        for (a, s) in dests {
            reqs.push(Request::NewDest(k, DestKey { addr: a, port: 80 }, s));
        }
        reqs.push(Request::NewDest(
            k,
            DestKey {
                addr: v4(127, 0, 0, 1),
                port: 80,
            },
            DestSpec::new(ForwardMethod::Local, 1),
        ));
        ok_all(c.execute(&reqs).await);
        let dump = assert_ipvsadm_agrees(&mut c).await;
        let got = &dump[0].1;
        for (a, s) in dests {
            let d = got.iter().find(|d| d.key.addr == a).expect("dest");
            assert_eq!(d.spec, s, "{a}");
        }
        let local = got
            .iter()
            .find(|d| d.key.addr == v4(127, 0, 0, 1))
            .expect("local");
        assert_eq!(local.spec.forward, ForwardMethod::Local);
        // A tunnelled IPv6 real server behind an IPv4 service: the one family mix the kernel allows.
        c.apply(Request::NewDest(
            k,
            DestKey {
                addr: v6(0x9),
                port: 80,
            },
            ipip,
        ))
        .await
        .expect("mixed-family tunnel");
        let d = c.dests(&k).await.expect("dests");
        assert!(
            d.iter()
                .any(|d| d.key.addr == v6(0x9) && d.spec.forward == ForwardMethod::Tunnel)
        );
        let err = c
            .apply(Request::NewDest(
                k,
                DestKey {
                    addr: v6(0xa),
                    port: 80,
                },
                DestSpec::new(ForwardMethod::DirectRoute, 1),
            ))
            .await
            .expect_err("mixed family without tunnel");
        assert_eq!(err.errno(), Some(Errno::EINVAL), "{err}");
        // Bypass, on a service of its own: ipvsadm's rule format has no switch for it, so it is
        // read back through the client only.
        let b = ServiceKey::tcp(v4(10, 0, 0, 9), 80);
        let bypass = DestSpec::new(ForwardMethod::Bypass, 1);
        ok_all(
            c.execute(&[
                Request::NewService(b, ServiceSpec::new("rr", Family::Inet)),
                Request::NewDest(
                    b,
                    DestKey {
                        addr: v4(10, 0, 2, 1),
                        port: 80,
                    },
                    bypass,
                ),
            ])
            .await,
        );
        assert_eq!(c.dests(&b).await.expect("dests")[0].spec, bypass);
    });
}

#[test]
fn persistence_netmasks_flags_and_thresholds() {
    in_netns(|mut c| async move {
        let p4 = ServiceKey::tcp(v4(10, 0, 0, 1), 443);
        let p6 = ServiceKey::tcp(v6(0x50), 443);
        let sip = ServiceKey::Addr {
            protocol: Protocol::Udp,
            addr: v4(10, 0, 0, 1),
            port: 5060,
        };
        let ops = ServiceKey::Addr {
            protocol: Protocol::Udp,
            addr: v4(10, 0, 0, 1),
            port: 53,
        };
        let sh = ServiceKey::tcp(v4(10, 0, 0, 2), 80);
        let mh = ServiceKey::tcp(v4(10, 0, 0, 3), 80);
        let specs = [
            (
                p4,
                ServiceSpec {
                    flags: ServiceFlags::PERSISTENT,
                    timeout: 300,
                    netmask: Netmask::V4(Ipv4Addr::new(255, 255, 255, 0)),
                    ..ServiceSpec::new("wlc", Family::Inet)
                },
            ),
            (
                p6,
                ServiceSpec {
                    flags: ServiceFlags::PERSISTENT,
                    timeout: 60,
                    netmask: Netmask::V6(64),
                    ..ServiceSpec::new("lc", Family::Inet6)
                },
            ),
            (
                sip,
                ServiceSpec {
                    flags: ServiceFlags::PERSISTENT,
                    timeout: 30,
                    pe_name: Some("sip".into()),
                    ..ServiceSpec::new("rr", Family::Inet)
                },
            ),
            (
                ops,
                ServiceSpec {
                    flags: ServiceFlags::ONE_PACKET,
                    ..ServiceSpec::new("rr", Family::Inet)
                },
            ),
            (
                sh,
                ServiceSpec {
                    flags: ServiceFlags::SH_FALLBACK | ServiceFlags::SH_PORT,
                    ..ServiceSpec::new("sh", Family::Inet)
                },
            ),
            (
                mh,
                ServiceSpec {
                    flags: ServiceFlags::MH_FALLBACK | ServiceFlags::MH_PORT,
                    ..ServiceSpec::new("mh", Family::Inet)
                },
            ),
        ];
        let mut reqs: Vec<Request> = specs
            .iter()
            .map(|(k, s)| Request::NewService(*k, s.clone()))
            .collect();
        let mut th = DestSpec::new(ForwardMethod::DirectRoute, 3);
        th.upper_threshold = 100;
        th.lower_threshold = 10;
        reqs.push(Request::NewDest(
            p4,
            DestKey {
                addr: v4(10, 0, 1, 1),
                port: 443,
            },
            th,
        ));
        ok_all(c.execute(&reqs).await);
        let dump = assert_ipvsadm_agrees(&mut c).await;
        for (k, s) in &specs {
            let got = &dump
                .iter()
                .find(|(x, _)| x.key == *k)
                .expect("service")
                .0
                .spec;
            assert_eq!(got.flags.without_kernel_bits(), s.flags, "{k}");
            assert_eq!(
                (got.timeout, got.netmask, &got.pe_name, &got.scheduler),
                (s.timeout, s.netmask, &s.pe_name, &s.scheduler),
                "{k}"
            );
        }
        let d = &dump.iter().find(|(x, _)| x.key == p4).expect("p4").1[0];
        assert_eq!((d.spec.upper_threshold, d.spec.lower_threshold), (100, 10));
    });
}

#[test]
fn in_place_edits_keep_the_object_and_its_counters() {
    in_netns(|mut c| async move {
        sh("/sbin/ip", &["addr", "add", "10.9.9.9/32", "dev", "lo"]);
        let k = ServiceKey::tcp(v4(10, 9, 9, 9), 80);
        let real = DestKey {
            addr: v4(10, 0, 1, 1),
            port: 80,
        };
        ok_all(
            c.execute(&[
                Request::NewService(k, ServiceSpec::new("rr", Family::Inet)),
                Request::NewDest(k, real, DestSpec::new(ForwardMethod::Masq, 1)),
            ])
            .await,
        );
        // A local connection attempt is scheduled by IPVS (LOCAL_OUT) and counted, though the
        // real server does not exist.
        let _ = std::net::TcpStream::connect_timeout(
            &"10.9.9.9:80".parse().expect("addr"),
            std::time::Duration::from_millis(300),
        );
        let before = dump_when(&mut c, |d| d[0].0.stats.conns >= 1).await;
        assert!(
            before[0].0.stats.conns >= 1,
            "the attempt was scheduled: {:?}",
            before[0].0.stats
        );
        let conns_before = before[0].1[0].conns.active + before[0].1[0].conns.inactive;
        assert!(conns_before >= 1, "{:?}", before[0].1[0].conns);

        let mut spec = ServiceSpec::new("wlc", Family::Inet);
        spec.flags = ServiceFlags::PERSISTENT;
        spec.timeout = 120;
        ok_all(
            c.execute(&[
                Request::SetService(k, spec.clone()),
                Request::SetDest(k, real, DestSpec::new(ForwardMethod::DirectRoute, 7)),
            ])
            .await,
        );
        let after = assert_ipvsadm_agrees(&mut c).await;
        assert_eq!(after[0].0.spec.scheduler, "wlc");
        assert_eq!(
            after[0].0.spec.flags.without_kernel_bits(),
            ServiceFlags::PERSISTENT
        );
        assert_eq!(after[0].1[0].spec.weight, 7);
        assert_eq!(after[0].1[0].spec.forward, ForwardMethod::DirectRoute);
        assert!(
            after[0].0.stats.conns >= before[0].0.stats.conns,
            "service counters survived the edit"
        );
        assert!(
            after[0].1[0].stats.conns >= 1,
            "destination counters survived the edit"
        );
        assert_eq!(
            after[0].1[0].conns.active + after[0].1[0].conns.inactive,
            conns_before,
            "connections kept"
        );
    });
}

#[test]
fn errors_name_the_object_and_keep_the_errno() {
    in_netns(|mut c| async move {
        let k = seed_vip();
        let missing = c
            .apply(Request::NewService(k, ServiceSpec::new("dr", Family::Inet)))
            .await
            .expect_err("dr is not a scheduler");
        assert!(
            matches!(&missing, Error::SchedulerMissing { scheduler, .. } if scheduler == "dr"),
            "{missing:?}"
        );
        assert!(missing.to_string().contains("ip_vs_dr"), "{missing}");
        assert_eq!(missing.errno(), Some(Errno::ENOENT));

        c.apply(Request::NewService(
            k,
            ServiceSpec::new("wlc", Family::Inet),
        ))
        .await
        .expect("add");
        let dup = c
            .apply(Request::NewService(
                k,
                ServiceSpec::new("wlc", Family::Inet),
            ))
            .await
            .expect_err("dup");
        assert!(matches!(dup, Error::Exists { .. }), "{dup:?}");
        assert!(dup.to_string().contains("172.16.1.50:80"), "{dup}");

        let other = ServiceKey::tcp(v4(172, 16, 1, 99), 80);
        let real = DestKey {
            addr: v4(172, 16, 1, 101),
            port: 80,
        };
        let orphan = c
            .apply(Request::NewDest(
                other,
                real,
                DestSpec::new(ForwardMethod::DirectRoute, 1),
            ))
            .await
            .expect_err("no such service");
        assert!(
            matches!(
                orphan,
                Error::NotFound {
                    errno: Errno::ESRCH,
                    ..
                }
            ),
            "{orphan:?}"
        );
        let gone = c
            .apply(Request::DelDest(k, real))
            .await
            .expect_err("no such real");
        assert!(
            matches!(
                gone,
                Error::NotFound {
                    errno: Errno::ENOENT,
                    ..
                }
            ),
            "{gone:?}"
        );
        let svc_gone = c
            .apply(Request::DelService(other))
            .await
            .expect_err("no such service");
        assert_eq!(svc_gone.errno(), Some(Errno::ESRCH));

        // A failure in the middle of a batch is reported against its request; the rest still apply.
        let results = c
            .execute(&[
                Request::NewDest(k, real, DestSpec::new(ForwardMethod::DirectRoute, 1)),
                Request::NewDest(other, real, DestSpec::new(ForwardMethod::DirectRoute, 1)),
                Request::NewDest(
                    k,
                    DestKey {
                        addr: v4(172, 16, 1, 102),
                        port: 80,
                    },
                    DestSpec::new(ForwardMethod::DirectRoute, 1),
                ),
                Request::NewService(k, ServiceSpec::new("wlc", Family::Inet)),
            ])
            .await;
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(
            matches!(results[1], Err(Error::NotFound { .. })),
            "{results:?}"
        );
        assert!(
            matches!(results[3], Err(Error::Exists { .. })),
            "{results:?}"
        );
        let dump = assert_ipvsadm_agrees(&mut c).await;
        assert_eq!(dump[0].1.len(), 2);
        // The kernel answers a destination dump of a missing service with an empty dump.
        assert!(
            c.dests(&other)
                .await
                .expect("dests of a missing service")
                .is_empty()
        );
    });
}

#[test]
fn permission_denied_without_cap_net_admin() {
    if std::env::var_os("LVSD_KERNEL_TEST_CHILD").is_some() {
        // The child: an unprivileged user in the parent's namespace.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async {
            let err = match Client::connect().await {
                Ok(mut c) => c.services().await.expect_err("unprivileged dump must fail"),
                Err(e) => e,
            };
            assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
            println!("CHILD-ERROR: {err}");
        });
        return;
    }
    in_netns(|_c| async move {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe().expect("current exe");
        let out = Command::new(exe)
            .args([
                "permission_denied_without_cap_net_admin",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("LVSD_KERNEL_TEST_CHILD", "1")
            .uid(65534)
            .gid(65534)
            .output()
            .expect("spawn the unprivileged child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("CHILD-ERROR:") && stdout.contains("CAP_NET_ADMIN"),
            "{stdout}"
        );
        assert!(
            stdout.contains("1 passed"),
            "the child ran the test: {stdout}"
        );
    });
}

#[test]
fn timeouts_round_trip() {
    in_netns(|mut c| async move {
        let t = Timeouts {
            tcp: 900,
            tcp_fin: 120,
            udp: 300,
        };
        c.apply(Request::SetTimeouts(t)).await.expect("set");
        assert_eq!(c.timeouts().await.expect("get"), t);
        let text = sh("ipvsadm", &["-Ln", "--timeout"]);
        assert!(text.contains("900 120 300"), "{text}");
    });
}

#[test]
fn sync_daemon_start_and_stop() {
    in_netns(|mut c| async move {
        let mut d = SyncDaemon::new(DaemonState::Master, "lo", 5);
        d.sync_maxlen = Some(1400);
        d.mcast_group = Some(Ipv4Addr::new(224, 0, 0, 81));
        d.mcast_port = Some(8848);
        d.mcast_ttl = Some(2);
        c.apply(Request::NewDaemon(d.clone()))
            .await
            .expect("start master");
        c.apply(Request::NewDaemon(SyncDaemon::new(
            DaemonState::Backup,
            "lo",
            6,
        )))
        .await
        .expect("start backup");
        let got = c.daemons().await.expect("daemons");
        let master = got
            .iter()
            .find(|x| x.state == DaemonState::Master)
            .expect("master");
        assert_eq!((master.mcast_ifn.as_str(), master.sync_id), ("lo", 5));
        assert_eq!(
            (
                master.sync_maxlen,
                master.mcast_group,
                master.mcast_port,
                master.mcast_ttl
            ),
            (d.sync_maxlen, d.mcast_group, d.mcast_port, d.mcast_ttl)
        );
        assert!(
            got.iter()
                .any(|x| x.state == DaemonState::Backup && x.sync_id == 6)
        );
        let text = sh("ipvsadm", &["-Ln", "--daemon"]);
        assert!(
            text.contains("master sync daemon (mcast=lo, syncid=5"),
            "{text}"
        );
        assert!(
            text.contains("maxlen=1400, group=224.0.0.81, port=8848, ttl=2"),
            "{text}"
        );
        c.apply(Request::DelDaemon(DaemonState::Master))
            .await
            .expect("stop master");
        c.apply(Request::DelDaemon(DaemonState::Backup))
            .await
            .expect("stop backup");
        assert!(c.daemons().await.expect("daemons").is_empty());
    });
}

#[test]
fn zero_and_flush() {
    in_netns(|mut c| async move {
        sh("/sbin/ip", &["addr", "add", "10.9.9.9/32", "dev", "lo"]);
        let a = ServiceKey::tcp(v4(10, 9, 9, 9), 80);
        let b = ServiceKey::tcp(v4(10, 9, 9, 9), 81);
        let mut reqs = vec![];
        for k in [a, b] {
            reqs.push(Request::NewService(k, ServiceSpec::new("rr", Family::Inet)));
            reqs.push(Request::NewDest(
                k,
                DestKey {
                    addr: v4(10, 0, 1, 1),
                    port: 80,
                },
                DestSpec::new(ForwardMethod::Masq, 1),
            ));
        }
        ok_all(c.execute(&reqs).await);
        for port in [80, 81] {
            let addr = std::net::SocketAddr::new(v4(10, 9, 9, 9), port);
            let _ =
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(300));
        }
        let conns = |d: &[(Service, Vec<Dest>)], k: ServiceKey| {
            d.iter()
                .find(|(s, _)| s.key == k)
                .map(|(s, _)| s.stats.conns)
                .unwrap_or(0)
        };
        let d = dump_when(&mut c, |d| conns(d, a) >= 1 && conns(d, b) >= 1).await;
        assert!(conns(&d, a) >= 1 && conns(&d, b) >= 1, "{d:?}");
        c.apply(Request::Zero(Some(a))).await.expect("zero one");
        let d = c.dump().await.expect("dump");
        assert_eq!(conns(&d, a), 0);
        assert!(conns(&d, b) >= 1, "zeroing one service left the other");
        c.apply(Request::Zero(None)).await.expect("zero all");
        let d = c.dump().await.expect("dump");
        assert_eq!(conns(&d, b), 0);
        c.apply(Request::Flush).await.expect("flush");
        assert!(c.services().await.expect("services").is_empty());
        assert!(sh("ipvsadm", &["-Sn"]).trim().is_empty());
    });
}

#[test]
fn a_ten_thousand_operation_batch_then_a_full_dump() {
    in_netns(|mut c| async move {
        let mut reqs = Vec::with_capacity(10_000);
        for s in 0..1000u32 {
            let k = ServiceKey::tcp(v4(10, 1, (s / 250) as u8, (s % 250) as u8 + 1), 80);
            reqs.push(Request::NewService(
                k,
                ServiceSpec::new("wlc", Family::Inet),
            ));
            for r in 0..9u8 {
                reqs.push(Request::NewDest(
                    k,
                    DestKey {
                        addr: v4(10, 2, r, (s % 250) as u8 + 1),
                        port: 8000 + (s / 250) as u16,
                    },
                    DestSpec::new(ForwardMethod::DirectRoute, 1 + r as u32),
                ));
            }
        }
        assert_eq!(reqs.len(), 10_000);
        let writes_before = c.writes();
        ok_all(c.execute(&reqs).await);
        assert_eq!(c.writes() - writes_before, 10_000);
        let dump = c.dump().await.expect("dump");
        assert_eq!(dump.len(), 1000);
        assert!(dump.iter().all(|(_, d)| d.len() == 9));
        let saved = sh("ipvsadm", &["-Sn"]);
        assert_eq!(saved.lines().count(), 10_000);
        assert_eq!(
            comparable(&rules_of(&dump)),
            comparable(&parse_rules(&saved).expect("parses"))
        );
    });
}

/// A long dump gives the runtime its turn as it goes: the kernel fills each read of a dump as
/// it is made, so without that the listing of a large table ran in one poll, and a caller
/// racing it against something else (the daemon's look for a waiting edit) was not polled
/// until it ended (edits of 1.9-4.0 s at 100,000 services in the test VM).
#[test]
fn a_long_dump_lets_the_tasks_beside_it_run() {
    in_netns(|mut c| async move {
        let reqs: Vec<Request> = (0..5000u32)
            .map(|s| {
                Request::NewService(
                    ServiceKey::tcp(
                        v4(
                            10,
                            1 + (s / 250 / 250) as u8,
                            (s / 250 % 250) as u8,
                            (s % 250) as u8 + 1,
                        ),
                        80,
                    ),
                    ServiceSpec::new("wlc", Family::Inet),
                )
            })
            .collect();
        ok_all(c.execute(&reqs).await);
        let turns = std::cell::Cell::new(0u32);
        let beside = async {
            loop {
                turns.set(turns.get() + 1);
                tokio::task::yield_now().await;
            }
        };
        let listed = tokio::select! {
            biased;
            r = c.services() => r.expect("services"),
            () = beside => unreachable!(),
        };
        assert_eq!(listed.len(), 5000);
        assert!(
            turns.get() >= 3,
            "the task beside the dump ran {} times while it was read",
            turns.get()
        );
    });
}

/// Runs in the VM before the ip_vs module is loaded (tests/run.sh, `pre-ipvs` phase).
mod pre_ipvs {
    use super::*;

    #[test]
    fn connect_without_the_module_says_modprobe() {
        let modules = std::fs::read_to_string("/proc/modules").expect("/proc/modules");
        assert!(
            !modules.lines().any(|l| l.starts_with("ip_vs ")),
            "this test must run before ip_vs is loaded"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let err = rt
            .block_on(Client::connect())
            .expect_err("no IPVS family without the module");
        assert!(matches!(err, Error::ModuleNotLoaded), "{err:?}");
        assert!(err.to_string().contains("modprobe ip_vs"), "{err}");
    }
}

/// The table read again: services whose reals read back as before are not decoded again, a
/// change of a setting is, small tables (one socket) and large ones (worker threads) alike.
#[test]
fn a_reread_decodes_only_what_changed() {
    in_netns(|mut c| async move {
        for n in [3u16, 600] {
            let mut reqs = vec![];
            let keys: Vec<ServiceKey> = (0..n)
                .map(|i| {
                    ServiceKey::tcp(
                        v4(10, 7, (i / 250) as u8, (i % 250 + 1) as u8),
                        80 + (n % 7),
                    )
                })
                .collect();
            for k in &keys {
                reqs.push(Request::NewService(
                    *k,
                    ServiceSpec::new("rr", Family::Inet),
                ));
                for r in 1..=2u8 {
                    reqs.push(Request::NewDest(
                        *k,
                        DestKey {
                            addr: v4(127, 0, 0, r),
                            port: 80 + (n % 7),
                        },
                        DestSpec::new(ForwardMethod::DirectRoute, 1),
                    ));
                }
            }
            ok_all(c.execute(&reqs).await);
            let first: Vec<(ServiceKey, Option<u64>)> = keys.iter().map(|k| (*k, None)).collect();
            let read = c.dests_if_changed(&first, |d| d.len()).await.unwrap();
            assert!(
                read.iter().all(|(_, d)| *d == Some(2)),
                "n={n}: all decoded the first time"
            );
            let again: Vec<(ServiceKey, Option<u64>)> = keys
                .iter()
                .zip(&read)
                .map(|(k, (h, _))| (*k, Some(*h)))
                .collect();
            let same = c.dests_if_changed(&again, |d| d.len()).await.unwrap();
            assert!(
                same.iter().all(|(_, d)| d.is_none()),
                "n={n}: nothing changed, nothing decoded"
            );
            // One weight changes: that service, and only it, is decoded.
            let mut spec = DestSpec::new(ForwardMethod::DirectRoute, 5);
            spec.weight = 5;
            ok_all(
                c.execute(&[Request::SetDest(
                    keys[1],
                    DestKey {
                        addr: v4(127, 0, 0, 1),
                        port: 80 + (n % 7),
                    },
                    spec,
                )])
                .await,
            );
            let after = c.dests_if_changed(&again, |d| d.len()).await.unwrap();
            let decoded: Vec<usize> = after
                .iter()
                .enumerate()
                .filter(|(_, (_, d))| d.is_some())
                .map(|(i, _)| i)
                .collect();
            assert_eq!(decoded, vec![1], "n={n}");
        }
    });
}
