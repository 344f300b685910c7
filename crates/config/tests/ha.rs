//! `ha` and `ipvs`, case by case: what a director pair and active/active directors declare,
//! read into the host's spec and the table-wide settings; what the kernel would refuse, refused
//! with its location and the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plan::globals::{SyncSpec, TimeoutsSpec};
use plan::host::{Announce, HaMode, Role};

fn problems(yaml: &str) -> Vec<String> {
    match config::parse(yaml, "t.yaml") {
        Ok(_) => vec![],
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

fn assert_rejects(yaml: &str, expected: &str) {
    let got = problems(yaml);
    assert!(
        got.iter().any(|l| l.starts_with(expected)),
        "expected a problem starting with\n  {expected}\ngot\n  {got:#?}"
    );
}

const SERVICE: &str = "services:
  - address: 172.16.1.50:80
    reals:
      - address: 172.16.1.101
";

fn with(head: &str) -> String {
    format!("host: {{role: director, interface: eth0}}\n{head}{SERVICE}")
}

#[test]
fn a_pair_reads_into_the_host_spec_and_the_table_wide_settings() {
    let c = config::parse(
        &with(
            "ha:
  mode: active-backup
  health_file: /run/lvsd/ha-health
  sync: {interface: eth1, id: 51, group: 224.0.0.90, port: 8850, ttl: 2, max_len: 1400}
ipvs:
  timeouts: {tcp: 15m, tcp_fin: 120s, udp: 300}
  sysctl:
    expire_nodest_conn: 1
    sync_threshold: \"3   50\"
",
        ),
        "t.yaml",
    )
    .unwrap();
    assert_eq!(c.host.ha, HaMode::ActiveBackup);
    assert_eq!(
        c.health_file.as_deref(),
        Some(std::path::Path::new("/run/lvsd/ha-health"))
    );
    assert_eq!(
        c.globals.sync,
        Some(SyncSpec {
            interface: "eth1".into(),
            id: 51,
            group: Some("224.0.0.90".parse().unwrap()),
            port: Some(8850),
            ttl: Some(2),
            max_len: Some(1400),
        })
    );
    assert_eq!(
        c.globals.timeouts,
        TimeoutsSpec {
            tcp: Some(900),
            tcp_fin: Some(120),
            udp: Some(300),
        }
    );
    assert_eq!(c.host.ipvs_sysctls["expire_nodest_conn"], "1");
    // Written as the kernel takes it.
    assert_eq!(c.host.ipvs_sysctls["sync_threshold"], "3 50");
}

#[test]
fn active_active_reads_its_device_and_announce_rule() {
    let c = config::parse(
        &with("ha:\n  mode: active-active\n  announce_device: lvsd0\n  announce: all\n"),
        "t.yaml",
    )
    .unwrap();
    assert_eq!(
        c.host.ha,
        HaMode::ActiveActive {
            device: "lvsd0".into(),
            announce: Announce::All
        }
    );
    let c = config::parse(
        &with("ha: {mode: active-active, announce_device: lvsd0}\n"),
        "t.yaml",
    )
    .unwrap();
    assert!(matches!(
        c.host.ha,
        HaMode::ActiveActive {
            announce: Announce::Any,
            ..
        }
    ));
}

#[test]
fn one_file_serves_the_real_servers_too() {
    let text = with("ha:\n  mode: active-backup\n  sync: {interface: eth0, id: 51}\n");
    let c = config::parse_as(&text, "t.yaml", Some(Role::RealServer)).unwrap();
    assert_eq!(c.host.role, Role::RealServer);
}

#[test]
fn what_the_kernel_would_refuse_is_refused_with_the_reason() {
    let cases: &[(&str, &str)] = &[
        ("ha: {health_file: /x}\n", "t.yaml:2:5: ha needs `mode`"),
        (
            "ha: {mode: active-pasive}\n",
            "t.yaml:2:12: unknown ha.mode `active-pasive`; did you mean `active-backup`?",
        ),
        (
            "ha: {mode: active-backup, health_file: run/health}\n",
            "t.yaml:2:40: ha.health_file `run/health` must be the absolute path of a file",
        ),
        (
            "ha: {mode: active-backup, sync: {id: 5}}\n",
            "t.yaml:2:33: ha.sync needs `interface`",
        ),
        (
            "ha: {mode: active-backup, sync: {interface: eth0}}\n",
            "t.yaml:2:33: ha.sync needs `id` (0 to 255)",
        ),
        (
            "ha: {mode: active-backup, sync: {interface: eth0, id: 256}}\n",
            "t.yaml:2:55: ha.sync.id 256 is out of range: 0 to 255",
        ),
        (
            "ha: {mode: active-backup, sync: {interface: eth0, id: \"5\"}}\n",
            "t.yaml:2:55: `ha.sync.id: \"5\"` is quoted",
        ),
        (
            "ha: {mode: active-backup, sync: {interface: eth0, id: 5, group: 10.0.0.1}}\n",
            "t.yaml:2:65: ha.sync.group `10.0.0.1` is not a multicast address",
        ),
        (
            "ha: {mode: active-backup, sync: {interface: eth0, id: 5, ttl: 0}}\n",
            "t.yaml:2:63: ha.sync.ttl 0 is out of range: 1 to 255",
        ),
        (
            "ha: {mode: active-backup, announce_device: lvsd0}\n",
            "t.yaml:2:44: ha.announce_device goes with `mode: active-active`",
        ),
        (
            "ha: {mode: active-active}\n",
            "t.yaml:2:5: active-active needs `announce_device`",
        ),
        (
            "ha: {mode: active-active, announce_device: eth0}\n",
            "t.yaml:2:44: ha.announce_device `eth0` must be a device of its own",
        ),
        (
            "ha: {mode: active-active, announce_device: lvsd0, announce: most}\n",
            "t.yaml:2:61: ha.announce is `any`",
        ),
        (
            "ipvs: {timeouts: {tcp: 0s}}\n",
            "t.yaml:2:24: ipvs.timeouts.tcp must be from 1s",
        ),
        (
            "ipvs: {timeouts: {udp: 1500ms}}\n",
            "t.yaml:2:24: ipvs.timeouts.udp: `1500ms` is not a whole number of seconds",
        ),
        (
            "ipvs: {timeouts: {tcp_fin: 10y}}\n",
            "t.yaml:2:28: ipvs.timeouts.tcp_fin: `10y` is not a duration",
        ),
        (
            "ipvs:\n  sysctl:\n    expire_nodest_con: 1\n",
            "t.yaml:4:24: unknown IPVS sysctl `expire_nodest_con` (net.ipv4.vs.expire_nodest_con); did you mean `expire_nodest_conn`?",
        ),
        (
            "ipvs:\n  sysctl:\n    sloppy_tcp: 2\n",
            "t.yaml:4:17: ipvs.sysctl.sloppy_tcp is 0 or 1, not 2",
        ),
        (
            "ipvs:\n  sysctl:\n    secure_tcp: 4\n",
            "t.yaml:4:17: ipvs.sysctl.secure_tcp 4 is out of range: 0 to 3",
        ),
        (
            "ipvs:\n  sysctl:\n    sync_ports: 6\n",
            "t.yaml:4:17: ipvs.sysctl.sync_ports is a power of two from 1 to 64",
        ),
        (
            "ipvs:\n  sysctl:\n    sync_threshold: \"50 3\"\n",
            "t.yaml:4:21: ipvs.sysctl.sync_threshold: the first number (50) must be below the second (3)",
        ),
        (
            "ipvs:\n  sysctl:\n    sync_threshold: 3\n",
            "t.yaml:4:21: ipvs.sysctl.sync_threshold is two whole numbers in quotes",
        ),
        (
            "ipvs:\n  sysctl:\n    expire_nodest_conn: \"1\"\n",
            "t.yaml:4:25: `ipvs.sysctl.expire_nodest_conn: \"1\"` is quoted",
        ),
        (
            "ipvs:\n  sysctl:\n    expire_nodest_conn:\n",
            "t.yaml:4:23: `ipvs.sysctl.expire_nodest_conn` is empty (null)",
        ),
        (
            "ha: {mode: active-active, announce_device: lvsd0}\nipvs: {sysctl: {sloppy_tcp: 0}}\n",
            "t.yaml:2:12: active-active needs ipvs.sysctl.sloppy_tcp: 1",
        ),
    ];
    let mut wrong = vec![];
    for (head, expected) in cases {
        let got = problems(&with(head));
        if !got.iter().any(|l| l.starts_with(expected)) {
            wrong.push(format!("{head}  expected: {expected}\n  got: {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_mode_is_for_directors() {
    assert_rejects(
        &format!("host: {{role: none}}\nha: {{mode: active-backup}}\n{SERVICE}"),
        "t.yaml:2:12: ha.mode active-backup is for directors",
    );
}

#[test]
fn sync_refuses_reals_of_the_other_family() {
    let tunnel = "host: {role: director, interface: eth0}
ha: {mode: active-backup, sync: {interface: eth0, id: 5}}
services:
  - address: \"[2001:db8::1]:80\"
    forward: tunnel
    reals:
      - address: 172.16.1.101
";
    assert_rejects(
        tunnel,
        "t.yaml:4:5: real server 172.16.1.101:80 of TCP [2001:db8::1]:80 is of the other address family: the kernel refuses connection sync (ha.sync)",
    );
    // Without sync the kernel takes it.
    assert!(problems(&tunnel.replace(", sync: {interface: eth0, id: 5}", "")).is_empty());
}

#[test]
fn active_active_refuses_what_would_reorder_an_mh_service() {
    let mh = "host: {role: director, interface: eth0}
ha: {mode: active-active, announce_device: lvsd0}
services:
  - address: 10.99.0.50:80
    scheduler: mh
    flags: [mh-port]
    check: {type: tcp}
    on_failure: remove
    reals:
      - address: 172.16.1.101
";
    assert_rejects(
        mh,
        "t.yaml:4:5: service TCP 10.99.0.50:80: `on_failure: remove` with the mh scheduler would reorder its real servers",
    );
    assert!(problems(&mh.replace("on_failure: remove", "on_failure: drain")).is_empty());
    // The same service without active-active is fine: one director has one order.
    assert!(
        problems(&mh.replace("ha: {mode: active-active, announce_device: lvsd0}\n", "")).is_empty()
    );
    assert_rejects(
        &mh.replace(
            "host: {role: director, interface: eth0}",
            "host: {role: director, interface: eth0, vips: [10.99.0.50]}",
        ),
        "t.yaml:2:12: with active-active the announced VIPs are the services' addresses",
    );
}
