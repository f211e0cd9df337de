//! SPDY/3.1 framing for `kubectl port-forward` (pure, no I/O): owns frame
//! encode/decode (control frames SYN_STREAM, SYN_REPLY, RST_STREAM,
//! SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE, and data frames) and the
//! name/value header blocks, zlib-compressed with SPDY/3's fixed dictionary.
//!
//! One session has one compression context per direction. The peer's
//! (kubectl's, Go's zlib) header stream starts with a zlib header that names
//! the preset dictionary; flate2's default backend has no preset-dictionary
//! call, so [`HeaderDecoder`] primes a raw inflater with a stored deflate
//! block holding the dictionary: back-references into the dictionary then
//! resolve to that block's output, which is discarded. [`HeaderEncoder`]
//! writes a plain zlib stream (no dictionary, FDICT clear), which Go's
//! `zlib.NewReaderDict` accepts as is.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// SPDY protocol version carried in control frames.
pub const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;
/// The largest payload a frame can carry (24-bit length).
pub const MAX_LENGTH: usize = (1 << 24) - 1;

pub const TYPE_SYN_STREAM: u16 = 1;
pub const TYPE_SYN_REPLY: u16 = 2;
pub const TYPE_RST_STREAM: u16 = 3;
pub const TYPE_SETTINGS: u16 = 4;
pub const TYPE_PING: u16 = 6;
pub const TYPE_GOAWAY: u16 = 7;
pub const TYPE_HEADERS: u16 = 8;
pub const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpdyError {
    #[error("SPDY frame of {0} bytes is longer than the 16 MiB limit")]
    TooLong(usize),
    #[error("SPDY control frame has version {0}; only SPDY/3 is spoken here")]
    Version(u16),
    #[error("SPDY {what} frame is too short ({len} bytes)")]
    Short { what: &'static str, len: usize },
    #[error("SPDY header block: {0}")]
    Headers(String),
}

/// One SPDY frame. Header blocks (`headers`) stay compressed here: they must
/// go through the session's [`HeaderDecoder`] in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated: u32,
        priority: u8,
        flags: u8,
        headers: Vec<u8>,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Vec<u8>,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        /// (flags, id, value)
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Vec<u8>,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Vec<u8>,
    },
    /// A control frame type this framer does not interpret (ignored by SPDY rules).
    Unknown {
        kind: u16,
        flags: u8,
        payload: Vec<u8>,
    },
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn need(what: &'static str, p: &[u8], n: usize) -> Result<(), SpdyError> {
    if p.len() < n {
        Err(SpdyError::Short { what, len: p.len() })
    } else {
        Ok(())
    }
}

/// Decodes one frame from the front of `buf`: `Ok(None)` when more bytes
/// are needed, else the frame and how many bytes it used.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, SpdyError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let flags = buf[4];
    let len = (u32::from_be_bytes([0, buf[5], buf[6], buf[7]])) as usize;
    if buf.len() < 8 + len {
        return Ok(None);
    }
    let p = &buf[8..8 + len];
    let used = 8 + len;
    if buf[0] & 0x80 == 0 {
        let stream_id = be32(buf) & 0x7fff_ffff;
        return Ok(Some((
            Frame::Data {
                stream_id,
                flags,
                data: p.to_vec(),
            },
            used,
        )));
    }
    let version = u16::from_be_bytes([buf[0], buf[1]]) & 0x7fff;
    if version != VERSION {
        return Err(SpdyError::Version(version));
    }
    let kind = u16::from_be_bytes([buf[2], buf[3]]);
    let id = |p: &[u8]| be32(p) & 0x7fff_ffff;
    let f = match kind {
        TYPE_SYN_STREAM => {
            need("SYN_STREAM", p, 10)?;
            Frame::SynStream {
                stream_id: id(p),
                associated: id(&p[4..]),
                priority: p[8] >> 5,
                flags,
                headers: p[10..].to_vec(),
            }
        }
        TYPE_SYN_REPLY => {
            need("SYN_REPLY", p, 4)?;
            Frame::SynReply {
                stream_id: id(p),
                flags,
                headers: p[4..].to_vec(),
            }
        }
        TYPE_RST_STREAM => {
            need("RST_STREAM", p, 8)?;
            Frame::RstStream {
                stream_id: id(p),
                status: be32(&p[4..]),
            }
        }
        TYPE_SETTINGS => {
            need("SETTINGS", p, 4)?;
            let n = be32(p) as usize;
            need("SETTINGS", p, 4 + n.saturating_mul(8))?;
            let entries = (0..n)
                .map(|i| {
                    let e = &p[4 + i * 8..];
                    (e[0], be32(e) & 0x00ff_ffff, be32(&e[4..]))
                })
                .collect();
            Frame::Settings { flags, entries }
        }
        TYPE_PING => {
            need("PING", p, 4)?;
            Frame::Ping { id: be32(p) }
        }
        TYPE_GOAWAY => {
            need("GOAWAY", p, 8)?;
            Frame::GoAway {
                last_good: id(p),
                status: be32(&p[4..]),
            }
        }
        TYPE_HEADERS => {
            need("HEADERS", p, 4)?;
            Frame::Headers {
                stream_id: id(p),
                flags,
                headers: p[4..].to_vec(),
            }
        }
        TYPE_WINDOW_UPDATE => {
            need("WINDOW_UPDATE", p, 8)?;
            Frame::WindowUpdate {
                stream_id: id(p),
                delta: be32(&p[4..]) & 0x7fff_ffff,
            }
        }
        _ => Frame::Unknown {
            kind,
            flags,
            payload: p.to_vec(),
        },
    };
    Ok(Some((f, used)))
}

fn control(out: &mut Vec<u8>, kind: u16, flags: u8, payload: &[u8]) -> Result<(), SpdyError> {
    if payload.len() > MAX_LENGTH {
        return Err(SpdyError::TooLong(payload.len()));
    }
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    Ok(())
}

/// Encodes one frame.
pub fn encode(f: &Frame) -> Result<Vec<u8>, SpdyError> {
    let mut out = Vec::new();
    let mut p = Vec::new();
    match f {
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            if data.len() > MAX_LENGTH {
                return Err(SpdyError::TooLong(data.len()));
            }
            out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            out.push(*flags);
            out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(data);
            return Ok(out);
        }
        Frame::SynStream {
            stream_id,
            associated,
            priority,
            flags,
            headers,
        } => {
            p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            p.extend_from_slice(&(associated & 0x7fff_ffff).to_be_bytes());
            p.push(priority << 5);
            p.push(0);
            p.extend_from_slice(headers);
            control(&mut out, TYPE_SYN_STREAM, *flags, &p)?;
        }
        Frame::SynReply {
            stream_id,
            flags,
            headers,
        } => {
            p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            p.extend_from_slice(headers);
            control(&mut out, TYPE_SYN_REPLY, *flags, &p)?;
        }
        Frame::RstStream { stream_id, status } => {
            p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            p.extend_from_slice(&status.to_be_bytes());
            control(&mut out, TYPE_RST_STREAM, 0, &p)?;
        }
        Frame::Settings { flags, entries } => {
            p.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for (fl, id, v) in entries {
                let mut e = (id & 0x00ff_ffff).to_be_bytes();
                e[0] = *fl;
                p.extend_from_slice(&e);
                p.extend_from_slice(&v.to_be_bytes());
            }
            control(&mut out, TYPE_SETTINGS, *flags, &p)?;
        }
        Frame::Ping { id } => control(&mut out, TYPE_PING, 0, &id.to_be_bytes())?,
        Frame::GoAway { last_good, status } => {
            p.extend_from_slice(&(last_good & 0x7fff_ffff).to_be_bytes());
            p.extend_from_slice(&status.to_be_bytes());
            control(&mut out, TYPE_GOAWAY, 0, &p)?;
        }
        Frame::Headers {
            stream_id,
            flags,
            headers,
        } => {
            p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            p.extend_from_slice(headers);
            control(&mut out, TYPE_HEADERS, *flags, &p)?;
        }
        Frame::WindowUpdate { stream_id, delta } => {
            p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            p.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
            control(&mut out, TYPE_WINDOW_UPDATE, 0, &p)?;
        }
        Frame::Unknown {
            kind,
            flags,
            payload,
        } => control(&mut out, *kind, *flags, payload)?,
    }
    Ok(out)
}

/// Serialises name/value pairs (uncompressed SPDY/3 header block).
pub fn header_block(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_be_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Parses an uncompressed header block. Names are lower-cased; a value
/// holding several NUL-separated values is kept as is.
pub fn parse_header_block(b: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
    let bad = |m: &str| SpdyError::Headers(m.to_string());
    let take = |b: &[u8], at: usize| -> Result<(String, usize), SpdyError> {
        if b.len() < at + 4 {
            return Err(bad("truncated length"));
        }
        let n = be32(&b[at..]) as usize;
        let end = at + 4 + n;
        if b.len() < end {
            return Err(bad("truncated string"));
        }
        Ok((String::from_utf8_lossy(&b[at + 4..end]).into_owned(), end))
    };
    if b.len() < 4 {
        return Err(bad("missing pair count"));
    }
    let n = be32(b) as usize;
    let mut at = 4;
    let mut out = Vec::new();
    for _ in 0..n {
        let (k, next) = take(b, at)?;
        let (v, next) = take(b, next)?;
        at = next;
        out.push((k.to_ascii_lowercase(), v));
    }
    Ok(out)
}

/// Inflates the peer's header blocks (one zlib stream per session).
pub struct HeaderDecoder {
    z: Decompress,
    started: bool,
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecoder {
    pub fn new() -> Self {
        let mut z = Decompress::new(false);
        // A non-final stored block carrying the dictionary (1423 bytes < 64 KiB).
        let n = DICTIONARY.len() as u16;
        let mut prime = vec![0x00];
        prime.extend_from_slice(&n.to_le_bytes());
        prime.extend_from_slice(&(!n).to_le_bytes());
        prime.extend_from_slice(DICTIONARY);
        let mut sink = Vec::with_capacity(DICTIONARY.len() + 64);
        // Cannot fail: the block is well-formed and the output fits.
        let _ = z.decompress_vec(&prime, &mut sink, FlushDecompress::Sync);
        HeaderDecoder { z, started: false }
    }

    /// Inflates one frame's header block and parses it.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
        let mut input = block;
        if !self.started {
            if input.len() < 2 || input[0] & 0x0f != 8 {
                return Err(SpdyError::Headers(
                    "the first header block does not start a zlib stream".into(),
                ));
            }
            let skip = if input[1] & 0x20 != 0 { 6 } else { 2 };
            if input.len() < skip {
                return Err(SpdyError::Headers("truncated zlib header".into()));
            }
            input = &input[skip..];
            self.started = true;
        }
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        loop {
            let before_in = self.z.total_in();
            let before_out = self.z.total_out();
            let st = self
                .z
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
                .map_err(|e| SpdyError::Headers(format!("inflate: {e}")))?;
            let used = (self.z.total_in() - before_in) as usize;
            input = &input[used..];
            let produced = self.z.total_out() - before_out;
            if st == Status::StreamEnd {
                break;
            }
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if used == 0 && produced == 0 && out.len() < out.capacity() {
                return Err(SpdyError::Headers("inflate made no progress".into()));
            }
            if out.len() > 16 << 20 {
                return Err(SpdyError::TooLong(out.len()));
            }
            out.reserve(out.len().max(1024));
        }
        parse_header_block(&out)
    }
}

/// Deflates our header blocks (one zlib stream per session, sync-flushed
/// after every block).
pub struct HeaderEncoder {
    z: Compress,
}

impl Default for HeaderEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderEncoder {
    pub fn new() -> Self {
        HeaderEncoder {
            z: Compress::new(Compression::default(), true),
        }
    }

    pub fn encode(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<u8>, SpdyError> {
        let raw = header_block(pairs);
        let mut input = &raw[..];
        let mut out = Vec::with_capacity(raw.len() + 64);
        loop {
            let before_in = self.z.total_in();
            self.z
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Headers(format!("deflate: {e}")))?;
            input = &input[(self.z.total_in() - before_in) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(out.capacity().max(256));
        }
    }
}

/// SPDY/3's fixed header-compression dictionary (spec §2.6.10.1).
pub const DICTIONARY: &[u8] = &[
    0x00, 0x00, 0x00, 0x07, 0x6f, 0x70, 0x74, 0x69, 0x6f, 0x6e, 0x73, 0x00, 0x00, 0x00, 0x04, 0x68,
    0x65, 0x61, 0x64, 0x00, 0x00, 0x00, 0x04, 0x70, 0x6f, 0x73, 0x74, 0x00, 0x00, 0x00, 0x03, 0x70,
    0x75, 0x74, 0x00, 0x00, 0x00, 0x06, 0x64, 0x65, 0x6c, 0x65, 0x74, 0x65, 0x00, 0x00, 0x00, 0x05,
    0x74, 0x72, 0x61, 0x63, 0x65, 0x00, 0x00, 0x00, 0x06, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x00,
    0x00, 0x00, 0x0e, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x63, 0x68, 0x61, 0x72, 0x73, 0x65,
    0x74, 0x00, 0x00, 0x00, 0x0f, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x65, 0x6e, 0x63, 0x6f,
    0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x0f, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x6c,
    0x61, 0x6e, 0x67, 0x75, 0x61, 0x67, 0x65, 0x00, 0x00, 0x00, 0x0d, 0x61, 0x63, 0x63, 0x65, 0x70,
    0x74, 0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x73, 0x00, 0x00, 0x00, 0x03, 0x61, 0x67, 0x65, 0x00,
    0x00, 0x00, 0x05, 0x61, 0x6c, 0x6c, 0x6f, 0x77, 0x00, 0x00, 0x00, 0x0d, 0x61, 0x75, 0x74, 0x68,
    0x6f, 0x72, 0x69, 0x7a, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0d, 0x63, 0x61, 0x63,
    0x68, 0x65, 0x2d, 0x63, 0x6f, 0x6e, 0x74, 0x72, 0x6f, 0x6c, 0x00, 0x00, 0x00, 0x0a, 0x63, 0x6f,
    0x6e, 0x6e, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0c, 0x63, 0x6f, 0x6e, 0x74,
    0x65, 0x6e, 0x74, 0x2d, 0x62, 0x61, 0x73, 0x65, 0x00, 0x00, 0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74,
    0x65, 0x6e, 0x74, 0x2d, 0x65, 0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10,
    0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x61, 0x6e, 0x67, 0x75, 0x61, 0x67, 0x65,
    0x00, 0x00, 0x00, 0x0e, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x65, 0x6e, 0x67,
    0x74, 0x68, 0x00, 0x00, 0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x6f,
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0b, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e,
    0x74, 0x2d, 0x6d, 0x64, 0x35, 0x00, 0x00, 0x00, 0x0d, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74,
    0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00, 0x0c, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e,
    0x74, 0x2d, 0x74, 0x79, 0x70, 0x65, 0x00, 0x00, 0x00, 0x04, 0x64, 0x61, 0x74, 0x65, 0x00, 0x00,
    0x00, 0x04, 0x65, 0x74, 0x61, 0x67, 0x00, 0x00, 0x00, 0x06, 0x65, 0x78, 0x70, 0x65, 0x63, 0x74,
    0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x70, 0x69, 0x72, 0x65, 0x73, 0x00, 0x00, 0x00, 0x04, 0x66,
    0x72, 0x6f, 0x6d, 0x00, 0x00, 0x00, 0x04, 0x68, 0x6f, 0x73, 0x74, 0x00, 0x00, 0x00, 0x08, 0x69,
    0x66, 0x2d, 0x6d, 0x61, 0x74, 0x63, 0x68, 0x00, 0x00, 0x00, 0x11, 0x69, 0x66, 0x2d, 0x6d, 0x6f,
    0x64, 0x69, 0x66, 0x69, 0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65, 0x00, 0x00, 0x00, 0x0d,
    0x69, 0x66, 0x2d, 0x6e, 0x6f, 0x6e, 0x65, 0x2d, 0x6d, 0x61, 0x74, 0x63, 0x68, 0x00, 0x00, 0x00,
    0x08, 0x69, 0x66, 0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00, 0x13, 0x69, 0x66, 0x2d,
    0x75, 0x6e, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69, 0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65,
    0x00, 0x00, 0x00, 0x0d, 0x6c, 0x61, 0x73, 0x74, 0x2d, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69, 0x65,
    0x64, 0x00, 0x00, 0x00, 0x08, 0x6c, 0x6f, 0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00,
    0x0c, 0x6d, 0x61, 0x78, 0x2d, 0x66, 0x6f, 0x72, 0x77, 0x61, 0x72, 0x64, 0x73, 0x00, 0x00, 0x00,
    0x06, 0x70, 0x72, 0x61, 0x67, 0x6d, 0x61, 0x00, 0x00, 0x00, 0x12, 0x70, 0x72, 0x6f, 0x78, 0x79,
    0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74, 0x69, 0x63, 0x61, 0x74, 0x65, 0x00, 0x00, 0x00,
    0x13, 0x70, 0x72, 0x6f, 0x78, 0x79, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x61,
    0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x05, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00,
    0x07, 0x72, 0x65, 0x66, 0x65, 0x72, 0x65, 0x72, 0x00, 0x00, 0x00, 0x0b, 0x72, 0x65, 0x74, 0x72,
    0x79, 0x2d, 0x61, 0x66, 0x74, 0x65, 0x72, 0x00, 0x00, 0x00, 0x06, 0x73, 0x65, 0x72, 0x76, 0x65,
    0x72, 0x00, 0x00, 0x00, 0x02, 0x74, 0x65, 0x00, 0x00, 0x00, 0x07, 0x74, 0x72, 0x61, 0x69, 0x6c,
    0x65, 0x72, 0x00, 0x00, 0x00, 0x11, 0x74, 0x72, 0x61, 0x6e, 0x73, 0x66, 0x65, 0x72, 0x2d, 0x65,
    0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x07, 0x75, 0x70, 0x67, 0x72, 0x61,
    0x64, 0x65, 0x00, 0x00, 0x00, 0x0a, 0x75, 0x73, 0x65, 0x72, 0x2d, 0x61, 0x67, 0x65, 0x6e, 0x74,
    0x00, 0x00, 0x00, 0x04, 0x76, 0x61, 0x72, 0x79, 0x00, 0x00, 0x00, 0x03, 0x76, 0x69, 0x61, 0x00,
    0x00, 0x00, 0x07, 0x77, 0x61, 0x72, 0x6e, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10, 0x77, 0x77,
    0x77, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74, 0x69, 0x63, 0x61, 0x74, 0x65, 0x00, 0x00,
    0x00, 0x06, 0x6d, 0x65, 0x74, 0x68, 0x6f, 0x64, 0x00, 0x00, 0x00, 0x03, 0x67, 0x65, 0x74, 0x00,
    0x00, 0x00, 0x06, 0x73, 0x74, 0x61, 0x74, 0x75, 0x73, 0x00, 0x00, 0x00, 0x06, 0x32, 0x30, 0x30,
    0x20, 0x4f, 0x4b, 0x00, 0x00, 0x00, 0x07, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x00, 0x00,
    0x00, 0x08, 0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e, 0x31, 0x00, 0x00, 0x00, 0x03, 0x75, 0x72,
    0x6c, 0x00, 0x00, 0x00, 0x06, 0x70, 0x75, 0x62, 0x6c, 0x69, 0x63, 0x00, 0x00, 0x00, 0x0a, 0x73,
    0x65, 0x74, 0x2d, 0x63, 0x6f, 0x6f, 0x6b, 0x69, 0x65, 0x00, 0x00, 0x00, 0x0a, 0x6b, 0x65, 0x65,
    0x70, 0x2d, 0x61, 0x6c, 0x69, 0x76, 0x65, 0x00, 0x00, 0x00, 0x06, 0x6f, 0x72, 0x69, 0x67, 0x69,
    0x6e, 0x31, 0x30, 0x30, 0x31, 0x30, 0x31, 0x32, 0x30, 0x31, 0x32, 0x30, 0x32, 0x32, 0x30, 0x35,
    0x32, 0x30, 0x36, 0x33, 0x30, 0x30, 0x33, 0x30, 0x32, 0x33, 0x30, 0x33, 0x33, 0x30, 0x34, 0x33,
    0x30, 0x35, 0x33, 0x30, 0x36, 0x33, 0x30, 0x37, 0x34, 0x30, 0x32, 0x34, 0x30, 0x35, 0x34, 0x30,
    0x36, 0x34, 0x30, 0x37, 0x34, 0x30, 0x38, 0x34, 0x30, 0x39, 0x34, 0x31, 0x30, 0x34, 0x31, 0x31,
    0x34, 0x31, 0x32, 0x34, 0x31, 0x33, 0x34, 0x31, 0x34, 0x34, 0x31, 0x35, 0x34, 0x31, 0x36, 0x34,
    0x31, 0x37, 0x35, 0x30, 0x32, 0x35, 0x30, 0x34, 0x35, 0x30, 0x35, 0x32, 0x30, 0x33, 0x20, 0x4e,
    0x6f, 0x6e, 0x2d, 0x41, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x74, 0x61, 0x74, 0x69, 0x76, 0x65,
    0x20, 0x49, 0x6e, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x32, 0x30, 0x34, 0x20,
    0x4e, 0x6f, 0x20, 0x43, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x33, 0x30, 0x31, 0x20, 0x4d, 0x6f,
    0x76, 0x65, 0x64, 0x20, 0x50, 0x65, 0x72, 0x6d, 0x61, 0x6e, 0x65, 0x6e, 0x74, 0x6c, 0x79, 0x34,
    0x30, 0x30, 0x20, 0x42, 0x61, 0x64, 0x20, 0x52, 0x65, 0x71, 0x75, 0x65, 0x73, 0x74, 0x34, 0x30,
    0x31, 0x20, 0x55, 0x6e, 0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x65, 0x64, 0x34, 0x30,
    0x33, 0x20, 0x46, 0x6f, 0x72, 0x62, 0x69, 0x64, 0x64, 0x65, 0x6e, 0x34, 0x30, 0x34, 0x20, 0x4e,
    0x6f, 0x74, 0x20, 0x46, 0x6f, 0x75, 0x6e, 0x64, 0x35, 0x30, 0x30, 0x20, 0x49, 0x6e, 0x74, 0x65,
    0x72, 0x6e, 0x61, 0x6c, 0x20, 0x53, 0x65, 0x72, 0x76, 0x65, 0x72, 0x20, 0x45, 0x72, 0x72, 0x6f,
    0x72, 0x35, 0x30, 0x31, 0x20, 0x4e, 0x6f, 0x74, 0x20, 0x49, 0x6d, 0x70, 0x6c, 0x65, 0x6d, 0x65,
    0x6e, 0x74, 0x65, 0x64, 0x35, 0x30, 0x33, 0x20, 0x53, 0x65, 0x72, 0x76, 0x69, 0x63, 0x65, 0x20,
    0x55, 0x6e, 0x61, 0x76, 0x61, 0x69, 0x6c, 0x61, 0x62, 0x6c, 0x65, 0x4a, 0x61, 0x6e, 0x20, 0x46,
    0x65, 0x62, 0x20, 0x4d, 0x61, 0x72, 0x20, 0x41, 0x70, 0x72, 0x20, 0x4d, 0x61, 0x79, 0x20, 0x4a,
    0x75, 0x6e, 0x20, 0x4a, 0x75, 0x6c, 0x20, 0x41, 0x75, 0x67, 0x20, 0x53, 0x65, 0x70, 0x74, 0x20,
    0x4f, 0x63, 0x74, 0x20, 0x4e, 0x6f, 0x76, 0x20, 0x44, 0x65, 0x63, 0x20, 0x30, 0x30, 0x3a, 0x30,
    0x30, 0x3a, 0x30, 0x30, 0x20, 0x4d, 0x6f, 0x6e, 0x2c, 0x20, 0x54, 0x75, 0x65, 0x2c, 0x20, 0x57,
    0x65, 0x64, 0x2c, 0x20, 0x54, 0x68, 0x75, 0x2c, 0x20, 0x46, 0x72, 0x69, 0x2c, 0x20, 0x53, 0x61,
    0x74, 0x2c, 0x20, 0x53, 0x75, 0x6e, 0x2c, 0x20, 0x47, 0x4d, 0x54, 0x63, 0x68, 0x75, 0x6e, 0x6b,
    0x65, 0x64, 0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x68, 0x74, 0x6d, 0x6c, 0x2c, 0x69, 0x6d, 0x61,
    0x67, 0x65, 0x2f, 0x70, 0x6e, 0x67, 0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65, 0x2f, 0x6a, 0x70, 0x67,
    0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65, 0x2f, 0x67, 0x69, 0x66, 0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69,
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x78, 0x6d, 0x6c, 0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69,
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x78, 0x68, 0x74, 0x6d, 0x6c, 0x2b, 0x78, 0x6d, 0x6c,
    0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x70, 0x6c, 0x61, 0x69, 0x6e, 0x2c, 0x74, 0x65, 0x78, 0x74,
    0x2f, 0x6a, 0x61, 0x76, 0x61, 0x73, 0x63, 0x72, 0x69, 0x70, 0x74, 0x2c, 0x70, 0x75, 0x62, 0x6c,
    0x69, 0x63, 0x70, 0x72, 0x69, 0x76, 0x61, 0x74, 0x65, 0x6d, 0x61, 0x78, 0x2d, 0x61, 0x67, 0x65,
    0x3d, 0x67, 0x7a, 0x69, 0x70, 0x2c, 0x64, 0x65, 0x66, 0x6c, 0x61, 0x74, 0x65, 0x2c, 0x73, 0x64,
    0x63, 0x68, 0x63, 0x68, 0x61, 0x72, 0x73, 0x65, 0x74, 0x3d, 0x75, 0x74, 0x66, 0x2d, 0x38, 0x63,
    0x68, 0x61, 0x72, 0x73, 0x65, 0x74, 0x3d, 0x69, 0x73, 0x6f, 0x2d, 0x38, 0x38, 0x35, 0x39, 0x2d,
    0x31, 0x2c, 0x75, 0x74, 0x66, 0x2d, 0x2c, 0x2a, 0x2c, 0x65, 0x6e, 0x71, 0x3d, 0x30, 0x2e,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert!(DICTIONARY.starts_with(b"\0\0\0\x07options"));
        assert!(DICTIONARY.ends_with(b"charset=utf-8charset=iso-8859-1,utf-,*,enq=0."));
    }

    #[test]
    fn frames_round_trip() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 3,
                associated: 0,
                priority: 2,
                flags: 0,
                headers: vec![1, 2, 3],
            },
            Frame::SynReply {
                stream_id: 3,
                flags: FLAG_FIN,
                headers: vec![9],
            },
            Frame::RstStream {
                stream_id: 5,
                status: RST_CANCEL,
            },
            Frame::Settings {
                flags: 0,
                entries: vec![(0, 7, 65536), (1, 4, 100)],
            },
            Frame::Ping { id: 0xdead_beef },
            Frame::GoAway {
                last_good: 7,
                status: 0,
            },
            Frame::Headers {
                stream_id: 1,
                flags: 0,
                headers: vec![],
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 4096,
            },
            Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: b"hello".to_vec(),
            },
            Frame::Unknown {
                kind: 42,
                flags: 0,
                payload: vec![1],
            },
        ];
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend(encode(f).unwrap());
        }
        let mut at = 0;
        let mut back = Vec::new();
        while let Some((f, n)) = decode(&wire[at..]).unwrap() {
            back.push(f);
            at += n;
        }
        assert_eq!(at, wire.len());
        assert_eq!(back, frames);
        // Partial input asks for more.
        assert_eq!(decode(&wire[..7]).unwrap(), None);
        assert_eq!(decode(&wire[..12]).unwrap(), None);
    }

    #[test]
    fn known_bytes() {
        // kubectl's first frame starts with 80 03 00 01 (SYN_STREAM, SPDY/3).
        let f = encode(&Frame::SynStream {
            stream_id: 1,
            associated: 0,
            priority: 0,
            flags: 0,
            headers: vec![],
        })
        .unwrap();
        assert_eq!(f, hex("800300010000000a00000001000000000000"));
        assert_eq!(
            encode(&Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: vec![]
            })
            .unwrap(),
            hex("0000000301000000")
        );
        assert_eq!(decode(&hex("8002000100000000")), Err(SpdyError::Version(2)));
        assert!(matches!(
            decode(&hex("8003000300000004aaaaaaaa")),
            Err(SpdyError::Short { .. })
        ));
    }

    #[test]
    fn inflates_blocks_compressed_with_the_dictionary() {
        // Two consecutive blocks of one stream, made by zlib (Python's
        // zlib.compressobj(zdict=DICTIONARY), Z_SYNC_FLUSH) as Go's framer
        // makes them: the first names the dictionary (FDICT) and refers into it.
        let a = hex("78f9e3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45a024cc64610024398b209198094adc8c0600000000ffff");
        let b = hex("c2aa15540a2512d209000000ffff");
        let mut d = HeaderDecoder::new();
        let h = d.decode(&a).unwrap();
        assert_eq!(
            h,
            vec![
                ("streamtype".to_string(), "error".to_string()),
                ("port".to_string(), "80".to_string()),
                ("requestid".to_string(), "0".to_string()),
            ]
        );
        let h = d.decode(&b).unwrap();
        assert_eq!(h[0], ("streamtype".to_string(), "data".to_string()));
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn header_blocks_round_trip() {
        let mut e = HeaderEncoder::new();
        let mut d = HeaderDecoder::new();
        for pairs in [
            vec![],
            vec![
                ("streamType", "data"),
                ("port", "8080"),
                ("requestID", "12"),
            ],
            vec![("x", &"y".repeat(5000) as &str)],
        ] {
            let c = e.encode(&pairs).unwrap();
            let got = d.decode(&c).unwrap();
            let want: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect();
            assert_eq!(got, want);
        }
        assert!(parse_header_block(&[0, 0, 0, 1, 0, 0, 0, 9]).is_err());
    }
}
