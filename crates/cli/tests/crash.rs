//! Durability: a write acknowledged by a flush survives `kill -9` of the
//! server, again and again, at pseudo-random points while other (unflushed)
//! writes are in flight.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const BLOCK: u64 = 64 * 1024;

fn export_of(uri: &str) -> String {
    uri.rsplit('/').next().unwrap().to_string()
}

#[test]
fn flushed_writes_survive_kill_9_twenty_times() {
    require("qemu-io", "qemu-utils");
    let mut s = Server::start();
    let disk = s.create_disk("durable", "64MiB", "local-a");
    let export = export_of(&s.attach(&disk));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let rounds = 20u64;
    for round in 0..rounds {
        let uri = format!("nbd://{}/{export}", s.nbd);
        // The acknowledged write: block `round` at its own offset, pattern round+1.
        let off = round * 2 * BLOCK;
        run(Command::new("qemu-io").args([
            "-f",
            "raw",
            "-c",
            &format!("write -P {} {off} {BLOCK}", round + 1),
            "-c",
            "flush",
            &uri,
        ]));
        // Unflushed noise elsewhere (odd blocks), killed mid-way.
        let mut noise = vec!["-f".to_string(), "raw".to_string()];
        for k in 0..200u64 {
            noise.push("-c".into());
            noise.push(format!(
                "write -P 0xee {} {BLOCK}",
                (2 * ((rand() + k) % 256) + 1) * BLOCK
            ));
        }
        noise.push(uri.clone());
        let mut bg = Command::new("qemu-io")
            .args(&noise)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rand() % 300));
        s.kill9();
        let _ = bg.kill();
        let _ = bg.wait();
        s.launch(&[]);

        let shown = s.cli(&["disk", "show", &disk]);
        assert_eq!(
            shown["size_bytes"],
            64 << 20,
            "disk metadata after restart {round}"
        );
        assert_eq!(
            shown["state"], "attached",
            "the attachment survives a restart"
        );
        let uri = format!("nbd://{}/{export}", s.nbd);
        let mut check = vec!["-f".to_string(), "raw".to_string()];
        for r in 0..=round {
            check.push("-c".into());
            check.push(format!("read -P {} {} {BLOCK}", r + 1, r * 2 * BLOCK));
        }
        check.push(uri);
        let out = run(Command::new("qemu-io").args(&check));
        assert!(
            !out.contains("Pattern verification failed"),
            "round {round}: a flushed write was lost:\n{out}"
        );
        assert_eq!(
            out.matches("read 65536/65536 bytes").count() as u64,
            round + 1,
            "round {round}:\n{out}"
        );
    }
    println!("{rounds} kill -9 rounds: every flushed write present");
}
