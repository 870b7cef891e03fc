//! AFL++ target: see `coffer_crypto::fuzz::open`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        coffer_crypto::fuzz::open(data);
    });
}
