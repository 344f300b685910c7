//! The seed's `ipvsadm` steps, through the ipvs crate: `-A -t 172.16.1.50:80 -s wlc`, then
//! `-a ... -r 172.16.1.101 -g` and `-r 172.16.1.102 -g`, in one batch. Run in the director's
//! network namespace by tests/demo.sh. Also shows the seed's mistake, `-s dr`, and what the
//! kernel (through this crate) says about it.

use std::net::{IpAddr, Ipv4Addr};

use ipvs::*;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut ipvs = Client::connect().await?;
    let vip = ServiceKey::tcp(IpAddr::V4(Ipv4Addr::new(172, 16, 1, 50)), 80);

    let mistake = ipvs
        .apply(Request::NewService(
            vip,
            ServiceSpec::new("dr", Family::Inet),
        ))
        .await;
    if let Err(e) = mistake {
        println!("the seed's mistake, -s dr: {e}");
    }

    let real = |last| DestKey {
        addr: IpAddr::V4(Ipv4Addr::new(172, 16, 1, last)),
        port: 80,
    };
    let results = ipvs
        .execute(&[
            Request::NewService(vip, ServiceSpec::new("wlc", Family::Inet)),
            Request::NewDest(vip, real(101), DestSpec::new(ForwardMethod::DirectRoute, 1)),
            Request::NewDest(vip, real(102), DestSpec::new(ForwardMethod::DirectRoute, 1)),
        ])
        .await;
    for r in results {
        r?;
    }
    println!(
        "programmed {vip} -> 172.16.1.101:80, 172.16.1.102:80 (wlc, direct routing), one batch"
    );
    Ok(())
}
