//! Bad input gets a clear error and loses nothing: the CLI, the HTTP API and
//! the NBD port are fed wrong sizes, unknown and malformed ids, invalid
//! names, conflicting operations, malformed JSON, missing credentials and
//! protocol violations; each is refused with the right status and a message
//! naming the reason, and the data written before is intact afterwards.

use crate::common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;

fn token(s: &Server) -> String {
    s.admin_token()
}

fn expect(
    s: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
    status: u16,
    code: &str,
) -> String {
    let t = token(s);
    let (st, v) = http(s, method, path, Some(&t), body);
    assert_eq!(st, status, "{method} {path} {body:?}: {v}");
    assert_eq!(v["error"]["code"], code, "{method} {path} {body:?}: {v}");
    let msg = v["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.len() > 10, "message too thin: {msg}");
    msg
}

#[test]
fn bad_api_and_cli_input_is_refused_and_data_survives() {
    require("qemu-img", "qemu-utils");
    let s = Server::start();
    let disk = s.create_disk("keep", "8MiB", "local-a");
    let uri = s.attach(&disk);
    let src = s.scratch().join("keep.raw");
    random_file(&src, 8 << 20, 42);
    qemu_img_in(&src, "raw", &uri);
    let before = sha256(&src);

    // Sizes.
    for (size, needle) in [
        ("0", "too small"),
        ("100TiB", "too large"),
        ("1000000000", "whole number of MiB"),
        ("512KiB", "too small"),
    ] {
        let e = s.cli_err(&[
            "disk", "create", "--name", "x", "--size", size, "--zone", "local-a",
        ]);
        assert!(
            e.contains(needle) && e.contains("InvalidSize"),
            "size {size}: {e}"
        );
    }
    for size in ["-1GiB", "1.5GiB", "ten", "5 parsecs"] {
        let e = s.cli_err(&[
            "disk",
            "create",
            "--name",
            "x",
            &format!("--size={size}"),
            "--zone",
            "local-a",
        ]);
        assert!(e.contains("size") || e.contains("unit"), "size {size}: {e}");
    }
    expect(
        &s,
        "POST",
        "/v1/disks",
        Some(r#"{"name":"x","zone":"local-a","size":-5}"#),
        400,
        "InvalidBody",
    );
    expect(
        &s,
        "POST",
        "/v1/disks",
        Some(r#"{"name":"x","zone":"local-a"}"#),
        400,
        "MissingSize",
    );
    // Names and zones.
    for name in ["", "has space", "-lead", &"n".repeat(81), "semi;colon"] {
        let m = expect(
            &s,
            "POST",
            "/v1/disks",
            Some(&format!(
                r#"{{"name":"{name}","zone":"local-a","size":"1GiB"}}"#
            )),
            400,
            "InvalidName",
        );
        assert!(m.contains("name"), "{m}");
    }
    let m = expect(
        &s,
        "POST",
        "/v1/disks",
        Some(r#"{"name":"x","zone":"mars-1","size":"1GiB"}"#),
        400,
        "UnknownZone",
    );
    assert!(
        m.contains("local-a"),
        "the message lists the zones that exist: {m}"
    );
    // Ids.
    expect(
        &s,
        "GET",
        "/v1/disks/disk-0123456789abcdef",
        None,
        404,
        "DiskNotFound",
    );
    expect(&s, "GET", "/v1/disks/not-an-id", None, 400, "InvalidId");
    expect(
        &s,
        "GET",
        &format!("/v1/disks/{}", disk.replace("disk-", "snap-")),
        None,
        400,
        "InvalidId",
    );
    expect(
        &s,
        "GET",
        "/v1/snapshots/snap-0123456789abcdef",
        None,
        404,
        "SnapshotNotFound",
    );
    expect(
        &s,
        "POST",
        "/v1/snapshots",
        Some(r#"{"disk_id":"disk-0123456789abcdef","name":"s"}"#),
        404,
        "DiskNotFound",
    );
    expect(
        &s,
        "POST",
        "/v1/disks",
        Some(r#"{"name":"x","zone":"local-a","source_snapshot_id":"snap-0123456789abcdef"}"#),
        404,
        "SnapshotNotFound",
    );
    let e = s.cli_err(&["disk", "show", "disk-0123456789abcdef"]);
    assert!(e.contains("404") && e.contains("not found"), "{e}");
    // A --query naming no field is an error, not an empty value.
    let e = s.cli_err(&["whoami", "--query", "account.id"]);
    assert!(
        e.contains("no such field") && e.contains("account_id"),
        "{e}"
    );
    // State conflicts.
    let m = expect(
        &s,
        "POST",
        &format!("/v1/disks/{disk}/attach"),
        None,
        409,
        "DiskAttached",
    );
    assert!(m.contains("detach"), "{m}");
    expect(
        &s,
        "DELETE",
        &format!("/v1/disks/{disk}"),
        None,
        409,
        "DiskAttached",
    );
    expect(
        &s,
        "POST",
        &format!("/v1/disks/{disk}/resize"),
        Some(r#"{"size":"16MiB"}"#),
        409,
        "DiskAttached",
    );
    let m = expect(
        &s,
        "POST",
        &format!("/v1/disks/{disk}/resize"),
        Some(r#"{"size":"4MiB"}"#),
        400,
        "ShrinkNotAllowed",
    );
    assert!(m.contains("only grow"), "{m}");
    // Malformed requests and credentials.
    expect(
        &s,
        "POST",
        "/v1/disks",
        Some(r#"{"name": "x", "#),
        400,
        "MalformedJson",
    );
    expect(
        &s,
        "POST",
        "/v1/disks",
        Some(r#"{"name":"x","zone":"local-a","size":"1GiB","colour":"red"}"#),
        400,
        "InvalidBody",
    );
    expect(&s, "GET", "/v1/nothing-here", None, 404, "RouteNotFound");
    let (st, v) = http(&s, "GET", "/v1/disks", None, None);
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (401, Some("Unauthenticated")),
        "{v}"
    );
    let (st, _) = http(
        &s,
        "GET",
        "/v1/disks",
        Some("coffer_not-a-real-token"),
        None,
    );
    assert_eq!(st, 401);
    let (st, v) = http(&s, "GET", "/openapi.json", None, None);
    assert_eq!(st, 200);
    assert!(
        v["paths"]["/v1/disks"].is_object(),
        "OpenAPI document lists the routes"
    );

    // Nothing was created by all that, and the data is intact.
    let disks = s.cli(&["disk", "list"]);
    assert_eq!(disks.as_array().unwrap().len(), 1, "{disks}");
    let out = s.scratch().join("after.raw");
    qemu_img_out(&uri, &out);
    assert_eq!(sha256(&out), before, "data changed by bad input");
    // Resize works once detached, and keeps the data.
    s.cli(&["disk", "detach", &disk]);
    let grown = s.cli(&["disk", "resize", &disk, "--size", "16MiB"]);
    assert_eq!(grown["size_bytes"], 16 << 20);
    let uri = s.attach(&disk);
    let out2 = s.scratch().join("after2.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw", &uri])
        .arg(&out2));
    run(Command::new("truncate").args(["-s", "8M"]).arg(&out2));
    assert_eq!(sha256(&out2), before, "data changed by resize");
}

fn nbd_handshake(addr: &str) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = [0u8; 18];
    c.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..8], b"NBDMAGIC");
    assert_eq!(&hello[8..16], b"IHAVEOPT");
    c.write_all(&3u32.to_be_bytes()).unwrap(); // fixed newstyle + no zeroes
    c
}

fn send_opt(c: &mut TcpStream, opt: u32, data: &[u8]) {
    let mut m = b"IHAVEOPT".to_vec();
    m.extend_from_slice(&opt.to_be_bytes());
    m.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    m.extend_from_slice(data);
    c.write_all(&m).unwrap();
}

/// Read one option reply: (type, data).
fn read_opt_reply(c: &mut TcpStream) -> (u32, Vec<u8>) {
    let mut h = [0u8; 20];
    c.read_exact(&mut h).unwrap();
    let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
    let len = u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize;
    let mut d = vec![0u8; len];
    c.read_exact(&mut d).unwrap();
    (kind, d)
}

fn go(c: &mut TcpStream, name: &str) -> (u32, u64) {
    let mut d = u32::try_from(name.len()).unwrap().to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&0u16.to_be_bytes());
    send_opt(c, 7, &d);
    let mut size = 0;
    loop {
        let (kind, data) = read_opt_reply(c);
        if kind == 3 && data.len() >= 10 && data[..2] == [0, 0] {
            size = u64::from_be_bytes(data[2..10].try_into().unwrap());
        }
        if kind != 3 {
            return (kind, size);
        }
    }
}

fn request(c: &mut TcpStream, kind: u16, cookie: u64, offset: u64, len: u32, payload: &[u8]) {
    let mut r = 0x2560_9513u32.to_be_bytes().to_vec();
    r.extend_from_slice(&0u16.to_be_bytes());
    r.extend_from_slice(&kind.to_be_bytes());
    r.extend_from_slice(&cookie.to_be_bytes());
    r.extend_from_slice(&offset.to_be_bytes());
    r.extend_from_slice(&len.to_be_bytes());
    r.extend_from_slice(payload);
    c.write_all(&r).unwrap();
}

/// Read a simple reply: (error, cookie).
fn reply(c: &mut TcpStream) -> (u32, u64) {
    let mut h = [0u8; 16];
    c.read_exact(&mut h).unwrap();
    assert_eq!(
        u32::from_be_bytes(h[..4].try_into().unwrap()),
        0x6744_6698,
        "reply magic"
    );
    (
        u32::from_be_bytes(h[4..8].try_into().unwrap()),
        u64::from_be_bytes(h[8..16].try_into().unwrap()),
    )
}

/// Whether the server closed the connection: EOF or a reset within 5 s.
/// Silence for 5 s is a connection left open (a hung one), not a closed one.
fn closed(c: &mut TcpStream) -> bool {
    closed_within(c, Duration::from_secs(5))
}

fn closed_within(c: &mut TcpStream, wait: Duration) -> bool {
    c.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 1];
    match c.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        // A read timeout shows as WouldBlock on Unix, TimedOut elsewhere.
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(_) => true,
    }
}

#[test]
fn closed_tells_a_silent_connection_from_a_closed_one() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut silent = TcpStream::connect(addr).unwrap();
    let (held, _) = listener.accept().unwrap();
    assert!(
        !closed_within(&mut silent, Duration::from_millis(300)),
        "a peer that holds the connection open and says nothing has not closed it"
    );
    drop(held);
    assert!(closed_within(&mut silent, Duration::from_secs(5)));
    let mut chatty = TcpStream::connect(addr).unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    peer.write_all(b"x").unwrap();
    assert!(!closed_within(&mut chatty, Duration::from_secs(5)));
}

#[test]
fn nbd_protocol_violations_are_refused_and_data_survives() {
    require("qemu-img", "qemu-utils");
    let s = Server::start();
    let disk = s.create_disk("nbd", "4MiB", "local-a");
    let uri = s.attach(&disk);
    let export = uri.rsplit('/').next().unwrap().to_string();
    let src = s.scratch().join("nbd.raw");
    random_file(&src, 4 << 20, 9);
    qemu_img_in(&src, "raw", &uri);
    let before = sha256(&src);

    // Unknown export in NBD_OPT_GO: NBD_REP_ERR_UNKNOWN, the session goes on.
    let mut c = nbd_handshake(&s.nbd);
    assert_eq!(go(&mut c, "coffer_guessing-a-token").0, 0x8000_0006);
    // An unknown option: NBD_REP_ERR_UNSUP.
    send_opt(&mut c, 0x4242, b"junk");
    assert_eq!(read_opt_reply(&mut c).0, 0x8000_0001);
    // NBD_OPT_LIST lists nothing: export names are secrets.
    send_opt(&mut c, 3, b"");
    assert_eq!(
        read_opt_reply(&mut c).0,
        1,
        "LIST answers ACK with no server entries"
    );
    // An oversized option closes the connection.
    let mut m = b"IHAVEOPT".to_vec();
    m.extend_from_slice(&0x4242u32.to_be_bytes());
    m.extend_from_slice(&(1u32 << 30).to_be_bytes());
    c.write_all(&m).unwrap();
    assert!(closed(&mut c), "a 1 GiB option must close the connection");
    // Bad option magic closes the connection.
    let mut c = nbd_handshake(&s.nbd);
    c.write_all(b"NOTMAGIC\0\0\0\x01\0\0\0\0").unwrap();
    assert!(closed(&mut c));

    // Transmission: reads and writes past the end, unknown commands.
    let mut c = nbd_handshake(&s.nbd);
    let (kind, size) = go(&mut c, &export);
    assert_eq!((kind, size), (1, 4 << 20));
    request(&mut c, 0, 1, size - 100, 4096, &[]);
    assert_eq!(reply(&mut c), (22, 1), "read past the end: EINVAL");
    request(&mut c, 1, 2, size - 10, 4096, &[0xab; 4096]);
    assert_eq!(
        reply(&mut c),
        (28, 2),
        "write past the end: ENOSPC, payload consumed"
    );
    request(&mut c, 1, 3, u64::MAX - 10, 4096, &[0xab; 4096]);
    assert_eq!(reply(&mut c), (28, 3), "offset overflow: ENOSPC");
    request(&mut c, 99, 4, 0, 0, &[]);
    assert_eq!(reply(&mut c), (22, 4), "unknown command: EINVAL");
    request(&mut c, 0, 5, 0, 64 << 20, &[]);
    assert_eq!(
        reply(&mut c),
        (22, 5),
        "read larger than the maximum: EINVAL"
    );
    // The connection still works: a valid read.
    request(&mut c, 0, 6, 0, 4096, &[]);
    assert_eq!(reply(&mut c), (0, 6));
    let mut data = vec![0u8; 4096];
    c.read_exact(&mut data).unwrap();
    assert_eq!(
        data,
        std::fs::read(&src).unwrap()[..4096],
        "valid read after errors"
    );
    // Bad request magic closes the connection.
    c.write_all(&[0u8; 28]).unwrap();
    assert!(closed(&mut c));

    let out = s.scratch().join("after.raw");
    qemu_img_out(&uri, &out);
    assert_eq!(sha256(&out), before, "protocol violations changed the data");
}

/// Send `head` (request line and headers, no body) and read the answer.
fn raw(s: &Server, head: &str) -> (u16, serde_json::Value) {
    let addr = s.api.trim_start_matches("http://");
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(head.replace("HOST", addr).as_bytes()).unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    let status: u16 = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => serde_json::from_str(&body[a..=b]).unwrap(),
        _ => serde_json::Value::String(body.into()),
    };
    (status, json)
}

#[test]
fn wrong_media_types_and_oversized_bodies_get_415_and_413() {
    let s = Server::start();
    let t = token(&s);
    let body = r#"{"name":"x","zone":"local-a","size":"1MiB"}"#;
    let (st, v) = raw(
        &s,
        &format!(
            "POST /v1/disks HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\nAuthorization: Bearer {t}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (415, Some("UnsupportedMediaType")),
        "{v}"
    );
    // A body announced over the limit is refused before it is read.
    let (st, v) = raw(
        &s,
        &format!(
            "POST /v1/disks HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\nAuthorization: Bearer {t}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            64 << 20
        ),
    );
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (413, Some("BodyTooLarge")),
        "{v}"
    );
    // Nothing was created by either.
    let (st, v) = http(&s, "GET", "/v1/disks", Some(&t), None);
    assert_eq!(
        (st, v["items"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
}
