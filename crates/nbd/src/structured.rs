//! Structured replies and the `base:allocation` metadata context: the
//! options that negotiate them (`NBD_OPT_STRUCTURED_REPLY`,
//! `NBD_OPT_LIST_META_CONTEXT`, `NBD_OPT_SET_META_CONTEXT`) and the reply
//! chunks the transmission phase sends once they are on (read data, errors,
//! `NBD_CMD_BLOCK_STATUS` descriptors). Per the NBD protocol
//! (`doc/proto.md` of NetworkBlockDevice/nbd).

use bytes::{BufMut, Bytes, BytesMut};

pub(crate) const OPT_STRUCTURED_REPLY: u32 = 8;
pub(crate) const OPT_LIST_META_CONTEXT: u32 = 9;
pub(crate) const OPT_SET_META_CONTEXT: u32 = 10;
pub(crate) const REP_META_CONTEXT: u32 = 4;

pub(crate) const CMD_BLOCK_STATUS: u16 = 7;
pub(crate) const CMD_FLAG_REQ_ONE: u16 = 8;

const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
const REPLY_FLAG_DONE: u16 = 1;
const TYPE_NONE: u16 = 0;
const TYPE_OFFSET_DATA: u16 = 1;
const TYPE_OFFSET_HOLE: u16 = 2;
/// `NBD_CMD_FLAG_DF`: the client wants one data chunk, holes included.
pub(crate) const CMD_FLAG_DF: u16 = 4;
const TYPE_BLOCK_STATUS: u16 = 5;
const TYPE_ERROR: u16 = (1 << 15) + 1;

/// The one metadata context served.
pub(crate) const BASE_ALLOCATION: &str = "base:allocation";
/// Its id in this server's replies.
pub(crate) const ALLOCATION_ID: u32 = 1;
/// `base:allocation` flags: a hole that reads as zeroes.
const STATE_HOLE_ZERO: u32 = 1 | 2;

/// The export name and queries of a LIST or SET_META_CONTEXT option, or
/// `None` if malformed.
pub(crate) fn parse_meta_request(data: &[u8]) -> Option<(String, Vec<String>)> {
    let u32_at = |i: usize| -> Option<usize> {
        Some(u32::from_be_bytes(data.get(i..i + 4)?.try_into().ok()?) as usize)
    };
    let name_len = u32_at(0)?;
    let name = std::str::from_utf8(data.get(4..4 + name_len)?).ok()?;
    let mut pos = 4 + name_len;
    let n = u32_at(pos)?;
    pos += 4;
    let mut queries = Vec::new();
    for _ in 0..n {
        let len = u32_at(pos)?;
        let q = std::str::from_utf8(data.get(pos + 4..pos + 4 + len)?).ok()?;
        queries.push(q.to_string());
        pos += 4 + len;
    }
    (pos == data.len()).then(|| (name.to_string(), queries))
}

/// Whether `query` names `base:allocation`: exactly, or (listing only) as
/// the whole `base:` namespace.
pub(crate) fn selects_allocation(query: &str, listing: bool) -> bool {
    query == BASE_ALLOCATION || (listing && query == "base:")
}

/// The payload of an `NBD_REP_META_CONTEXT` reply for `base:allocation`.
pub(crate) fn meta_context_reply() -> Bytes {
    let mut d = BytesMut::with_capacity(4 + BASE_ALLOCATION.len());
    d.put_u32(ALLOCATION_ID);
    d.put_slice(BASE_ALLOCATION.as_bytes());
    d.freeze()
}

fn chunk(buf: &mut BytesMut, ty: u16, cookie: u64, len: usize) {
    chunk_flagged(buf, REPLY_FLAG_DONE, ty, cookie, len);
}

fn chunk_flagged(buf: &mut BytesMut, flags: u16, ty: u16, cookie: u64, len: usize) {
    buf.put_u32(STRUCTURED_REPLY_MAGIC);
    buf.put_u16(flags);
    buf.put_u16(ty);
    buf.put_u64(cookie);
    buf.put_u32(u32::try_from(len).expect("a chunk of at most a request's length"));
}

/// The reply to a read: one final data chunk (the header part; the data
/// follows it unchanged), or an empty final chunk for a read of 0 bytes.
pub(crate) fn read_reply(cookie: u64, offset: u64, data: Bytes) -> Vec<Bytes> {
    let mut h = BytesMut::with_capacity(28);
    if data.is_empty() {
        chunk(&mut h, TYPE_NONE, cookie, 0);
        return vec![h.freeze()];
    }
    chunk(&mut h, TYPE_OFFSET_DATA, cookie, 8 + data.len());
    h.put_u64(offset);
    vec![h.freeze(), data]
}

/// One piece of a sparse read: data read at an offset, or a hole of a length.
pub(crate) enum Piece {
    Data(u64, Bytes),
    Hole(u64, u32),
}

/// The reply to a read as one chunk per piece (`NBD_REPLY_TYPE_OFFSET_DATA`
/// or `NBD_REPLY_TYPE_OFFSET_HOLE`), the last flagged done. `pieces` is
/// not empty.
pub(crate) fn sparse_read_reply(cookie: u64, pieces: Vec<Piece>) -> Vec<Bytes> {
    let n = pieces.len();
    let mut out = Vec::with_capacity(2 * n);
    for (i, p) in pieces.into_iter().enumerate() {
        let flags = if i + 1 == n { REPLY_FLAG_DONE } else { 0 };
        let mut h = BytesMut::with_capacity(32);
        match p {
            Piece::Data(offset, data) => {
                chunk_flagged(&mut h, flags, TYPE_OFFSET_DATA, cookie, 8 + data.len());
                h.put_u64(offset);
                out.push(h.freeze());
                out.push(data);
            }
            Piece::Hole(offset, len) => {
                chunk_flagged(&mut h, flags, TYPE_OFFSET_HOLE, cookie, 12);
                h.put_u64(offset);
                h.put_u32(len);
                out.push(h.freeze());
            }
        }
    }
    out
}

/// A final error chunk.
pub(crate) fn error_reply(cookie: u64, errno: u32, message: &str) -> Vec<Bytes> {
    // At most 4096 bytes, cut on a character boundary: the message is UTF-8.
    let mut n = message.len().min(4096);
    while !message.is_char_boundary(n) {
        n -= 1;
    }
    let msg = &message.as_bytes()[..n];
    let mut b = BytesMut::with_capacity(26 + msg.len());
    chunk(&mut b, TYPE_ERROR, cookie, 6 + msg.len());
    b.put_u32(errno);
    b.put_u16(u16::try_from(msg.len()).expect("at most 4096"));
    b.put_slice(msg);
    vec![b.freeze()]
}

/// The reply to `NBD_CMD_BLOCK_STATUS` on `base:allocation`: one
/// descriptor per run (only the first with `req_one`).
pub(crate) fn block_status_reply(cookie: u64, runs: &[(u32, bool)], req_one: bool) -> Vec<Bytes> {
    let runs = if req_one {
        &runs[..runs.len().min(1)]
    } else {
        runs
    };
    let mut b = BytesMut::with_capacity(24 + 8 * runs.len());
    chunk(&mut b, TYPE_BLOCK_STATUS, cookie, 4 + 8 * runs.len());
    b.put_u32(ALLOCATION_ID);
    for (len, hole) in runs {
        b.put_u32(*len);
        b.put_u32(if *hole { STATE_HOLE_ZERO } else { 0 });
    }
    vec![b.freeze()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, queries: &[&str]) -> Vec<u8> {
        let mut d = BytesMut::new();
        d.put_u32(u32::try_from(name.len()).unwrap());
        d.put_slice(name.as_bytes());
        d.put_u32(u32::try_from(queries.len()).unwrap());
        for q in queries {
            d.put_u32(u32::try_from(q.len()).unwrap());
            d.put_slice(q.as_bytes());
        }
        d.to_vec()
    }

    #[test]
    fn meta_requests_parse_and_malformed_ones_do_not() {
        let r = request("exp", &["base:allocation", "qemu:dirty-bitmap:x"]);
        assert_eq!(
            parse_meta_request(&r),
            Some((
                "exp".into(),
                vec!["base:allocation".into(), "qemu:dirty-bitmap:x".into()]
            ))
        );
        assert_eq!(parse_meta_request(&r[..r.len() - 1]), None);
        let mut long = r.clone();
        long.push(0);
        assert_eq!(parse_meta_request(&long), None);
        assert_eq!(parse_meta_request(&[0, 0, 0, 9]), None);
        assert!(selects_allocation("base:", true));
        assert!(!selects_allocation("base:", false));
        assert!(!selects_allocation("base:other", true));
    }

    #[test]
    fn block_status_descriptors() {
        let r = block_status_reply(7, &[(4096, false), (8192, true)], false);
        let b = &r[0];
        assert_eq!(&b[0..4], &STRUCTURED_REPLY_MAGIC.to_be_bytes());
        assert_eq!(u32::from_be_bytes(b[16..20].try_into().unwrap()), 4 + 16);
        assert_eq!(&b[20..24], &ALLOCATION_ID.to_be_bytes());
        assert_eq!(&b[24..32], &[0, 0, 16, 0, 0, 0, 0, 0]);
        assert_eq!(&b[32..40], &[0, 0, 32, 0, 0, 0, 0, 3]);
        let one = block_status_reply(7, &[(4096, false), (8192, true)], true);
        assert_eq!(one[0].len(), 20 + 4 + 8);
    }

    #[test]
    fn long_error_messages_are_cut_on_a_character_boundary() {
        // "a" then two-byte characters: byte 4096 falls inside one.
        let long = format!("a{}", "é".repeat(3000));
        let r = error_reply(1, 5, &long);
        let msg_len = usize::from(u16::from_be_bytes([r[0][24], r[0][25]]));
        assert_eq!(msg_len, 4095);
        assert!(std::str::from_utf8(&r[0][26..26 + msg_len]).is_ok());
    }
}
