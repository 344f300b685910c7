//! Test tool: plays systemd's side of the notify protocol. Binds a datagram socket at PATH
//! (mode 0666, so an unprivileged daemon can write to it) and prints every message it receives,
//! one line per field, for SECONDS. Used by the VM tests to see READY=1 arrive.
//!
//! Usage: notify-receiver PATH SECONDS

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(secs)) = (args.next(), args.next()) else {
        eprintln!("usage: notify-receiver PATH SECONDS");
        std::process::exit(2);
    };
    let secs: u64 = secs.parse().unwrap_or(10);
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut buf = vec![0u8; 4096];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                for line in String::from_utf8_lossy(&buf[..n]).lines() {
                    println!("{line}");
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
