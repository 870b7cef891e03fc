//! AFL++ target: see `coffer_nbd::fuzz::session`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        coffer_nbd::fuzz::session(data);
    });
}
