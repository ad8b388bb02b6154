//! DNP3 over TCP (IEEE 1815-2012): link-layer frames (9.2: start 0x0564, length,
//! control, destination, source, header CRC, then user data in 16-byte blocks each with
//! its CRC), one transport segment (FIR|FIN) and one application fragment per frame.

use rand::Rng;

use super::{Pdu, Proto};

/// Largest user data in one link frame (length field 255 minus the 5 header octets).
const MAX_USER_DATA: usize = 250;

/// The DNP3 CRC-16 (IEEE 1815-2012, 9.2.4.1.4): polynomial 0x3D65, reflected, initial 0,
/// complemented; sent low byte first.
pub fn crc(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xa6bc
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The link addresses of one master/outstation association.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub master: u16,
    pub outstation: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// READ (FC 1) of event classes 1-3, plus class 0 for an integrity poll.
    ClassPoll { integrity: bool },
    /// WRITE (FC 2) of g80v1 index 7: clear the DEVICE_RESTART IIN bit.
    ClearRestart,
    /// SELECT (FC 3) of one CROB (g12v1).
    Select { index: u16 },
    /// OPERATE (FC 4) of one CROB (g12v1).
    Operate { index: u16 },
    /// COLD_RESTART (FC 13), no objects (IEEE 1815-2012, 4.4.13).
    ColdRestart,
}

impl Request {
    fn function(self) -> u8 {
        match self {
            Request::ClassPoll { .. } => 1,
            Request::ClearRestart => 2,
            Request::Select { .. } => 3,
            Request::Operate { .. } => 4,
            Request::ColdRestart => 13,
        }
    }
}

fn key(function: u8) -> &'static str {
    match function {
        1 => "1",
        2 => "2",
        3 => "3",
        4 => "4",
        129 => "129",
        _ => "other",
    }
}

/// Link control octets (9.2.4.1.3): DIR set from the master, PRM set, function 4
/// (UNCONFIRMED_USER_DATA).
const CONTROL_FROM_MASTER: u8 = 0xc4;
const CONTROL_FROM_OUTSTATION: u8 = 0x44;
/// Transport header / application control: FIR and FIN set.
const FIR_FIN: u8 = 0xc0;

/// Appends one link frame carrying `user_data` (≤ 250 bytes).
fn link_frame(out: &mut Vec<u8>, control: u8, destination: u16, source: u16, user_data: &[u8]) {
    let user_data = user_data.get(..MAX_USER_DATA).unwrap_or(user_data);
    let start = out.len();
    out.extend_from_slice(&[0x05, 0x64, (5 + user_data.len()) as u8, control]);
    out.extend_from_slice(&destination.to_le_bytes());
    out.extend_from_slice(&source.to_le_bytes());
    let header_crc = crc(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&header_crc.to_le_bytes());
    for block in user_data.chunks(16) {
        out.extend_from_slice(block);
        out.extend_from_slice(&crc(block).to_le_bytes());
    }
}

/// A control relay output block (g12v1, qualifier 0x28: one object, 2-byte index prefix):
/// LATCH_ON, count 1, on-time 1000 ms, off-time 0, status 0.
fn crob(objects: &mut Vec<u8>, index: u16) {
    objects.extend_from_slice(&[0x0c, 0x01, 0x28, 0x01, 0x00]);
    objects.extend_from_slice(&index.to_le_bytes());
    objects.extend_from_slice(&[0x03, 0x01]);
    objects.extend_from_slice(&1000u32.to_le_bytes());
    objects.extend_from_slice(&0u32.to_le_bytes());
    objects.push(0x00);
}

/// A master request: transport sequence `transport_seq`, application sequence `app_seq`.
pub fn request(
    out: &mut Vec<u8>,
    link: Link,
    transport_seq: u8,
    app_seq: u8,
    request: Request,
) -> Pdu {
    let mut user = Vec::with_capacity(64);
    user.push(FIR_FIN | (transport_seq & 0x3f));
    user.push(FIR_FIN | (app_seq & 0x0f));
    user.push(request.function());
    match request {
        Request::ClassPoll { integrity } => {
            // g60v2..v4 (class 1-3 data), qualifier 0x06 (all objects).
            user.extend_from_slice(&[0x3c, 0x02, 0x06, 0x3c, 0x03, 0x06, 0x3c, 0x04, 0x06]);
            if integrity {
                user.extend_from_slice(&[0x3c, 0x01, 0x06]);
            }
        }
        Request::ClearRestart => user.extend_from_slice(&[0x50, 0x01, 0x00, 0x07, 0x07, 0x00]),
        Request::Select { index } | Request::Operate { index } => crob(&mut user, index),
        Request::ColdRestart => {}
    }
    link_frame(
        out,
        CONTROL_FROM_MASTER,
        link.outstation,
        link.master,
        &user,
    );
    Pdu {
        proto: Proto::Dnp3,
        function: key(request.function()),
        counts_as_pdu: true,
    }
}

/// The outstation's RESPONSE (FC 129) to `request`, with internal indications `iin1`.
pub fn response<R: Rng>(
    out: &mut Vec<u8>,
    link: Link,
    transport_seq: u8,
    app_seq: u8,
    request: Request,
    iin1: u8,
    rng: &mut R,
) -> Pdu {
    let mut user = Vec::with_capacity(128);
    user.push(FIR_FIN | (transport_seq & 0x3f));
    user.push(FIR_FIN | (app_seq & 0x0f));
    user.extend_from_slice(&[129, iin1, 0x00]);
    match request {
        Request::ClassPoll { integrity: true } => {
            // g1v2 binary inputs with flags 0..15, qualifier 0x00 (1-byte start/stop).
            user.extend_from_slice(&[0x01, 0x02, 0x00, 0x00, 0x0f]);
            for _ in 0..16 {
                user.push(if rng.random_bool(0.5) { 0x81 } else { 0x01 });
            }
            // g30v1 32-bit analog inputs with flag 0..9.
            user.extend_from_slice(&[0x1e, 0x01, 0x00, 0x00, 0x09]);
            for _ in 0..10 {
                user.push(0x01);
                user.extend_from_slice(&rng.random_range(0i32..100_000).to_le_bytes());
            }
        }
        Request::ClassPoll { integrity: false } => {
            let events: u16 = if rng.random_bool(0.4) {
                rng.random_range(1..=6)
            } else {
                0
            };
            if events > 0 {
                // g32v1 analog input events, qualifier 0x28 (2-byte count, 2-byte index).
                user.extend_from_slice(&[0x20, 0x01, 0x28]);
                user.extend_from_slice(&events.to_le_bytes());
                for _ in 0..events {
                    user.extend_from_slice(&rng.random_range(0u16..32).to_le_bytes());
                    user.push(0x01);
                    user.extend_from_slice(&rng.random_range(0i32..100_000).to_le_bytes());
                }
            }
        }
        Request::ClearRestart => {}
        Request::Select { index } | Request::Operate { index } => crob(&mut user, index),
        Request::ColdRestart => {}
    }
    link_frame(
        out,
        CONTROL_FROM_OUTSTATION,
        link.master,
        link.outstation,
        &user,
    );
    Pdu {
        proto: Proto::Dnp3,
        function: key(129),
        counts_as_pdu: true,
    }
}

/// The size in bytes of a link frame whose length field is `length` (header, user-data
/// blocks and their CRCs).
pub fn frame_size(length: u8) -> usize {
    let user = usize::from(length.saturating_sub(5));
    10 + user + 2 * user.div_ceil(16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn crc_matches_known_reset_link_frame() {
        // A well-known link frame: 05 64 05 C0 01 00 00 04, CRC E9 21.
        let header = [0x05, 0x64, 0x05, 0xc0, 0x01, 0x00, 0x00, 0x04];
        assert_eq!(crc(&header).to_le_bytes(), [0xe9, 0x21]);
    }

    #[test]
    fn class_poll_frame_has_consistent_length_and_block_crcs() {
        let link = Link {
            master: 1,
            outstation: 10,
        };
        let mut out = Vec::new();
        let pdu = request(&mut out, link, 3, 5, Request::ClassPoll { integrity: true });
        assert_eq!(pdu.function, "1");
        let length = out.get(2).copied().unwrap_or(0);
        assert_eq!(frame_size(length), out.len());
        // 1 transport + 2 application header + 12 object bytes.
        assert_eq!(length, 5 + 15);
        let block = out.get(10..25).unwrap_or_default();
        assert_eq!(out.get(25..27), Some(&crc(block).to_le_bytes()[..]));
        assert_eq!(out.get(12), Some(&1));
    }

    #[test]
    fn integrity_response_fits_one_frame() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let link = Link {
            master: 1,
            outstation: 10,
        };
        let mut out = Vec::new();
        let pdu = response(
            &mut out,
            link,
            0,
            0,
            Request::ClassPoll { integrity: true },
            0,
            &mut rng,
        );
        assert_eq!(pdu.function, "129");
        let length = out.get(2).copied().unwrap_or(0);
        assert_eq!(frame_size(length), out.len());
        assert_eq!(out.get(12), Some(&129));
    }
}
