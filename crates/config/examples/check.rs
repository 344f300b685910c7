//! Validates the files given on the command line and prints the result (development aid).
fn main() {
    for p in std::env::args().skip(1) {
        match config::load(std::path::Path::new(&p)) {
            Ok(c) => println!("{p}: ok, {} services", c.desired.services.len()),
            Err(e) => println!("{e}"),
        }
    }
}
