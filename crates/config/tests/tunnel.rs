//! GUE and GRE tunnels: `forward: tunnel` with `tunnel: {type, port, flags}` on a service (for
//! its tunnel reals and fallback) or a real, checked like everything else and written back by
//! export so that export → apply → export is the same table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

fn rules(yaml: &str) -> String {
    let c = config::parse(yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    model::save::format_rules(&c.desired.to_rules())
}

fn problems(yaml: &str) -> String {
    match config::parse(yaml, "t.yaml") {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn gue_and_gre_reach_the_table_as_ipvsadm_writes_them() {
    let yaml = "services:
  - address: 10.0.0.1:80
    forward: tunnel
    tunnel: {type: gue, port: 6080, flags: [csum]}
    fallback: 10.0.1.9
    reals:
      - address: 10.0.1.1
      - address: 10.0.1.2
        tunnel: {type: gre}
      - address: 10.0.1.3
        tunnel: {type: gue, port: 6081, flags: [remcsum]}
      - address: 10.0.1.4
        tunnel: {type: ipip}
";
    assert_eq!(
        rules(yaml),
        "-A -t 10.0.0.1:80 -s wlc
-a -t 10.0.0.1:80 -r 10.0.1.1:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum
-a -t 10.0.0.1:80 -r 10.0.1.2:80 -i -w 1 --tun-type gre
-a -t 10.0.0.1:80 -r 10.0.1.3:80 -i -w 1 --tun-type gue --tun-port 6081 --tun-remcsum
-a -t 10.0.0.1:80 -r 10.0.1.4:80 -i -w 1
"
    );
    let c = config::parse(yaml, "t.yaml").unwrap();
    let svc = c.desired.services.values().next().unwrap();
    let (_, fb) = svc.health.fallback.unwrap();
    assert_eq!(
        fb.tunnel_type,
        model::TunnelType::Gue,
        "the fallback takes the service's tunnel"
    );
    assert_eq!(fb.tunnel_port, 6080);
}

#[test]
fn export_writes_the_tunnel_and_reads_back_the_same_table() {
    let yaml = "services:
  - address: 10.0.0.1:80
    forward: tunnel
    reals:
      - address: 10.0.1.1
        tunnel: {type: gue, port: 6080, flags: [csum]}
      - address: 10.0.1.2
        tunnel: {type: gre, flags: [csum]}
      - address: \"[2001:db8::7]\"
        tunnel:
          type: gue
          port: 5555
      - address: 10.0.1.3
";
    let c = config::parse(yaml, "t.yaml").unwrap();
    let exported = config::export::to_yaml(&c.desired.to_rules(), "t");
    assert!(
        exported.contains("tunnel: {type: gue, port: 6080, flags: [csum]}"),
        "{exported}"
    );
    assert!(
        exported.contains("tunnel: {type: gre, flags: [csum]}"),
        "{exported}"
    );
    assert!(!exported.contains("not expressible"), "{exported}");
    let again =
        config::parse(&exported, "exported.yaml").unwrap_or_else(|e| panic!("{e}\n{exported}"));
    assert_eq!(again.desired, c.desired);
    // And through ipvsadm -Sn rules, as `lvsd import` reads them.
    let saved = model::save::format_rules(&c.desired.to_rules());
    let parsed = model::save::parse_rules(&saved).unwrap();
    let observed = plan::Observed::from_rules(&parsed);
    let imported = config::export::to_yaml(&observed.to_rules(), "i");
    assert_eq!(
        config::parse(&imported, "i.yaml").unwrap().desired,
        c.desired
    );
}

#[test]
fn wrong_tunnel_settings_are_named_with_the_fix() {
    let base = |svc: &str, real: &str| {
        format!(
            "services:\n  - address: 10.0.0.1:80\n{svc}    reals:\n      - address: 10.0.1.1\n{real}"
        )
    };
    let p = problems(&base("    tunnel: {type: gue, port: 6080}\n", ""));
    assert!(
        p.starts_with("t.yaml:3:13: `tunnel` settings are for `forward: tunnel`"),
        "{p}"
    );
    let p = problems(&base("    forward: tunnel\n    tunnel: {type: gue}\n", ""));
    assert!(p.contains("t.yaml:4:13: a GUE tunnel needs `port`"), "{p}");
    let p = problems(&base(
        "    forward: tunnel\n    tunnel: {type: gre, port: 1}\n",
        "",
    ));
    assert!(
        p.contains("t.yaml:4:31: only a GUE tunnel has a port"),
        "{p}"
    );
    let p = problems(&base(
        "    forward: tunnel\n    tunnel: {type: vxlan}\n",
        "",
    ));
    assert!(
        p.contains("unknown tunnel type `vxlan`: use ipip (the default), gue or gre"),
        "{p}"
    );
    let p = problems(&base(
        "    forward: tunnel\n    tunnel: {type: gre, flags: [remcsum]}\n",
        "",
    ));
    assert!(
        p.contains("a GRE tunnel has no remote checksum offload"),
        "{p}"
    );
    let p = problems(&base(
        "    forward: tunnel\n    tunnel: {type: gue, port: 6080, flags: [csum, remcsum]}\n",
        "",
    ));
    assert!(p.contains("give one of `csum` and `remcsum`"), "{p}");
    let p = problems(&base(
        "    forward: tunnel\n    tunnel: {type: gue, port: 6080, flags: [cusm]}\n",
        "",
    ));
    assert!(p.contains("did you mean `csum`?"), "{p}");
    let p = problems(&base(
        "    forward: tunnel\n    tunnel: {type: gue, port: 70000}\n",
        "",
    ));
    assert!(p.contains("tunnel port 70000 is out of range"), "{p}");
    // On a real whose forwarding is not tunnel.
    let p = problems(&base("", "        tunnel: {type: gre}\n"));
    assert!(p.contains("this real's forwarding is `dr`"), "{p}");
    let p = problems(&base("    forward: tunnel\n    tunnel: {typ: gre}\n", ""));
    assert!(p.contains("unknown key `typ`; did you mean `type`?"), "{p}");
}
