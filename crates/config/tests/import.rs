//! Migration from keepalived and ldirectord: configs written the way their documentation
//! writes them (includes, comments, odd indentation) convert to lvsd YAML that passes lvsd's
//! reader and describes the table keepalived (or ldirectord) would build; what has no
//! equivalent is a comment at its place and a line of the summary. The VM scenario
//! (tests/e2e/import.sh) compares the tables with keepalived's own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

fn fixture(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}

mod common;

use common::table;

#[test]
fn keepalived_virtual_servers_become_the_table_keepalived_builds() {
    let path = fixture("keepalived/keepalived.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    let out = config::import::keepalived(&text, &path).unwrap();
    let mut want: Vec<&str> = vec![
        "-A -t 172.16.1.50:80 -s wrr",
        "-a -t 172.16.1.50:80 -r 172.16.1.101:80 -g -w 3",
        "-a -t 172.16.1.50:80 -r 172.16.1.102:80 -g -w 1 -x 100 -y 10",
        "-A -t 172.16.1.50:443 -s sh -p 360 -M 255.255.255.0 -b sh-port",
        "-a -t 172.16.1.50:443 -r 172.16.1.101:8443 -m -w 1",
        "-a -t 172.16.1.50:443 -r 172.16.1.102:8443 -m -w 1",
        "-A -u 172.16.1.60:53 -s rr -o",
        "-a -u 172.16.1.60:53 -r 172.16.1.101:53 -g -w 1",
        "-A -u 172.16.1.61:53 -s rr -o",
        "-a -u 172.16.1.61:53 -r 172.16.1.101:53 -g -w 1",
        "-A -f 7 -s rr -o",
        "-a -f 7 -r 172.16.1.101:0 -g -w 1",
        "-A -t [2001:db8::50]:80 -s rr",
        "-a -t [2001:db8::50]:80 -r [2001:db8::101]:80 -i -w 2 --tun-type gue --tun-port 6080 --tun-csum",
        "-A -u 172.16.1.70:9000 -s wlc",
        "-a -u 172.16.1.70:9000 -r 172.16.1.101:9000 -g -w 1",
    ];
    want.sort();
    assert_eq!(table(&out.yaml), want, "{}", out.yaml);
    // Nothing dropped silently: each unconverted setting is a comment and a summary line.
    for (what, line) in [
        ("delay_before_retry", "keepalived.conf:38"),
        ("digest", "more.conf:16"),
        ("misc_dynamic", "more.conf:40"),
        ("has no real servers", "more.conf:60"),
    ] {
        assert!(
            out.summary
                .iter()
                .any(|s| s.contains(what) && s.contains(line)),
            "{what} at {line} not in {:#?}",
            out.summary
        );
        assert!(out.yaml.contains(line), "{what}: no comment at {line}");
    }
    assert!(
        out.summary
            .iter()
            .any(|s| s.contains("vrrp_instance VI_1") && s.contains("left to keepalived"))
    );
    // The checks as keepalived runs them: delay_loop, connect_timeout, retry + 1, a status
    // range, initial state up (no alpha), a real's checker port.
    let c = config::parse(&out.yaml, "c.yaml").unwrap();
    let web = &c.desired.services[&model::ServiceKey::tcp("172.16.1.50".parse().unwrap(), 80)];
    let real = model::DestKey {
        addr: "172.16.1.102".parse().unwrap(),
        port: 80,
    };
    let chk = web.health.checks.get(&real).unwrap();
    assert_eq!(chk.port, Some(8080));
    assert_eq!(chk.interval, std::time::Duration::from_secs(2));
    assert_eq!(chk.timeout, std::time::Duration::from_secs(2));
    assert_eq!((chk.rise, chk.fall, chk.initial_up), (1, 3, true));
    let https = &c.desired.services[&model::ServiceKey::tcp("172.16.1.50".parse().unwrap(), 443)];
    assert_eq!(https.health.quorum, Some(2));
    assert!(https.health.fallback.is_some());
}

#[test]
fn keepalived_errors_name_the_file_and_line() {
    let e = config::import::keepalived(
        "virtual_server 10.0.0.1 80 {\n  lb_algo loadbalance\n  real_server 10.0.0.2 80 {\n  }\n}\n",
        Path::new("k.conf"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("k.conf:2:3: `loadbalance` is not a scheduler the kernel has"),
        "{e}"
    );
    let e = config::import::keepalived("virtual_server 10.0.0.1 80 {\n", Path::new("k.conf"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("the file ends inside a block"), "{e}");
    let e = config::import::keepalived("include missing.conf\n", Path::new("k.conf"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("k.conf:1:9: included file `./missing.conf` does not exist"),
        "{e}"
    );
}

#[test]
fn keepalived_variables_and_one_line_blocks_are_read() {
    let text = "$VIP=10.0.0.1\nvirtual_server $VIP 80 { lb_kind DR\n protocol TCP\n real_server 10.0.1.1 80 { weight 4 } }\n";
    let out = config::import::keepalived(text, Path::new("k.conf")).unwrap();
    assert_eq!(
        table(&out.yaml),
        vec![
            "-A -t 10.0.0.1:80 -s wlc",
            "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 4"
        ]
    );
}

#[test]
fn ldirectord_virtuals_become_the_table_ldirectord_builds() {
    let path = fixture("ldirectord/ldirectord.cf");
    let text = std::fs::read_to_string(&path).unwrap();
    let out = config::import::ldirectord(&text, &path).unwrap();
    let mut want = vec![
        "-A -t 172.16.1.50:80 -s rr",
        "-a -t 172.16.1.50:80 -r 172.16.1.101:80 -g -w 1",
        "-a -t 172.16.1.50:80 -r 172.16.1.102:80 -g -w 2",
        "-A -t 172.16.1.51:8080 -s wrr -p 600 -M 255.255.255.0",
        "-a -t 172.16.1.51:8080 -r 172.16.1.101:80 -m -w 3",
        "-a -t 172.16.1.51:8080 -r 172.16.1.102:80 -m -w 3",
        "-A -f 7 -s wrr",
        "-a -f 7 -r 172.16.1.101:0 -i -w 1",
    ];
    want.sort();
    // ldirectord adds a real only once its check passed; lvsd's `initial: down` does the
    // same. The table once every check passed:
    let up = out.yaml.replace("initial: down", "initial: up");
    assert_eq!(table(&up), want, "{}", out.yaml);
    let c = config::parse(&out.yaml, "c.yaml").unwrap();
    let web = &c.desired.services[&model::ServiceKey::tcp("172.16.1.50".parse().unwrap(), 80)];
    let chk = web.health.checks.values().next().unwrap();
    match &chk.kind {
        plan::health::CheckKind::Http {
            path, expect_body, ..
        } => {
            assert_eq!(path, "/index.html");
            assert_eq!(expect_body.as_deref(), Some("this is"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        web.health.on_failure,
        plan::health::OnFailure::Drain,
        "quiescent=yes"
    );
    assert!(out.summary.iter().any(|s| s.contains("autoreload")));
}
