//! The DNS message format shared by mDNS (RFC 6762) and NetBIOS Name Service (RFC
//! 1002 §4.2): header, a walk over the resource records, and names read into a
//! caller's buffer (compression pointers followed a bounded number of times).
//!
//! Follows RFC 1035 §4.1. [`Message::new_checked`] validates the 12-byte header; after
//! it succeeds **no accessor can panic**: every offset is read with `get`, record walks
//! stop at the first record that does not fit, and name reading stops at a bad label,
//! a pointer loop (at most [`MAX_POINTERS`] jumps) or a full output buffer.

use crate::bytes::be16;

pub const HEADER_LEN: usize = 12;
/// Compression pointers followed per name before giving up (a loop guard).
pub const MAX_POINTERS: usize = 16;

/// Why a buffer is not a DNS-format message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
}

/// Record types used here (RFC 1035 §3.2.2, RFC 3596, RFC 2782, RFC 1002 §4.2.1.3).
pub mod rtype {
    pub const A: u16 = 1;
    pub const PTR: u16 = 12;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const NB: u16 = 0x20;
    pub const SRV: u16 = 33;
    pub const NBSTAT: u16 = 0x21;
}

/// One DNS-format message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    buf: &'a [u8],
}

/// One resource record: where its name starts (read with [`Message::name_into`]), its
/// type, class, TTL and data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub name_at: usize,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    /// Offset of the data in the message (names inside it may point backwards).
    pub rdata_at: usize,
    pub rdata: &'a [u8],
    /// Which section: 0 answer, 1 authority, 2 additional.
    pub section: u8,
}

impl<'a> Message<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Message<'a>, Error> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated {
                need: HEADER_LEN,
                have: buf.len(),
            });
        }
        Ok(Message { buf })
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// `dns.id` / `nbns.id`
    pub fn id(&self) -> u16 {
        u16::from_be_bytes([self.buf[0], self.buf[1]])
    }

    /// `dns.flags`
    pub fn flags(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }

    /// QR: a response.
    pub fn is_response(&self) -> bool {
        self.flags() & 0x8000 != 0
    }

    /// The opcode (bits 11-14 of the flags).
    pub fn opcode(&self) -> u8 {
        ((self.flags() >> 11) & 0x0f) as u8
    }

    /// RCODE (low 4 bits of the flags).
    pub fn rcode(&self) -> u8 {
        (self.flags() & 0x0f) as u8
    }

    pub fn question_count(&self) -> u16 {
        u16::from_be_bytes([self.buf[4], self.buf[5]])
    }

    pub fn answer_count(&self) -> u16 {
        u16::from_be_bytes([self.buf[6], self.buf[7]])
    }

    pub fn authority_count(&self) -> u16 {
        u16::from_be_bytes([self.buf[8], self.buf[9]])
    }

    pub fn additional_count(&self) -> u16 {
        u16::from_be_bytes([self.buf[10], self.buf[11]])
    }

    /// Offsets of the questions' names (with their type after them), in order.
    pub fn questions(&self) -> Questions<'a> {
        Questions {
            buf: self.buf,
            at: HEADER_LEN,
            left: self.question_count(),
        }
    }

    /// The answer, authority and additional records, in order.
    pub fn records(&self) -> Records<'a> {
        let mut questions = self.questions();
        for _ in questions.by_ref() {}
        Records {
            buf: self.buf,
            at: questions.at,
            left: [
                self.answer_count(),
                self.authority_count(),
                self.additional_count(),
            ],
            ok: questions.left == 0,
        }
    }

    /// Reads the name at `at` as dotted text into `out` (no trailing dot); the text
    /// written, cut when `out` is full. `None` when the name is malformed.
    pub fn name_into<'o>(&self, at: usize, out: &'o mut [u8]) -> Option<&'o [u8]> {
        let written = read_name(self.buf, at, out)?.0;
        out.get(..written)
    }

    /// The raw first label of the name at `at` (NetBIOS: the 32-byte encoded name).
    pub fn first_label(&self, at: usize) -> Option<&'a [u8]> {
        let mut at = at;
        for _ in 0..MAX_POINTERS {
            let len = *self.buf.get(at)?;
            match len {
                0 => return Some(&[]),
                1..=63 => return self.buf.get(at + 1..at + 1 + usize::from(len)),
                0xc0..=0xff => {
                    let low = *self.buf.get(at + 1)?;
                    at = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                }
                _ => return None,
            }
        }
        None
    }
}

/// Reads a name: (bytes written to `out`, offset just after the name in the record).
fn read_name(buf: &[u8], start: usize, out: &mut [u8]) -> Option<(usize, usize)> {
    let mut at = start;
    let mut end = None;
    let mut written = 0;
    let mut jumps = 0;
    loop {
        let len = *buf.get(at)?;
        match len {
            0 => {
                return Some((written, end.unwrap_or(at + 1)));
            }
            1..=63 => {
                let label = buf.get(at + 1..at + 1 + usize::from(len))?;
                if written > 0 && written < out.len() {
                    out[written] = b'.';
                    written += 1;
                }
                let room = out.len().saturating_sub(written);
                let n = label.len().min(room);
                if let (Some(dst), Some(src)) = (out.get_mut(written..written + n), label.get(..n))
                {
                    dst.copy_from_slice(src);
                }
                written += n;
                at += 1 + usize::from(len);
            }
            0xc0..=0xff => {
                let low = *buf.get(at + 1)?;
                if end.is_none() {
                    end = Some(at + 2);
                }
                jumps += 1;
                if jumps > MAX_POINTERS {
                    return None;
                }
                at = usize::from(u16::from_be_bytes([len & 0x3f, low]));
            }
            // 0x40 and 0x80 label types are reserved (RFC 6891 §5).
            _ => return None,
        }
    }
}

/// Skips a name: the offset after it.
fn skip_name(buf: &[u8], at: usize) -> Option<usize> {
    read_name(buf, at, &mut []).map(|(_, next)| next)
}

/// The walk over the question section: each question's name offset and its type.
#[derive(Clone, Debug)]
pub struct Questions<'a> {
    buf: &'a [u8],
    at: usize,
    left: u16,
}

impl Iterator for Questions<'_> {
    /// (name offset, qtype)
    type Item = (usize, u16);

    fn next(&mut self) -> Option<(usize, u16)> {
        if self.left == 0 {
            return None;
        }
        let name_at = self.at;
        let after = skip_name(self.buf, name_at)?;
        let qtype = be16(self.buf, after)?;
        be16(self.buf, after + 2)?;
        self.at = after + 4;
        self.left -= 1;
        Some((name_at, qtype))
    }
}

/// The walk over the resource records.
#[derive(Clone, Debug)]
pub struct Records<'a> {
    buf: &'a [u8],
    at: usize,
    left: [u16; 3],
    ok: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        if !self.ok {
            return None;
        }
        let section = self.left.iter().position(|&n| n > 0)?;
        let name_at = self.at;
        let parsed = (|| {
            let after = skip_name(self.buf, name_at)?;
            let rtype = be16(self.buf, after)?;
            let class = be16(self.buf, after + 2)?;
            let ttl_hi = be16(self.buf, after + 4)?;
            let ttl_lo = be16(self.buf, after + 6)?;
            let len = usize::from(be16(self.buf, after + 8)?);
            let rdata_at = after + 10;
            let rdata = self.buf.get(rdata_at..rdata_at + len)?;
            Some(Record {
                name_at,
                rtype,
                class,
                ttl: (u32::from(ttl_hi) << 16) | u32::from(ttl_lo),
                rdata_at,
                rdata,
                section: section as u8,
            })
        })();
        match parsed {
            Some(record) => {
                self.at = record.rdata_at + record.rdata.len();
                self.left[section] -= 1;
                Some(record)
            }
            None => {
                self.ok = false;
                None
            }
        }
    }
}

impl Records<'_> {
    /// False once a record did not fit (the walk stopped early).
    pub fn complete(&self) -> bool {
        self.ok && self.left == [0; 3]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_with_pointers_and_loops() {
        // Header, then "a.local" at 12, then a pointer to it at 21.
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(b"\x01a\x05local\x00");
        buf.extend_from_slice(&[0xc0, 12]);
        // A pointer to itself at 23.
        buf.extend_from_slice(&[0xc0, 23]);
        let message = Message::new_checked(&buf).unwrap();
        let mut out = [0u8; 32];
        assert_eq!(message.name_into(12, &mut out), Some(&b"a.local"[..]));
        assert_eq!(message.name_into(21, &mut out), Some(&b"a.local"[..]));
        assert_eq!(message.name_into(23, &mut out), None);
        // A name cut to the output buffer.
        let mut small = [0u8; 4];
        assert_eq!(message.name_into(12, &mut small), Some(&b"a.lo"[..]));
        assert!(Message::new_checked(&[0; 11]).is_err());
    }
}
