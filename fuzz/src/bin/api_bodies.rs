//! AFL++ target: see `coffer_wire::fuzz::bodies`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        coffer_wire::fuzz::bodies(data);
    });
}
