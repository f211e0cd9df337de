//! Byte-level encoding of the WAL and snapshot files (the format itself is
//! documented at the top of `lib.rs`).
//!
//! Owns: file headers, frames (length + CRC-32), record payloads, and
//! decoding them back with precise errors. Must not touch: the file system
//! (callers read and write whole buffers) or the store's state rules.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::crc32;
use crate::state::Mutation;
use crate::{Event, EventType, KeyValue};

pub(crate) const HEADER_LEN: usize = 16;
pub(crate) const WAL_MAGIC: [u8; 8] = *b"MINIKWAL";
pub(crate) const SNAPSHOT_MAGIC: [u8; 8] = *b"MINIKSNP";
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// Frames longer than this are treated as garbage when reading.
pub(crate) const MAX_FRAME_PAYLOAD: usize = 128 << 20;

const OP_PUT: u8 = 0x01;
const OP_DELETE: u8 = 0x02;
const OP_COMPACT: u8 = 0x03;
const OP_SNAP_META: u8 = 0x10;
const OP_SNAP_KV: u8 = 0x11;
const OP_SNAP_EVENT: u8 = 0x12;
const OP_SNAP_END: u8 = 0x1F;

pub(crate) fn file_header(magic: [u8; 8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&magic);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

pub(crate) fn check_header(buf: &[u8], magic: [u8; 8]) -> Result<(), String> {
    if buf.len() < HEADER_LEN {
        return Err(format!(
            "file is {} bytes, shorter than its header",
            buf.len()
        ));
    }
    if buf[..8] != magic {
        return Err(format!(
            "bad magic {:?}, expected {:?}",
            String::from_utf8_lossy(&buf[..8]),
            String::from_utf8_lossy(&magic)
        ));
    }
    let version = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads version {FORMAT_VERSION}"
        ));
    }
    Ok(())
}

/// Appends one frame whose payload is produced by `f`.
fn frame(out: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    f(out);
    let len = (out.len() - start - FRAME_HEADER_LEN) as u32;
    let len_bytes = len.to_le_bytes();
    let crc = crc32::update(
        crc32::update(0, &len_bytes),
        &out[start + FRAME_HEADER_LEN..],
    );
    out[start..start + 4].copy_from_slice(&len_bytes);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Result of reading the frame at some offset.
#[derive(Debug)]
pub(crate) enum FrameRead<'a> {
    /// A valid frame and the offset of the next one.
    Frame(&'a [u8], usize),
    /// Clean end of the buffer.
    End,
    /// Unreadable (short, absurd length, or checksum mismatch).
    Bad(String),
}

pub(crate) fn read_frame(buf: &[u8], off: usize) -> FrameRead<'_> {
    let rest = &buf[off..];
    if rest.is_empty() {
        return FrameRead::End;
    }
    if rest.len() < FRAME_HEADER_LEN {
        return FrameRead::Bad(format!(
            "{} bytes left, less than a frame header",
            rest.len()
        ));
    }
    let len_bytes = [rest[0], rest[1], rest[2], rest[3]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len == 0 || len > MAX_FRAME_PAYLOAD {
        return FrameRead::Bad(format!("implausible frame length {len}"));
    }
    if rest.len() < FRAME_HEADER_LEN + len {
        return FrameRead::Bad(format!(
            "frame of {len} bytes but only {} left",
            rest.len() - FRAME_HEADER_LEN
        ));
    }
    let payload = &rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
    if crc32::update(crc32::update(0, &len_bytes), payload) != crc {
        return FrameRead::Bad("checksum mismatch".to_string());
    }
    FrameRead::Frame(payload, off + FRAME_HEADER_LEN + len)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_kv(out: &mut Vec<u8>, kv: &KeyValue) {
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    put_bytes(out, kv.key.as_bytes());
    put_bytes(out, &kv.value);
}

/// Appends the WAL frame for `m`.
pub(crate) fn encode_mutation(out: &mut Vec<u8>, m: &Mutation) {
    frame(out, |p| match m {
        Mutation::Put {
            rev,
            create_rev,
            key,
            value,
        } => {
            p.push(OP_PUT);
            p.extend_from_slice(&rev.to_le_bytes());
            p.extend_from_slice(&create_rev.to_le_bytes());
            put_bytes(p, key.as_bytes());
            put_bytes(p, value);
        }
        Mutation::Delete { rev, key } => {
            p.push(OP_DELETE);
            p.extend_from_slice(&rev.to_le_bytes());
            put_bytes(p, key.as_bytes());
        }
        Mutation::Compact { rev } => {
            p.push(OP_COMPACT);
            p.extend_from_slice(&rev.to_le_bytes());
        }
    });
}

/// Reads fields out of one payload.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() - self.pos < n {
            return Err(format!(
                "record truncated: wanted {n} bytes at {}, have {}",
                self.pos,
                self.buf.len() - self.pos
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(self.u64()? as i64)
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn key(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "key is not UTF-8".to_string())
    }
    fn value(&mut self) -> Result<Arc<[u8]>, String> {
        Ok(Arc::from(self.bytes()?))
    }
    fn kv(&mut self) -> Result<KeyValue, String> {
        let create_revision = self.i64()?;
        let mod_revision = self.i64()?;
        let key = self.key()?;
        let value = self.value()?;
        Ok(KeyValue {
            key,
            value,
            create_revision,
            mod_revision,
        })
    }
    fn finish(&self) -> Result<(), String> {
        if self.pos != self.buf.len() {
            return Err(format!(
                "{} trailing bytes after record",
                self.buf.len() - self.pos
            ));
        }
        Ok(())
    }
}

pub(crate) fn decode_mutation(payload: &[u8]) -> Result<Mutation, String> {
    let mut c = Cursor::new(payload);
    let m = match c.u8()? {
        OP_PUT => {
            let rev = c.i64()?;
            let create_rev = c.i64()?;
            let key = c.key()?;
            let value = c.value()?;
            Mutation::Put {
                rev,
                create_rev,
                key,
                value,
            }
        }
        OP_DELETE => {
            let rev = c.i64()?;
            let key = c.key()?;
            Mutation::Delete { rev, key }
        }
        OP_COMPACT => Mutation::Compact { rev: c.i64()? },
        op => return Err(format!("unknown WAL record type {op:#04x}")),
    };
    c.finish()?;
    Ok(m)
}

/// Everything a snapshot holds.
pub(crate) struct SnapshotData {
    pub rev: i64,
    pub compacted: i64,
    pub kv: BTreeMap<String, KeyValue>,
    pub history: VecDeque<Event>,
}

/// Encodes a snapshot, handing each chunk (a few frames) to `sink` so the
/// whole snapshot never needs to be in memory twice.
pub(crate) fn encode_snapshot<E>(
    rev: i64,
    compacted: i64,
    kv: &BTreeMap<String, KeyValue>,
    history: &VecDeque<Event>,
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    const CHUNK: usize = 1 << 20;
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    buf.extend_from_slice(&file_header(SNAPSHOT_MAGIC));
    frame(&mut buf, |p| {
        p.push(OP_SNAP_META);
        p.extend_from_slice(&rev.to_le_bytes());
        p.extend_from_slice(&compacted.to_le_bytes());
        p.extend_from_slice(&(kv.len() as u64).to_le_bytes());
        p.extend_from_slice(&(history.len() as u64).to_le_bytes());
    });
    for v in kv.values() {
        frame(&mut buf, |p| {
            p.push(OP_SNAP_KV);
            put_kv(p, v);
        });
        if buf.len() >= CHUNK {
            sink(&buf)?;
            buf.clear();
        }
    }
    for ev in history {
        frame(&mut buf, |p| {
            p.push(OP_SNAP_EVENT);
            p.push(match ev.event_type {
                EventType::Put => 0,
                EventType::Delete => 1,
            });
            put_kv(p, &ev.kv);
            match &ev.prev {
                Some(prev) => {
                    p.push(1);
                    put_kv(p, prev);
                }
                None => p.push(0),
            }
        });
        if buf.len() >= CHUNK {
            sink(&buf)?;
            buf.clear();
        }
    }
    frame(&mut buf, |p| p.push(OP_SNAP_END));
    sink(&buf)
}

/// Decodes a whole snapshot file. Snapshots are written to a temporary
/// file and renamed into place, so any defect is corruption, never a torn
/// write.
pub(crate) fn decode_snapshot(buf: &[u8]) -> Result<SnapshotData, String> {
    check_header(buf, SNAPSHOT_MAGIC)?;
    let mut off = HEADER_LEN;
    let next = |off: &mut usize| -> Result<&[u8], String> {
        match read_frame(buf, *off) {
            FrameRead::Frame(p, n) => {
                let at = *off;
                *off = n;
                if p.is_empty() {
                    return Err(format!("empty frame at offset {at}"));
                }
                Ok(p)
            }
            FrameRead::End => Err(format!("snapshot ends early at offset {off}")),
            FrameRead::Bad(why) => Err(format!("bad frame at offset {off}: {why}")),
        }
    };
    let meta = next(&mut off)?;
    let mut c = Cursor::new(meta);
    if c.u8()? != OP_SNAP_META {
        return Err("snapshot does not start with its meta record".into());
    }
    let rev = c.i64()?;
    let compacted = c.i64()?;
    let kv_count = c.u64()?;
    let history_count = c.u64()?;
    c.finish()?;

    let mut kv = BTreeMap::new();
    for _ in 0..kv_count {
        let mut c = Cursor::new(next(&mut off)?);
        if c.u8()? != OP_SNAP_KV {
            return Err("expected a key-value record".into());
        }
        let v = c.kv()?;
        c.finish()?;
        kv.insert(v.key.clone(), v);
    }
    let mut history = VecDeque::new();
    for _ in 0..history_count {
        let mut c = Cursor::new(next(&mut off)?);
        if c.u8()? != OP_SNAP_EVENT {
            return Err("expected an event record".into());
        }
        let event_type = match c.u8()? {
            0 => EventType::Put,
            1 => EventType::Delete,
            t => return Err(format!("unknown event type {t}")),
        };
        let mut ev_kv = c.kv()?;
        // Share the value with the live map when the event is the key's current state.
        if let Some(cur) = kv.get(&ev_kv.key) {
            if cur.mod_revision == ev_kv.mod_revision && event_type == EventType::Put {
                ev_kv.value = cur.value.clone();
            }
        }
        let prev = match c.u8()? {
            0 => None,
            1 => Some(c.kv()?),
            t => return Err(format!("bad prev flag {t}")),
        };
        c.finish()?;
        history.push_back(Event {
            event_type,
            kv: ev_kv,
            prev,
        });
    }
    let mut c = Cursor::new(next(&mut off)?);
    if c.u8()? != OP_SNAP_END {
        return Err("expected the end record".into());
    }
    c.finish()?;
    if off != buf.len() {
        return Err(format!("{} bytes after the end record", buf.len() - off));
    }
    Ok(SnapshotData {
        rev,
        compacted,
        kv,
        history,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutation_roundtrip_and_damage_detection() {
        let ms = vec![
            Mutation::Put {
                rev: 2,
                create_rev: 2,
                key: "/registry/pods/default/a".into(),
                value: Arc::from(&b"{\"x\":1}"[..]),
            },
            Mutation::Delete {
                rev: 3,
                key: "/registry/pods/default/a".into(),
            },
            Mutation::Compact { rev: 3 },
        ];
        let mut buf = Vec::new();
        for m in &ms {
            encode_mutation(&mut buf, m);
        }
        let mut off = 0;
        let mut got = Vec::new();
        while let FrameRead::Frame(p, n) = read_frame(&buf, off) {
            got.push(decode_mutation(p).unwrap());
            off = n;
        }
        assert_eq!(got, ms);
        assert_eq!(off, buf.len());

        // Every single-bit flip anywhere in the first frame is detected.
        let first_len = match read_frame(&buf, 0) {
            FrameRead::Frame(_, n) => n,
            other => panic!("{other:?}"),
        };
        for i in 0..first_len * 8 {
            let mut b = buf.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(
                matches!(read_frame(&b, 0), FrameRead::Bad(_)),
                "flip of bit {i} not detected"
            );
        }
        // Truncation anywhere inside a frame is detected.
        for cut in 1..first_len {
            assert!(matches!(read_frame(&buf[..cut], 0), FrameRead::Bad(_)));
        }
        // A zero-filled tail (file size extended, data never written) is detected.
        assert!(matches!(read_frame(&[0u8; 64], 0), FrameRead::Bad(_)));
    }

    #[test]
    fn snapshot_roundtrip() {
        let a = KeyValue {
            key: "/a".into(),
            value: Arc::from(&b"1"[..]),
            create_revision: 2,
            mod_revision: 3,
        };
        let mut kv = BTreeMap::new();
        kv.insert(a.key.clone(), a.clone());
        let mut history = VecDeque::new();
        history.push_back(Event {
            event_type: EventType::Put,
            kv: a.clone(),
            prev: Some(KeyValue {
                mod_revision: 2,
                value: Arc::from(&b"0"[..]),
                ..a.clone()
            }),
        });
        let mut out = Vec::new();
        encode_snapshot::<()>(3, 2, &kv, &history, |b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        let s = decode_snapshot(&out).unwrap();
        assert_eq!((s.rev, s.compacted), (3, 2));
        assert_eq!(s.kv, kv);
        assert_eq!(s.history.len(), 1);
        assert_eq!(s.history[0].kv, a);
        assert_eq!(s.history[0].prev.as_ref().unwrap().mod_revision, 2);
        assert!(decode_snapshot(&out[..out.len() - 1]).is_err());
        let mut bad = out.clone();
        bad[HEADER_LEN + 12] ^= 0xff;
        assert!(decode_snapshot(&bad).is_err());
    }
}
