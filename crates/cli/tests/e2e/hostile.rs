//! Hostile HTTP clients against a real `coffer serve`: requests the parser
//! refuses get the API's JSON errors with the right status; connection
//! limits per address and per listener answer 429 and 503; slow headers,
//! slow bodies and unauthenticated large bodies are cut off within the
//! stated timeouts while other clients keep being served, and the server's
//! memory goes back to where it was once they leave.
//!
//! Abusive clients connect from other loopback addresses (127.0.0.2 ...)
//! than the well-behaved one (127.0.0.1), as they would from other hosts.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Server;

fn addr(s: &Server) -> SocketAddr {
    s.api.trim_start_matches("http://").parse().unwrap()
}

/// A connection to the API from loopback address `from`.
fn connect_from(s: &Server, from: [u8; 4]) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    sock.connect(&addr(s).into()).unwrap();
    let c: TcpStream = sock.into();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    c
}

/// Status and JSON body of the one response on `c` (read to EOF).
fn response(mut c: TcpStream) -> (u16, serde_json::Value) {
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 "),
        "not an HTTP response: {text:?}"
    );
    let status: u16 = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    (status, serde_json::from_str(body).expect("a JSON body"))
}

fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// Resident memory of the server process, in KiB.
fn rss_kib(s: &Server) -> u64 {
    let pid = s.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// One authenticated request from 127.0.0.1 on a fresh connection; its
/// status and how long it took.
fn probe(s: &Server, token: &str) -> (u16, Duration) {
    let t0 = Instant::now();
    let mut c = connect_from(s, [127, 0, 0, 1]);
    write!(
        c,
        "GET /v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (st, _) = response(c);
    (st, t0.elapsed())
}

#[test]
fn requests_the_parser_refuses_get_json_errors() {
    let s = Server::start();
    // A 100k-character path: 414 with the API's JSON body, however the
    // bytes arrive (here in small pieces, as from a slow network).
    let mut c = connect_from(&s, [127, 0, 0, 1]);
    let path = format!("/v1/disks/{}", "a".repeat(100_000));
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    for piece in req.as_bytes().chunks(1500) {
        c.write_all(piece).unwrap();
        c.flush().unwrap();
    }
    let (st, v) = response(c);
    assert_eq!((st, code(&v)), (414, "UriTooLong"), "{v}");
    // A malformed request line: 400, JSON.
    let mut c = connect_from(&s, [127, 0, 0, 1]);
    c.write_all(b"GET\x01 / HTTP/1.1\r\n\r\n").unwrap();
    let (st, v) = response(c);
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("HTTP"),
        "{v}"
    );
    // Headers over the parser's buffer: 431, JSON.
    let mut c = connect_from(&s, [127, 0, 0, 1]);
    let big = format!("X-Pad: {}\r\n", "p".repeat(8000)).repeat(100);
    let _ = write!(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n{big}\r\n");
    let (st, v) = response(c);
    assert_eq!(st, 431, "{v}");
    // The server is unharmed.
    let t = s.admin_token();
    assert_eq!(probe(&s, &t).0, 200);
}

#[test]
fn connections_over_the_limits_get_429_and_503() {
    let s = Server::start_with(
        &[
            "--max-connections",
            "6",
            "--max-connections-per-address",
            "3",
        ],
        &[],
    );
    let t = s.admin_token();
    // Three idle connections from one address are allowed; a fourth is not.
    let held: Vec<TcpStream> = (0..3).map(|_| connect_from(&s, [127, 0, 0, 2])).collect();
    std::thread::sleep(Duration::from_millis(200));
    let (st, v) = response(connect_from(&s, [127, 0, 0, 2]));
    assert_eq!((st, code(&v)), (429, "TooManyConnections"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains('3'), "{v}");
    // Another address still gets in, until the listener is full.
    let more: Vec<TcpStream> = (0..3).map(|_| connect_from(&s, [127, 0, 0, 3])).collect();
    std::thread::sleep(Duration::from_millis(200));
    let (st, v) = response(connect_from(&s, [127, 0, 0, 1]));
    assert_eq!((st, code(&v)), (503, "ServerBusy"), "{v}");
    // Connections given back are counted out: a client is served again.
    drop(held);
    drop(more);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = connect_from(&s, [127, 0, 0, 1]);
        write!(
            c,
            "GET /v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        if response(c).0 == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "closed connections still counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Send `bytes` one at a time, `gap` apart, until the server closes the
/// connection or `max` passes; returns how long the server took to close
/// it (None if it never did) and what it answered.
fn dribble(
    mut c: TcpStream,
    head: &[u8],
    bytes: &[u8],
    gap: Duration,
    max: Duration,
) -> (Option<Duration>, Vec<u8>) {
    let t0 = Instant::now();
    if c.write_all(head).is_err() {
        return (Some(t0.elapsed()), vec![]);
    }
    c.set_read_timeout(Some(gap)).unwrap();
    let mut got = vec![];
    let mut buf = [0u8; 4096];
    let mut i = 0;
    while t0.elapsed() < max {
        if i < bytes.len() {
            if c.write_all(&bytes[i..=i]).is_err() {
                return (Some(t0.elapsed()), got);
            }
            i += 1;
        }
        match c.read(&mut buf) {
            Ok(0) => return (Some(t0.elapsed()), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (Some(t0.elapsed()), got),
        }
    }
    (None, got)
}

type Abuser = std::thread::JoinHandle<(&'static str, Option<Duration>, Vec<u8>)>;

/// Start `n` slow-header clients, `n` slow-body clients (authenticated,
/// their body a byte at a time) and `2n` unauthenticated 2 MiB bodies
/// (sent in full, the connection held open), each from its own loopback
/// address.
fn abuse(s: &Server, t: &str, n: usize) -> Vec<Abuser> {
    let gap = Duration::from_millis(400);
    let max = Duration::from_secs(20);
    let mut abusers: Vec<Abuser> = vec![];
    for _ in 0..n {
        let c = connect_from(s, [127, 0, 0, 2]);
        abusers.push(std::thread::spawn(move || {
            let (closed, _) = dribble(c, b"GET /v1/whoami HTTP/1.1\r\n", &[b'X'; 200], gap, max);
            ("slow header", closed, vec![])
        }));
    }
    for _ in 0..n {
        let c = connect_from(s, [127, 0, 0, 3]);
        let head = format!(
            "POST /v1/disks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        );
        abusers.push(std::thread::spawn(move || {
            let (closed, got) = dribble(c, head.as_bytes(), &[b' '; 1000], gap, max);
            ("slow body", closed, got)
        }));
    }
    for i in 0..2 * n {
        let mut c = connect_from(s, [127, 0, 0, if i % 2 == 0 { 4 } else { 5 }]);
        let body = vec![b'{'; 2 << 20];
        abusers.push(std::thread::spawn(move || {
            let t0 = Instant::now();
            let _ = write!(
                c,
                "POST /v1/disks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(&body);
            let mut got = vec![];
            let _ = c.read_to_end(&mut got);
            ("unauthenticated body", Some(t0.elapsed()), got)
        }));
    }
    abusers
}

/// Wait for every abuser and check how the server treated it.
fn check_abusers(abusers: Vec<Abuser>) {
    for h in abusers {
        let (what, closed, got) = h.join().unwrap();
        let closed = closed.unwrap_or_else(|| panic!("a {what} client was never cut off"));
        let got = String::from_utf8_lossy(&got).to_string();
        match what {
            // The whole head must arrive within 2 s.
            "slow header" => assert!(closed < Duration::from_secs(6), "{what}: {closed:?}"),
            // The body within 3 s of the head: 408, JSON.
            "slow body" => {
                assert!(closed < Duration::from_secs(8), "{what}: {closed:?}");
                assert!(got.starts_with("HTTP/1.1 408"), "{what}: {got}");
                assert!(got.contains("RequestTimeout"), "{got}");
            }
            _ => assert!(
                got.is_empty() || got.starts_with("HTTP/1.1 401"),
                "{what}: {got}"
            ),
        }
    }
}

#[test]
fn slow_and_abusive_clients_are_cut_off_and_others_served() {
    let s = Server::start_with(&["--header-timeout", "2s", "--body-timeout", "3s"], &[]);
    let t = s.admin_token();
    // Warm up: requests, and one round of the same abuse. Bounded caches
    // (SQLite's page cache, the allocator's per-thread arenas) fill up over
    // the first rounds by about 2 MiB and stay there: they are not a cost
    // of these clients. What must not happen is growth per round.
    for _ in 0..20 {
        assert_eq!(probe(&s, &t).0, 200);
    }
    check_abusers(abuse(&s, &t, 50));
    std::thread::sleep(Duration::from_millis(300));
    let baseline = rss_kib(&s);

    // 50 slow-header, 50 slow-body and 100 unauthenticated 2 MiB bodies.
    let abusers = abuse(&s, &t, 50);
    // Meanwhile a well-behaved client is served.
    let mut worst = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(6);
    let mut probes = 0;
    while Instant::now() < until {
        let (st, took) = probe(&s, &t);
        assert_eq!(
            st, 200,
            "a well-behaved client was refused during the abuse"
        );
        worst = worst.max(took);
        probes += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let during = rss_kib(&s);
    check_abusers(abusers);
    // Memory back near where it was once they are gone.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut after = rss_kib(&s);
    while after > baseline + baseline / 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        after = rss_kib(&s);
    }
    eprintln!(
        "hostile: {probes} probes, slowest {worst:?}; RSS {baseline} KiB before, {during} KiB during, {after} KiB after"
    );
    assert!(
        after <= baseline + baseline / 10,
        "RSS {after} KiB is more than 10% over the baseline {baseline} KiB"
    );
    s.assert_no_panic();
}
