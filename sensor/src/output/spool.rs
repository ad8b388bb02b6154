//! The NATS outbox: every fleet message is appended here before it is published and
//! removed once JetStream acknowledged it, so messages leave in order, survive a bus
//! outage and a sensor restart, and a crash re-sends at most what was unacknowledged
//! (JetStream and the hub drop the duplicates).
//!
//! **Bounded, alerts last.** The file holds at most `max_bytes` of live messages. When a
//! new message does not fit, the oldest heartbeat goes first, then the oldest device or
//! baseline change (state the sensor re-sends when it changes again), and only when
//! nothing else is left the oldest alert. Every drop is counted per class
//! ([`Spool::dropped`]).
//!
//! Format: a sequence of records `[u32 len][u64 seq][u8 kind][u16 n][subject][u16 m]
//! [signature][payload]` (little endian, `len` counts what follows it). A torn record
//! at the end (a crash mid-write) is cut off when the spool is opened. Removed records
//! stay in the file as dead bytes until the spool empties (the file is truncated) or
//! they outweigh the live ones (the file is rewritten).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::fleet::Kind;

/// One message waiting for the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spooled {
    pub seq: u64,
    pub kind: Kind,
    pub subject: String,
    pub signature: String,
    pub payload: Vec<u8>,
}

/// Drop classes, in the order they are sacrificed.
const CLASSES: usize = 3;

fn class(kind: Kind) -> usize {
    match kind {
        Kind::Heartbeat => 0,
        Kind::Device | Kind::Baseline => 1,
        Kind::Alert => 2,
    }
}

fn kind_byte(kind: Kind) -> u8 {
    match kind {
        Kind::Alert => 0,
        Kind::Device => 1,
        Kind::Baseline => 2,
        Kind::Heartbeat => 3,
    }
}

fn kind_of(byte: u8) -> Option<Kind> {
    Some(match byte {
        0 => Kind::Alert,
        1 => Kind::Device,
        2 => Kind::Baseline,
        3 => Kind::Heartbeat,
        _ => return None,
    })
}

/// Dead bytes that trigger a rewrite (when they also outweigh the live ones).
const COMPACT_AT: u64 = 4 * 1024 * 1024;
/// Largest record accepted when reading the file back.
const MAX_RECORD: usize = 1024 * 1024;

#[derive(Clone, Copy, Debug)]
struct Entry {
    seq: u64,
    kind: Kind,
    offset: u64,
    len: u64,
    live: bool,
}

/// Messages dropped to keep the bound, per class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub heartbeats: u64,
    /// Device and baseline changes.
    pub state: u64,
    pub alerts: u64,
}

/// The on-disk outbox.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
    index: VecDeque<Entry>,
    /// Per class, an index into `index` before which no live entry of it remains.
    cursor: [usize; CLASSES],
    live: u64,
    live_bytes: u64,
    dead_bytes: u64,
    end: u64,
    max_bytes: u64,
    dropped: [u64; CLASSES],
}

fn encode(message: &Spooled) -> io::Result<Vec<u8>> {
    let too_long = || io::Error::new(io::ErrorKind::InvalidInput, "spool record field too long");
    let subject_len = u16::try_from(message.subject.len()).map_err(|_| too_long())?;
    let signature_len = u16::try_from(message.signature.len()).map_err(|_| too_long())?;
    let body =
        8 + 1 + 2 + message.subject.len() + 2 + message.signature.len() + message.payload.len();
    if body > MAX_RECORD {
        return Err(too_long());
    }
    let mut out = Vec::with_capacity(4 + body);
    out.extend_from_slice(&u32::try_from(body).map_err(|_| too_long())?.to_le_bytes());
    out.extend_from_slice(&message.seq.to_le_bytes());
    out.push(kind_byte(message.kind));
    out.extend_from_slice(&subject_len.to_le_bytes());
    out.extend_from_slice(message.subject.as_bytes());
    out.extend_from_slice(&signature_len.to_le_bytes());
    out.extend_from_slice(message.signature.as_bytes());
    out.extend_from_slice(&message.payload);
    Ok(out)
}

/// Decodes the part after the length; `None` for a corrupt record.
fn decode(body: &[u8]) -> Option<Spooled> {
    let seq = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
    let kind = kind_of(*body.get(8)?)?;
    let n = usize::from(u16::from_le_bytes(body.get(9..11)?.try_into().ok()?));
    let subject = std::str::from_utf8(body.get(11..11 + n)?).ok()?.to_owned();
    let at = 11 + n;
    let m = usize::from(u16::from_le_bytes(body.get(at..at + 2)?.try_into().ok()?));
    let signature = std::str::from_utf8(body.get(at + 2..at + 2 + m)?)
        .ok()?
        .to_owned();
    let payload = body.get(at + 2 + m..)?.to_vec();
    Some(Spooled {
        seq,
        kind,
        subject,
        signature,
        payload,
    })
}

impl Spool {
    /// Opens (or creates) `dir/outbox.spool` and reads back what an earlier run left.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("outbox.spool");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut spool = Spool {
            path,
            file,
            index: VecDeque::new(),
            cursor: [0; CLASSES],
            live: 0,
            live_bytes: 0,
            dead_bytes: 0,
            end: 0,
            max_bytes: max_bytes.max(1),
            dropped: [0; CLASSES],
        };
        spool.load()?;
        Ok(spool)
    }

    fn load(&mut self) -> io::Result<()> {
        let mut data = Vec::new();
        (&self.file).read_to_end(&mut data)?;
        let mut at = 0usize;
        let mut loaded = Vec::new();
        while let Some(len_bytes) = data.get(at..at + 4) {
            let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]])
                as usize;
            let Some(body) = data.get(at + 4..at + 4 + len) else {
                break;
            };
            let Some(message) = decode(body) else {
                break;
            };
            loaded.push((at as u64, (4 + len) as u64, message.seq, message.kind));
            at += 4 + len;
        }
        // Cut a torn or corrupt tail.
        self.file.set_len(at as u64)?;
        self.end = at as u64;
        for (offset, len, seq, kind) in loaded {
            self.make_room(kind, len);
            self.index.push_back(Entry {
                seq,
                kind,
                offset,
                len,
                live: true,
            });
            self.live += 1;
            self.live_bytes += len;
        }
        Ok(())
    }

    /// Frees room for a message of `len` bytes of `kind`; false when the new message
    /// itself is the one to drop.
    fn make_room(&mut self, kind: Kind, len: u64) -> bool {
        let new_class = class(kind);
        while self.live_bytes + len > self.max_bytes {
            let mut freed = false;
            for c in 0..CLASSES {
                if let Some(position) = self.oldest_live(c) {
                    self.kill(position);
                    self.dropped[c] += 1;
                    freed = true;
                    break;
                }
                if c == new_class {
                    self.dropped[c] += 1;
                    return false;
                }
            }
            if !freed {
                self.dropped[new_class] += 1;
                return false;
            }
        }
        true
    }

    fn oldest_live(&mut self, c: usize) -> Option<usize> {
        let start = self.cursor[c];
        let found = self
            .index
            .iter()
            .enumerate()
            .skip(start)
            .find(|(_, e)| e.live && class(e.kind) == c)
            .map(|(i, _)| i);
        self.cursor[c] = found.unwrap_or(self.index.len());
        found
    }

    fn kill(&mut self, position: usize) {
        if let Some(entry) = self.index.get_mut(position) {
            if entry.live {
                entry.live = false;
                self.live -= 1;
                self.live_bytes -= entry.len;
                self.dead_bytes += entry.len;
            }
        }
    }

    /// Appends a message (dropping older ones of lower class to stay in the bound).
    pub fn push(&mut self, message: &Spooled) -> io::Result<()> {
        let record = encode(message)?;
        let len = record.len() as u64;
        if !self.make_room(message.kind, len) {
            return Ok(());
        }
        self.file.write_all_at(&record, self.end)?;
        self.index.push_back(Entry {
            seq: message.seq,
            kind: message.kind,
            offset: self.end,
            len,
            live: true,
        });
        self.end += len;
        self.live += 1;
        self.live_bytes += len;
        Ok(())
    }

    /// The first `n` live messages, oldest first.
    pub fn peek(&self, n: usize) -> io::Result<Vec<Spooled>> {
        let mut out = Vec::with_capacity(n.min(self.live as usize));
        for entry in self.index.iter().filter(|e| e.live).take(n) {
            let mut buf = vec![0u8; entry.len as usize];
            self.file.read_exact_at(&mut buf, entry.offset)?;
            let message = buf.get(4..).and_then(decode).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "corrupt spool record")
            })?;
            out.push(message);
        }
        Ok(out)
    }

    /// Removes the first `n` live messages (they were acknowledged).
    pub fn pop(&mut self, n: usize) -> io::Result<()> {
        let mut removed = 0;
        while removed < n {
            let Some(entry) = self.index.pop_front() else {
                break;
            };
            for c in &mut self.cursor {
                *c = c.saturating_sub(1);
            }
            if entry.live {
                removed += 1;
                self.live -= 1;
                self.live_bytes -= entry.len;
            } else {
                self.dead_bytes -= entry.len;
            }
        }
        // Dead entries at the head are garbage too.
        while self.index.front().is_some_and(|e| !e.live) {
            if let Some(entry) = self.index.pop_front() {
                self.dead_bytes -= entry.len;
                for c in &mut self.cursor {
                    *c = c.saturating_sub(1);
                }
            }
        }
        if self.index.is_empty() {
            self.file.set_len(0)?;
            self.end = 0;
            self.dead_bytes = 0;
            self.cursor = [0; CLASSES];
        } else {
            let head_dead = self.index.front().map_or(0, |e| e.offset);
            if head_dead + self.dead_bytes > COMPACT_AT
                && head_dead + self.dead_bytes > self.live_bytes
            {
                self.compact()?;
            }
        }
        Ok(())
    }

    /// Rewrites the file with the live records only.
    fn compact(&mut self) -> io::Result<()> {
        let tmp = self.path.with_extension("spool.tmp");
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        let mut index = VecDeque::with_capacity(self.live as usize);
        let mut at = 0u64;
        for entry in self.index.iter().filter(|e| e.live) {
            let mut buf = vec![0u8; entry.len as usize];
            self.file.read_exact_at(&mut buf, entry.offset)?;
            out.write_all(&buf)?;
            index.push_back(Entry {
                offset: at,
                ..*entry
            });
            at += entry.len;
        }
        out.flush()?;
        drop(out);
        std::fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        self.index = index;
        self.end = at;
        self.dead_bytes = 0;
        self.cursor = [0; CLASSES];
        Ok(())
    }

    /// Live messages.
    pub fn len(&self) -> u64 {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Live bytes (the bounded quantity).
    pub fn bytes(&self) -> u64 {
        self.live_bytes
    }

    /// The highest sequence number held, live or not.
    pub fn max_seq(&self) -> Option<u64> {
        self.index.iter().map(|e| e.seq).max()
    }

    pub fn dropped(&self) -> Dropped {
        Dropped {
            heartbeats: self.dropped[0],
            state: self.dropped[1],
            alerts: self.dropped[2],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64, kind: Kind, size: usize) -> Spooled {
        Spooled {
            seq,
            kind,
            subject: format!("otsensor.fleet.a.s1.{}", kind.name()),
            signature: "ab".repeat(32),
            payload: vec![b'x'; size],
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("otsensor-spool-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn seqs(spool: &Spool) -> Vec<u64> {
        spool
            .peek(usize::MAX)
            .expect("peek")
            .iter()
            .map(|m| m.seq)
            .collect()
    }

    #[test]
    fn messages_leave_in_order_and_survive_a_restart() {
        let dir = scratch("order");
        let mut spool = Spool::open(&dir, 1 << 20).expect("open");
        for seq in 1..=5 {
            spool.push(&message(seq, Kind::Alert, 10)).expect("push");
        }
        spool.pop(2).expect("pop");
        assert_eq!(seqs(&spool), vec![3, 4, 5]);
        drop(spool);
        let mut again = Spool::open(&dir, 1 << 20).expect("reopen");
        // Popped records are re-read too (harmless: de-duplicated downstream), in order.
        assert_eq!(seqs(&again)[..], [1, 2, 3, 4, 5][..]);
        assert_eq!(again.peek(1).expect("peek")[0], message(1, Kind::Alert, 10));
        again.pop(5).expect("pop");
        assert!(again.is_empty());
        assert_eq!(
            std::fs::metadata(dir.join("outbox.spool"))
                .expect("meta")
                .len(),
            0
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_bound_drops_heartbeats_then_state_and_alerts_last() {
        let dir = scratch("bound");
        let one = encode(&message(0, Kind::Alert, 100)).expect("encode").len() as u64;
        let mut spool = Spool::open(&dir, one * 4).expect("open");
        spool.push(&message(1, Kind::Heartbeat, 100)).expect("push");
        spool.push(&message(2, Kind::Alert, 100)).expect("push");
        spool.push(&message(3, Kind::Device, 100)).expect("push");
        spool.push(&message(4, Kind::Heartbeat, 100)).expect("push");
        // Full: an alert evicts heartbeat 1, the next one heartbeat 4, then device 3.
        for seq in 5..=7 {
            spool.push(&message(seq, Kind::Alert, 100)).expect("push");
        }
        assert_eq!(seqs(&spool), vec![2, 5, 6, 7]);
        // Only alerts left: a heartbeat is refused, an alert evicts the oldest alert.
        spool.push(&message(8, Kind::Heartbeat, 100)).expect("push");
        spool.push(&message(9, Kind::Alert, 100)).expect("push");
        assert_eq!(seqs(&spool), vec![5, 6, 7, 9]);
        assert!(spool.bytes() <= one * 4);
        assert_eq!(
            spool.dropped(),
            Dropped {
                heartbeats: 3,
                state: 1,
                alerts: 1
            }
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_tail_is_cut_and_dead_bytes_are_compacted() {
        let dir = scratch("torn");
        let mut spool = Spool::open(&dir, 1 << 30).expect("open");
        spool.push(&message(1, Kind::Alert, 10)).expect("push");
        drop(spool);
        let path = dir.join("outbox.spool");
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&[200, 0, 0, 0, 1, 2]).expect("write");
        drop(file);
        let mut spool = Spool::open(&dir, 1 << 30).expect("reopen");
        assert_eq!(seqs(&spool), vec![1]);
        spool.pop(1).expect("pop");
        // Many popped messages with one left: the file is rewritten, not grown forever.
        for seq in 2..=3000 {
            spool.push(&message(seq, Kind::Device, 4096)).expect("push");
        }
        spool.pop(2998).expect("pop");
        assert_eq!(seqs(&spool), vec![3000]);
        assert!(std::fs::metadata(&path).expect("meta").len() < 64 * 1024);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
