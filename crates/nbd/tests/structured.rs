//! Structured replies and the `base:allocation` context, byte by byte: the
//! negotiation rules (and clients that break them), structured read and
//! error chunks, and block status from a device's extents.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use coffer_nbd::{BlockDevice, DeviceError, ServerConfig};
use tokio::io::AsyncReadExt;

mod common;
use common::*;

/// 1 MiB: data in [0, 64 KiB) and [512 KiB, 576 KiB), holes elsewhere;
/// reads past 900 KiB fail.
struct Sparse;

const TYPE_OFFSET_HOLE: u16 = 2;
const FLAG_DF: u16 = 4;

fn byte_at(off: u64) -> u8 {
    if off < 65536 || (524_288..589_824).contains(&off) {
        0x5a
    } else {
        0
    }
}

#[async_trait]
impl BlockDevice for Sparse {
    fn size(&self) -> u64 {
        1 << 20
    }
    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, DeviceError> {
        if offset + u64::from(len) > 900 * 1024 {
            return Err(DeviceError::Io("bad sector".into()));
        }
        Ok((offset..offset + u64::from(len)).map(byte_at).collect())
    }
    async fn write(&self, _: u64, _: Bytes, _: bool) -> Result<(), DeviceError> {
        Ok(())
    }
    async fn flush(&self) -> Result<(), DeviceError> {
        Ok(())
    }
    async fn trim(&self, _: u64, _: u32, _: bool) -> Result<(), DeviceError> {
        Ok(())
    }
    async fn write_zeroes(&self, _: u64, _: u32, _: bool, _: bool) -> Result<(), DeviceError> {
        Ok(())
    }
    async fn extents(&self, offset: u64, len: u32) -> Result<Vec<(u32, bool)>, DeviceError> {
        let mut runs: Vec<(u32, bool)> = Vec::new();
        for off in (offset..offset + u64::from(len)).step_by(4096) {
            let hole = byte_at(off) == 0;
            match runs.last_mut() {
                Some((l, h)) if *h == hole => *l += 4096,
                _ => runs.push((4096, hole)),
            }
        }
        Ok(runs)
    }
}

async fn start() -> std::net::SocketAddr {
    serve_one(Arc::new(Sparse), ServerConfig::default()).await
}

async fn go(c: &mut Client, name: &str) {
    let (_, last) = c.info_or_go(OPT_GO, name, &[]).await;
    assert_eq!(last, REP_ACK);
}

fn u32_at(d: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(d[i..i + 4].try_into().unwrap())
}

#[tokio::test]
async fn negotiation_follows_the_rules() {
    let addr = start().await;
    let mut c = Client::connect(addr, 3).await;
    // Listing needs nothing first; "base:" lists the namespace, an empty
    // query list lists everything, an unknown context lists nothing.
    for queries in [&["base:"][..], &[], &["base:allocation"]] {
        let r = c.meta(OPT_LIST_META_CONTEXT, EXPORT, queries).await;
        assert_eq!(r.len(), 2, "{queries:?}");
        assert_eq!(r[0].0, REP_META_CONTEXT);
        assert_eq!(&r[0].1[4..], b"base:allocation");
        assert_eq!(r[1].0, REP_ACK);
    }
    let r = c
        .meta(OPT_LIST_META_CONTEXT, EXPORT, &["qemu:dirty-bitmap:x"])
        .await;
    assert_eq!(r, vec![(REP_ACK, vec![])]);
    // Setting before structured replies is refused.
    let r = c
        .meta(OPT_SET_META_CONTEXT, EXPORT, &["base:allocation"])
        .await;
    assert_eq!(r[0].0, REP_ERR_INVALID);
    // Structured replies take no data.
    c.option(OPT_STRUCTURED_REPLY, b"x").await;
    assert_eq!(c.replies().await[0].0, REP_ERR_INVALID);
    c.option(OPT_STRUCTURED_REPLY, &[]).await;
    assert_eq!(c.replies().await, vec![(REP_ACK, vec![])]);
    // A malformed request is invalid, and the session goes on.
    c.option(OPT_SET_META_CONTEXT, &[0, 0, 0, 40, 1]).await;
    assert_eq!(c.replies().await[0].0, REP_ERR_INVALID);
    // "base:" selects nothing when setting: only exact names do.
    let r = c.meta(OPT_SET_META_CONTEXT, EXPORT, &["base:"]).await;
    assert_eq!(r, vec![(REP_ACK, vec![])]);
    let r = c
        .meta(OPT_SET_META_CONTEXT, EXPORT, &["base:allocation"])
        .await;
    assert_eq!(r[0].0, REP_META_CONTEXT);
    let id = u32_at(&r[0].1, 0);
    go(&mut c, EXPORT).await;

    // Block status: data, hole, data, hole, each with its own descriptor.
    c.request(CMD_BLOCK_STATUS, 0, 1, 0, 1 << 20, &[]).await;
    let (flags, ty, cookie, d) = c.chunk().await;
    assert_eq!((flags & 1, ty, cookie), (1, TYPE_BLOCK_STATUS, 1));
    assert_eq!(u32_at(&d, 0), id);
    let descs: Vec<(u32, u32)> = d[4..]
        .chunks_exact(8)
        .map(|e| (u32_at(e, 0), u32_at(e, 4)))
        .collect();
    assert_eq!(
        descs,
        vec![(65536, 0), (458_752, 3), (65536, 0), (458_752, 3)]
    );
    // REQ_ONE: the first extent only, from an unaligned offset.
    c.request(CMD_BLOCK_STATUS, FLAG_REQ_ONE, 2, 70_000, 100_000, &[])
        .await;
    let (_, _, _, d) = c.chunk().await;
    assert_eq!(d.len(), 4 + 8);
    assert_eq!(u32_at(&d, 8), 3, "a hole");
    // Beyond the end, or empty: EINVAL in an error chunk.
    for (off, len) in [((1 << 20) - 4096, 8192), (0, 0)] {
        c.request(CMD_BLOCK_STATUS, 0, 3, off, len, &[]).await;
        let (flags, ty, cookie, d) = c.chunk().await;
        assert_eq!((flags & 1, ty, cookie), (1, TYPE_ERROR, 3));
        assert_eq!(u32_at(&d, 0), EINVAL);
    }
    // A read: one final data chunk with its offset.
    c.request(CMD_READ, 0, 4, 65_000, 1000, &[]).await;
    let (flags, ty, cookie, d) = c.chunk().await;
    assert_eq!((flags & 1, ty, cookie), (1, TYPE_OFFSET_DATA, 4));
    assert_eq!(u64::from_be_bytes(d[..8].try_into().unwrap()), 65_000);
    let expected: Vec<u8> = (65_000..66_000).map(byte_at).collect();
    assert_eq!(&d[8..], &expected[..]);
    // A read of nothing: one empty final chunk.
    c.request(CMD_READ, 0, 5, 0, 0, &[]).await;
    let (flags, ty, cookie, d) = c.chunk().await;
    assert_eq!((flags & 1, ty, cookie, d.len()), (1, TYPE_NONE, 5, 0));
    // A failed read (with DF, so the hole there is read, not skipped): an
    // error chunk with a message.
    c.request(CMD_READ, FLAG_DF, 6, 950 * 1024, 4096, &[]).await;
    let (_, ty, cookie, d) = c.chunk().await;
    assert_eq!((ty, cookie), (TYPE_ERROR, 6));
    assert_eq!(u32_at(&d, 0), EIO);
    let msg_len = usize::from(u16::from_be_bytes([d[4], d[5]]));
    assert!(String::from_utf8_lossy(&d[6..6 + msg_len]).contains("bad sector"));

    // A read over data and holes: a data chunk per data run, a hole chunk
    // per hole (never read: the hole at 950 KiB would fail), the last done.
    c.request(CMD_READ, 0, 7, 0, 1 << 20, &[]).await;
    let want: [(u16, u64, u64); 4] = [
        (TYPE_OFFSET_DATA, 0, 65_536),
        (TYPE_OFFSET_HOLE, 65_536, 524_288 - 65_536),
        (TYPE_OFFSET_DATA, 524_288, 65_536),
        (TYPE_OFFSET_HOLE, 589_824, (1 << 20) - 589_824),
    ];
    for (i, (t, off, len)) in want.iter().enumerate() {
        let (flags, ty, cookie, d) = c.chunk().await;
        assert_eq!((ty, cookie), (*t, 7), "chunk {i}");
        assert_eq!(flags & 1, u16::from(i == 3), "only the last chunk is done");
        assert_eq!(u64::from_be_bytes(d[..8].try_into().unwrap()), *off);
        if *t == TYPE_OFFSET_HOLE {
            assert_eq!((d.len(), u64::from(u32_at(&d, 8))), (12, *len));
        } else {
            assert_eq!(d.len() as u64, 8 + len);
            assert!(d[8..].iter().all(|b| *b == 0x5a));
        }
    }
    // The same with DF: one data chunk, holes as zeroes.
    c.request(CMD_READ, FLAG_DF, 8, 0, 589_824 + 4096, &[])
        .await;
    let (flags, ty, cookie, d) = c.chunk().await;
    assert_eq!((flags & 1, ty, cookie), (1, TYPE_OFFSET_DATA, 8));
    let expected: Vec<u8> = (0..589_824 + 4096).map(byte_at).collect();
    assert_eq!(&d[8..], &expected[..]);
}

#[tokio::test]
async fn block_status_needs_a_context_and_plain_clients_get_simple_replies() {
    let addr = start().await;
    // No structured replies: block status is EINVAL in a simple reply, and
    // reads are simple replies as before.
    let mut c = Client::connect(addr, 3).await;
    go(&mut c, EXPORT).await;
    c.request(CMD_BLOCK_STATUS, 0, 9, 0, 4096, &[]).await;
    assert_eq!(c.s.read_u32().await.unwrap(), SIMPLE_REPLY_MAGIC);
    assert_eq!(c.s.read_u32().await.unwrap(), EINVAL);
    assert_eq!(c.s.read_u64().await.unwrap(), 9);
    c.request(CMD_READ, 0, 10, 0, 16, &[]).await;
    assert_eq!(c.s.read_u32().await.unwrap(), SIMPLE_REPLY_MAGIC);
    assert_eq!(c.s.read_u32().await.unwrap(), 0);
    assert_eq!(c.s.read_u64().await.unwrap(), 10);
    let mut d = [0u8; 16];
    c.s.read_exact(&mut d).await.unwrap();
    assert_eq!(d, [0x5a; 16]);

    // A context set for another export name does not carry over to GO.
    let mut c = Client::connect(addr, 3).await;
    c.option(OPT_STRUCTURED_REPLY, &[]).await;
    c.replies().await;
    let r = c
        .meta(OPT_SET_META_CONTEXT, "another-export", &["base:allocation"])
        .await;
    assert_eq!(r[0].0, REP_META_CONTEXT);
    go(&mut c, EXPORT).await;
    c.request(CMD_BLOCK_STATUS, 0, 11, 0, 4096, &[]).await;
    let (_, ty, _, d) = c.chunk().await;
    assert_eq!(ty, TYPE_ERROR);
    assert_eq!(u32_at(&d, 0), EINVAL);
}
