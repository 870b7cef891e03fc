//! The NBD server against a byte-level client written here from the
//! protocol text, and against real clients (nbdinfo, nbdcopy, qemu-io), over
//! an in-memory device. Every test checks what the protocol requires: the
//! handshake's replies, the error code of each bad request, that the stream
//! stays in step after one, out-of-order replies, flush ordering, and that
//! data survives bad input unharmed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use coffer_nbd::{BlockDevice, DeviceError, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

use common::*;

/// A device in memory that logs what it does and can be made slow or broken.
#[derive(Default)]
struct MemDevice {
    data: Mutex<Vec<u8>>,
    read_only: bool,
    /// Reads starting at this offset sleep this long first.
    slow_read_at: Option<(u64, Duration)>,
    /// Every write sleeps this long before it applies.
    slow_writes: Option<Duration>,
    /// Reads fail with `Shutdown` (the export was revoked).
    revoked: bool,
    log: Mutex<Vec<String>>,
}

impl MemDevice {
    fn new(size: usize) -> Self {
        Self {
            data: Mutex::new(vec![0; size]),
            ..Self::default()
        }
    }

    fn note(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }

    fn snapshot(&self) -> Vec<u8> {
        self.data.lock().unwrap().clone()
    }

    fn fill(&self, offset: u64, len: u32, byte: u8) {
        let o = usize::try_from(offset).unwrap();
        let l = usize::try_from(len).unwrap();
        self.data.lock().unwrap()[o..o + l].fill(byte);
    }
}

#[async_trait]
impl BlockDevice for MemDevice {
    fn size(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, DeviceError> {
        if self.revoked {
            return Err(DeviceError::Shutdown("detached".into()));
        }
        if let Some((at, d)) = self.slow_read_at
            && at == offset
        {
            tokio::time::sleep(d).await;
        }
        self.note(format!("read {offset}"));
        let o = usize::try_from(offset).unwrap();
        let l = usize::try_from(len).unwrap();
        Ok(Bytes::copy_from_slice(&self.data.lock().unwrap()[o..o + l]))
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), DeviceError> {
        if let Some(d) = self.slow_writes {
            tokio::time::sleep(d).await;
        }
        let o = usize::try_from(offset).unwrap();
        self.data.lock().unwrap()[o..o + data.len()].copy_from_slice(&data);
        self.note(format!("write {offset} fua={fua}"));
        Ok(())
    }

    async fn flush(&self) -> Result<(), DeviceError> {
        self.note("flush".into());
        Ok(())
    }

    async fn trim(&self, offset: u64, len: u32, _fua: bool) -> Result<(), DeviceError> {
        self.fill(offset, len, 0);
        self.note(format!("trim {offset}"));
        Ok(())
    }

    async fn write_zeroes(
        &self,
        offset: u64,
        len: u32,
        _may_trim: bool,
        _fua: bool,
    ) -> Result<(), DeviceError> {
        self.fill(offset, len, 0);
        self.note(format!("zero {offset}"));
        Ok(())
    }
}

/// Serve `dev` as [`EXPORT`] on a loopback port; returns the address.
async fn start(dev: Arc<MemDevice>) -> std::net::SocketAddr {
    serve_one(
        dev,
        ServerConfig {
            max_request: MAX_REQUEST,
            max_in_flight: 16,
            ..ServerConfig::default()
        },
    )
    .await
}

/// Serve `dev` as [`EXPORT`] with `config`; returns the address.
async fn start_with(dev: Arc<MemDevice>, config: ServerConfig) -> std::net::SocketAddr {
    serve_one(dev, config).await
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[tokio::test]
async fn option_haggling_answers_each_option() {
    let dev = Arc::new(MemDevice::new(1 << 20));
    let addr = start(dev).await;
    let mut c = Client::connect(addr, 3).await;

    // LIST: export names are secrets, so none are listed, only the ACK.
    c.option(OPT_LIST, &[]).await;
    assert_eq!(c.opt_reply().await, (OPT_LIST, REP_ACK, vec![]));
    // LIST with data is invalid.
    c.option(OPT_LIST, b"x").await;
    assert_eq!(c.opt_reply().await.1, REP_ERR_INVALID);
    // An unknown option is unsupported, and the session goes on.
    c.option(0x4242, b"whatever").await;
    assert_eq!(c.opt_reply().await.1, REP_ERR_UNSUP);
    // Malformed INFO: the name length runs past the data.
    c.option(OPT_INFO, &[0, 0, 0, 9, b'a']).await;
    assert_eq!(c.opt_reply().await.1, REP_ERR_INVALID);
    // Unknown export: knowing anything but the token gets nothing.
    let (infos, last) = c.info_or_go(OPT_INFO, "disk-0123456789abcdef", &[3]).await;
    assert!(infos.is_empty());
    assert_eq!(last, REP_ERR_UNKNOWN);
    // INFO with a block size request: the export and its constraints.
    let (infos, last) = c.info_or_go(OPT_INFO, EXPORT, &[3]).await;
    assert_eq!(last, REP_ACK);
    assert_eq!(infos.len(), 2);
    let export = &infos[0];
    assert_eq!(&export[0..2], &0u16.to_be_bytes(), "NBD_INFO_EXPORT");
    assert_eq!(
        u64::from_be_bytes(export[2..10].try_into().unwrap()),
        1 << 20
    );
    let tflags = u16::from_be_bytes(export[10..12].try_into().unwrap());
    // HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM, SEND_WRITE_ZEROES; not read-only.
    // Also SEND_CACHE and SEND_FAST_ZERO; not CAN_MULTI_CONN (the test
    // device does not share state between connections).
    assert_eq!(
        tflags & (1 | 4 | 8 | 32 | 64 | 1024 | 2048),
        1 | 4 | 8 | 32 | 64 | 1024 | 2048
    );
    assert_eq!(tflags & (2 | 256), 0);
    let bs = &infos[1];
    assert_eq!(&bs[0..2], &3u16.to_be_bytes(), "NBD_INFO_BLOCK_SIZE");
    let min = u32::from_be_bytes(bs[2..6].try_into().unwrap());
    let preferred = u32::from_be_bytes(bs[6..10].try_into().unwrap());
    let max = u32::from_be_bytes(bs[10..14].try_into().unwrap());
    assert_eq!((min, preferred, max), (1, 4096, MAX_REQUEST));
    // GO enters transmission: a read works at once.
    let (_, last) = c.info_or_go(OPT_GO, EXPORT, &[]).await;
    assert_eq!(last, REP_ACK);
    c.request(CMD_READ, 0, 7, 0, 512, &[]).await;
    assert_eq!(c.reply().await, (0, 7));
    assert_eq!(c.read_payload(512).await, vec![0; 512]);
}

#[tokio::test]
async fn export_name_sends_size_flags_and_zeroes_unless_told_not_to() {
    let dev = Arc::new(MemDevice::new(3 << 20));
    let addr = start(dev).await;
    // Without NO_ZEROES: size, flags and 124 zero bytes.
    let mut c = Client::connect(addr, 1).await;
    c.option(OPT_EXPORT_NAME, EXPORT.as_bytes()).await;
    assert_eq!(c.s.read_u64().await.unwrap(), 3 << 20);
    let _flags = c.s.read_u16().await.unwrap();
    assert_eq!(c.read_payload(124).await, vec![0; 124]);
    c.request(CMD_FLUSH, 0, 1, 0, 0, &[]).await;
    assert_eq!(c.reply().await, (0, 1));
    // With NO_ZEROES: the first reply follows the flags directly.
    let mut c = Client::connect(addr, 3).await;
    c.option(OPT_EXPORT_NAME, EXPORT.as_bytes()).await;
    assert_eq!(c.s.read_u64().await.unwrap(), 3 << 20);
    let _flags = c.s.read_u16().await.unwrap();
    c.request(CMD_FLUSH, 0, 2, 0, 0, &[]).await;
    assert_eq!(c.reply().await, (0, 2));
    // EXPORT_NAME has no error reply: an unknown name closes the connection.
    let mut c = Client::connect(addr, 3).await;
    c.option(OPT_EXPORT_NAME, b"guess").await;
    assert!(c.closed().await);
}

#[tokio::test]
async fn handshake_violations_close_the_connection() {
    let addr = start(Arc::new(MemDevice::new(1 << 20))).await;
    // ABORT: acknowledged, then closed.
    let mut c = Client::connect(addr, 3).await;
    c.option(OPT_ABORT, &[]).await;
    assert_eq!(c.opt_reply().await, (OPT_ABORT, REP_ACK, vec![]));
    assert!(c.closed().await);
    // A client without fixed newstyle.
    let mut c = Client::connect(addr, 0).await;
    assert!(c.closed().await);
    // Unknown client flags.
    let mut c = Client::connect(addr, 1 | 0x80).await;
    assert!(c.closed().await);
    // Bad option magic.
    let mut c = Client::connect(addr, 3).await;
    c.s.write_all(b"NOTMAGIC\0\0\0\x07\0\0\0\0").await.unwrap();
    assert!(c.closed().await);
    // An option claiming 1 GiB of data is not read: closed.
    let mut c = Client::connect(addr, 3).await;
    let mut m = IHAVEOPT.to_be_bytes().to_vec();
    m.extend_from_slice(&OPT_INFO.to_be_bytes());
    m.extend_from_slice(&(1u32 << 30).to_be_bytes());
    c.s.write_all(&m).await.unwrap();
    assert!(c.closed().await);
}

#[tokio::test]
async fn bad_requests_get_errors_and_the_stream_stays_in_step() {
    let dev = Arc::new(MemDevice::new(1 << 20));
    let size = 1u64 << 20;
    let addr = start(dev.clone()).await;
    let mut c = Client::transmission(addr).await;
    let original = pattern(1, 8192);
    c.request(CMD_WRITE, FLAG_FUA, 1, 0, 8192, &original).await;
    assert_eq!(c.reply().await, (0, 1));
    let before = dev.snapshot();

    c.request(CMD_READ, 0, 2, size - 100, 4096, &[]).await;
    assert_eq!(c.reply().await, (EINVAL, 2), "read past the end");
    c.request(CMD_WRITE, 0, 3, size - 10, 4096, &[0xee; 4096])
        .await;
    assert_eq!(c.reply().await, (ENOSPC, 3), "write past the end");
    c.request(CMD_WRITE, 0, 4, u64::MAX - 10, 4096, &[0xee; 4096])
        .await;
    assert_eq!(c.reply().await, (ENOSPC, 4), "offset + length overflows");
    c.request(CMD_WRITE_ZEROES, 0, 5, size, 1, &[]).await;
    assert_eq!(c.reply().await, (ENOSPC, 5), "write zeroes past the end");
    c.request(CMD_TRIM, 0, 6, size - 1, 2, &[]).await;
    assert_eq!(c.reply().await, (EINVAL, 6), "trim past the end");
    c.request(99, 0, 7, 0, 0, &[]).await;
    assert_eq!(c.reply().await, (EINVAL, 7), "unknown command");
    c.request(CMD_READ, 0, 8, 0, MAX_REQUEST + 1, &[]).await;
    assert_eq!(
        c.reply().await,
        (EINVAL, 8),
        "read above the advertised maximum"
    );
    let big = vec![0xee; usize::try_from(MAX_REQUEST).unwrap() + 4096];
    c.request(CMD_WRITE, 0, 9, 0, u32::try_from(big.len()).unwrap(), &big)
        .await;
    assert_eq!(
        c.reply().await,
        (EINVAL, 9),
        "write above the advertised maximum"
    );

    // Still in step: a valid read returns the data written first.
    c.request(CMD_READ, 0, 10, 0, 8192, &[]).await;
    assert_eq!(c.reply().await, (0, 10));
    assert_eq!(c.read_payload(8192).await, original);
    // Zero-length requests are valid no-ops.
    c.request(CMD_READ, 0, 11, 0, 0, &[]).await;
    assert_eq!(c.reply().await, (0, 11));
    assert_eq!(dev.snapshot(), before, "no bad request changed a byte");

    // A write payload beyond any acceptable size closes the connection
    // (its payload is not read).
    c.request(CMD_WRITE, 0, 12, 0, u32::MAX, &[]).await;
    assert!(c.closed().await);
    // So does a bad request magic.
    let mut c = Client::transmission(addr).await;
    c.s.write_all(&[0x55; 28]).await.unwrap();
    assert!(c.closed().await);
    assert_eq!(dev.snapshot(), before);
}

#[tokio::test]
async fn read_only_export_refuses_changes() {
    let dev = Arc::new(MemDevice {
        read_only: true,
        ..MemDevice::new(1 << 20)
    });
    let addr = start(dev.clone()).await;
    let mut c = Client::connect(addr, 3).await;
    let (infos, _) = c.info_or_go(OPT_GO, EXPORT, &[]).await;
    let tflags = u16::from_be_bytes(infos[0][10..12].try_into().unwrap());
    assert_eq!(tflags & 2, 2, "NBD_FLAG_READ_ONLY");
    c.request(CMD_WRITE, 0, 1, 0, 4, b"abcd").await;
    assert_eq!(c.reply().await, (EPERM, 1));
    c.request(CMD_TRIM, 0, 2, 0, 4096, &[]).await;
    assert_eq!(c.reply().await, (EPERM, 2));
    c.request(CMD_WRITE_ZEROES, 0, 3, 0, 4096, &[]).await;
    assert_eq!(c.reply().await, (EPERM, 3));
    c.request(CMD_READ, 0, 4, 0, 4, &[]).await;
    assert_eq!(c.reply().await, (0, 4));
    assert_eq!(c.read_payload(4).await, vec![0; 4]);
    assert!(
        dev.log
            .lock()
            .unwrap()
            .iter()
            .all(|l| l.starts_with("read"))
    );
}

#[tokio::test]
async fn replies_come_back_out_of_order_when_that_is_faster() {
    let dev = Arc::new(MemDevice {
        slow_read_at: Some((0, Duration::from_millis(300))),
        ..MemDevice::new(1 << 20)
    });
    let addr = start(dev).await;
    let mut c = Client::transmission(addr).await;
    c.request(CMD_READ, 0, 1, 0, 4096, &[]).await;
    c.request(CMD_READ, 0, 2, 4096, 4096, &[]).await;
    assert_eq!(c.reply().await, (0, 2), "the fast read is answered first");
    c.read_payload(4096).await;
    assert_eq!(c.reply().await, (0, 1));
    c.read_payload(4096).await;
}

#[tokio::test]
async fn flush_waits_for_every_write_received_before_it() {
    let dev = Arc::new(MemDevice {
        slow_writes: Some(Duration::from_millis(100)),
        ..MemDevice::new(1 << 20)
    });
    let addr = start(dev.clone()).await;
    let mut c = Client::transmission(addr).await;
    for i in 0..4u64 {
        c.request(CMD_WRITE, 0, i, i * 4096, 4096, &[1; 4096]).await;
    }
    c.request(CMD_FLUSH, 0, 99, 0, 0, &[]).await;
    let mut cookies = Vec::new();
    for _ in 0..5 {
        let (err, cookie) = c.reply().await;
        assert_eq!(err, 0);
        cookies.push(cookie);
    }
    assert_eq!(cookies.last(), Some(&99), "the flush is answered last");
    let log = dev.log.lock().unwrap().clone();
    assert_eq!(log.len(), 5);
    assert_eq!(
        log[4], "flush",
        "the device flushed after all four writes: {log:?}"
    );
}

#[tokio::test]
async fn disconnect_lets_requests_in_flight_finish() {
    let dev = Arc::new(MemDevice {
        slow_writes: Some(Duration::from_millis(200)),
        ..MemDevice::new(1 << 20)
    });
    let addr = start(dev.clone()).await;
    let mut c = Client::transmission(addr).await;
    c.request(CMD_WRITE, FLAG_FUA, 1, 8192, 3, b"xyz").await;
    c.request(CMD_DISC, 0, 2, 0, 0, &[]).await;
    assert_eq!(c.reply().await, (0, 1), "the write in flight is answered");
    assert!(c.closed().await);
    assert_eq!(&dev.snapshot()[8192..8195], b"xyz");
    assert_eq!(dev.log.lock().unwrap().as_slice(), ["write 8192 fua=true"]);
}

#[tokio::test]
async fn a_revoked_export_answers_eshutdown_and_closes() {
    let dev = Arc::new(MemDevice {
        revoked: true,
        ..MemDevice::new(1 << 20)
    });
    let addr = start(dev).await;
    let mut c = Client::transmission(addr).await;
    c.request(CMD_READ, 0, 1, 0, 4096, &[]).await;
    assert_eq!(c.reply().await, (ESHUTDOWN, 1));
    assert!(c.closed().await);
}

/// Pipelined random I/O (writes, trims, write-zeroes, FUA, reads), many
/// requests in flight, checked against a model. Requests in one batch never
/// overlap each other, so the model is exact whatever order the server runs
/// them in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_random_io_matches_a_model() {
    let size: u64 = 4 << 20;
    let dev = Arc::new(MemDevice::new(usize::try_from(size).unwrap()));
    let addr = start(dev.clone()).await;
    let mut c = Client::transmission(addr).await;
    let mut model = vec![0u8; usize::try_from(size).unwrap()];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut cookie = 0u64;
    for batch in 0..40 {
        let mut taken: Vec<(u64, u64)> = Vec::new();
        // cookie -> expected read data
        let mut reads: HashMap<u64, Vec<u8>> = HashMap::new();
        let mut sent = 0;
        let mut tries = 0;
        while sent < 24 && tries < 500 {
            tries += 1;
            let len = 1 + next(200_000);
            let off = next(size - len);
            if taken.iter().any(|&(o, l)| off < o + l && o < off + len) {
                continue;
            }
            taken.push((off, len));
            cookie += 1;
            sent += 1;
            let (o, l) = (usize::try_from(off).unwrap(), usize::try_from(len).unwrap());
            let len32 = u32::try_from(len).unwrap();
            match next(5) {
                0 | 1 => {
                    let data = pattern(cookie, l);
                    let flags = if next(4) == 0 { FLAG_FUA } else { 0 };
                    c.request(CMD_WRITE, flags, cookie, off, len32, &data).await;
                    model[o..o + l].copy_from_slice(&data);
                }
                2 => {
                    c.request(CMD_TRIM, 0, cookie, off, len32, &[]).await;
                    model[o..o + l].fill(0);
                }
                3 => {
                    c.request(CMD_WRITE_ZEROES, 0, cookie, off, len32, &[])
                        .await;
                    model[o..o + l].fill(0);
                }
                _ => {
                    c.request(CMD_READ, 0, cookie, off, len32, &[]).await;
                    reads.insert(cookie, model[o..o + l].to_vec());
                }
            }
        }
        if batch % 8 == 7 {
            cookie += 1;
            c.request(CMD_FLUSH, 0, cookie, 0, 0, &[]).await;
            sent += 1;
        }
        for _ in 0..sent {
            let (err, got) = c.reply().await;
            assert_eq!(err, 0, "request {got} failed");
            if let Some(want) = reads.remove(&got) {
                let data = c.read_payload(want.len()).await;
                assert!(data == want, "read {got} differs from the model");
            }
        }
        assert!(reads.is_empty());
    }
    assert!(dev.snapshot() == model, "device differs from the model");
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is needed for this test (.ci/run installs it): {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Real clients: nbdinfo reads the export and its block size constraints,
/// nbdcopy writes and reads back a random image, qemu-io checks a pattern at
/// an unaligned offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_agree_with_the_server() {
    let size = 16usize << 20;
    let dev = Arc::new(MemDevice::new(size));
    let addr = start(dev.clone()).await;
    let uri = format!("nbd://{addr}/{EXPORT}");
    let dir = tempfile::tempdir().unwrap();
    let (uri2, dir2) = (uri.clone(), dir.path().to_owned());
    let dev2 = dev.clone();
    tokio::task::spawn_blocking(move || {
        let out = run("nbdinfo", &["--json", &uri2]);
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let e = &info["exports"][0];
        assert_eq!(e["export-size"], size);
        assert_eq!(e["block_size_minimum"], 1);
        assert_eq!(e["block_size_preferred"], 4096);
        assert_eq!(e["block_size_maximum"], MAX_REQUEST);
        for flag in ["can_flush", "can_fua", "can_trim", "can_zero"] {
            assert_eq!(e[flag], true, "{flag}");
        }
        assert_eq!(e["is_read_only"], false);

        let src = dir2.join("src.raw");
        let back = dir2.join("back.raw");
        std::fs::write(&src, pattern(42, size)).unwrap();
        run("nbdcopy", &[src.to_str().unwrap(), &uri2]);
        assert!(dev2.snapshot() == std::fs::read(&src).unwrap());
        run("nbdcopy", &[&uri2, back.to_str().unwrap()]);
        assert!(std::fs::read(&back).unwrap() == std::fs::read(&src).unwrap());

        run(
            "qemu-io",
            &[
                "-f",
                "raw",
                "-c",
                "write -P 0xab 1000 70000",
                "-c",
                "flush",
                "-c",
                "read -P 0xab 1000 70000",
                &uri2,
            ],
        );
        let d = dev2.snapshot();
        assert!(d[1000..71000].iter().all(|&b| b == 0xab));
        assert_eq!(d[999], std::fs::read(&src).unwrap()[999]);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_silent_or_endless_handshake_is_cut_off() {
    let dev = Arc::new(MemDevice::new(1 << 20));
    let addr = start_with(
        dev,
        ServerConfig {
            handshake_timeout: Duration::from_millis(500),
            ..ServerConfig::default()
        },
    )
    .await;
    // Connects and says nothing after the greeting.
    let mut silent = Client::connect(addr, 3).await;
    // Haggles forever (an unsupported option, again and again).
    let mut endless = Client::connect(addr, 3).await;
    let t0 = std::time::Instant::now();
    let mut cut = false;
    while t0.elapsed() < Duration::from_secs(5) {
        endless.option(99, &[]).await;
        let mut b = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(100), endless.s.read(&mut b)).await
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "a client haggling forever was never cut off");
    assert!(silent.closed().await, "a silent client was never cut off");
}

#[tokio::test]
async fn connections_over_the_caps_are_refused() {
    let dev = Arc::new(MemDevice::new(1 << 20));
    let addr = start_with(
        dev,
        ServerConfig {
            max_connections: 3,
            max_per_export: 2,
            ..ServerConfig::default()
        },
    )
    .await;
    let a = Client::transmission(addr).await;
    let _b = Client::transmission(addr).await;
    // A third connection to the export: GO is refused by policy, with a
    // message, and the connection stays usable for other options.
    let mut c = Client::connect(addr, 3).await;
    let (_, last) = c.info_or_go(OPT_GO, EXPORT, &[]).await;
    assert_eq!(last, REP_ERR_POLICY);
    // A fourth connection to the listener is closed at once.
    let mut d = TcpStream::connect(addr).await.unwrap();
    let mut b = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), d.read(&mut b))
        .await
        .expect("closed, not left hanging")
        .unwrap_or(0);
    assert_eq!(n, 0, "the listener was full: no greeting");
    // Giving a connection back makes room for the export again.
    drop(a);
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _e = Client::transmission(addr).await;
}

/// NBD_CMD_CACHE succeeds in range and is EINVAL past the end, changing
/// nothing; NBD_CMD_FLAG_FAST_ZERO is honoured on WRITE_ZEROES and refused
/// (EINVAL) on any other command.
#[tokio::test]
async fn cache_and_fast_zero() {
    const CMD_CACHE: u16 = 5;
    const FLAG_FAST_ZERO: u16 = 16;
    let dev = Arc::new(MemDevice::new(1 << 20));
    let size = 1u64 << 20;
    let addr = start(dev.clone()).await;
    let mut c = Client::transmission(addr).await;
    let original = pattern(3, 8192);
    c.request(CMD_WRITE, FLAG_FUA, 1, 0, 8192, &original).await;
    assert_eq!(c.reply().await, (0, 1));
    let before = dev.snapshot();
    c.request(CMD_CACHE, 0, 2, 0, 8192, &[]).await;
    assert_eq!(c.reply().await, (0, 2), "cache in range");
    c.request(CMD_CACHE, 0, 3, size - 1, 2, &[]).await;
    assert_eq!(c.reply().await, (EINVAL, 3), "cache past the end");
    c.request(CMD_WRITE, FLAG_FAST_ZERO, 4, 0, 4096, &[0xee; 4096])
        .await;
    assert_eq!(c.reply().await, (EINVAL, 4), "fast zero on a write");
    assert_eq!(dev.snapshot(), before, "refused requests change nothing");
    c.request(CMD_WRITE_ZEROES, FLAG_FAST_ZERO, 5, 4096, 4096, &[])
        .await;
    assert_eq!(c.reply().await, (0, 5), "fast zero on write zeroes");
    c.request(CMD_READ, 0, 6, 0, 8192, &[]).await;
    assert_eq!(c.reply().await, (0, 6));
    let mut want = original.clone();
    want[4096..].fill(0);
    assert_eq!(c.read_payload(8192).await, want);
}
