use ipvs::*;
use std::net::{IpAddr, Ipv4Addr};
fn main() {
    let mut reqs = vec![];
    for s in 0..1000u32 {
        let k = ServiceKey::tcp(IpAddr::V4(Ipv4Addr::from(0x0a000000 + s)), 80);
        reqs.push(Request::NewService(
            k,
            ServiceSpec::new("wlc", Family::Inet),
        ));
        for r in 0..10u32 {
            reqs.push(Request::NewDest(
                k,
                DestKey {
                    addr: IpAddr::V4(Ipv4Addr::from(0x0b000000 + r * 65536 + s)),
                    port: 8080,
                },
                DestSpec::new(ForwardMethod::DirectRoute, 1),
            ));
        }
    }
    let t = std::time::Instant::now();
    let mut n = 0;
    for r in &reqs {
        n += encode_request(r, 32, 1, 1).len();
    }
    println!("encode {} msgs {} bytes: {:?}", reqs.len(), n, t.elapsed());
    // decode: a dest reply from the fixtures, 11000 times
    let text = std::fs::read_to_string("crates/ipvs/tests/fixtures/list.txt").unwrap();
    let msgs: Vec<Vec<u8>> = text
        .lines()
        .filter_map(|l| l.strip_prefix("reply "))
        .map(|h| {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect()
        })
        .filter(|m: &Vec<u8>| m.len() > 100)
        .collect();
    let t = std::time::Instant::now();
    let mut k = 0;
    for i in 0..11000 {
        let m = ipvs::decode_message(&msgs[i % msgs.len()]).unwrap();
        k += m.attrs.len();
    }
    println!("decode 11000 msgs: {:?} ({k})", t.elapsed());
}
