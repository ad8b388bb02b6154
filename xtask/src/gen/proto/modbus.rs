//! Modbus/TCP ADUs (Modbus Messaging on TCP/IP Implementation Guide v1.0b, 3.1.3: MBAP
//! header; Modbus Application Protocol v1.1b3, section 6: function codes).

use rand::Rng;

use super::{Pdu, Proto};

/// A request the generator issues, with what the server answers to it.
#[derive(Clone, Copy, Debug)]
pub enum Request {
    ReadCoils {
        address: u16,
        quantity: u16,
    },
    ReadHoldingRegisters {
        address: u16,
        quantity: u16,
    },
    ReadInputRegisters {
        address: u16,
        quantity: u16,
    },
    WriteSingleCoil {
        address: u16,
        on: bool,
    },
    WriteSingleRegister {
        address: u16,
        value: u16,
    },
    WriteMultipleRegisters {
        address: u16,
        quantity: u16,
    },
    /// Read Device Identification (FC 43 / MEI 14), basic category.
    ReadDeviceIdentification,
}

impl Request {
    pub fn function_code(self) -> u8 {
        match self {
            Request::ReadCoils { .. } => 1,
            Request::ReadHoldingRegisters { .. } => 3,
            Request::ReadInputRegisters { .. } => 4,
            Request::WriteSingleCoil { .. } => 5,
            Request::WriteSingleRegister { .. } => 6,
            Request::WriteMultipleRegisters { .. } => 16,
            Request::ReadDeviceIdentification => 43,
        }
    }
}

/// The ground-truth key: the decimal function code without the exception bit.
fn key(function_code: u8) -> &'static str {
    match function_code & 0x7f {
        1 => "1",
        3 => "3",
        4 => "4",
        5 => "5",
        6 => "6",
        16 => "16",
        43 => "43",
        _ => "other",
    }
}

/// Appends an MBAP header (transaction id, protocol 0, length, unit id) and `pdu`.
fn adu(out: &mut Vec<u8>, transaction: u16, unit: u8, pdu: &[u8]) -> Pdu {
    out.extend_from_slice(&transaction.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
    out.push(unit);
    out.extend_from_slice(pdu);
    Pdu {
        proto: Proto::Modbus,
        function: key(pdu.first().copied().unwrap_or(0)),
        counts_as_pdu: true,
    }
}

pub fn request<R: Rng>(
    out: &mut Vec<u8>,
    transaction: u16,
    unit: u8,
    request: Request,
    rng: &mut R,
) -> Pdu {
    let mut pdu = Vec::with_capacity(260);
    pdu.push(request.function_code());
    match request {
        Request::ReadCoils { address, quantity }
        | Request::ReadHoldingRegisters { address, quantity }
        | Request::ReadInputRegisters { address, quantity } => {
            pdu.extend_from_slice(&address.to_be_bytes());
            pdu.extend_from_slice(&quantity.to_be_bytes());
        }
        Request::WriteSingleCoil { address, on } => {
            pdu.extend_from_slice(&address.to_be_bytes());
            pdu.extend_from_slice(if on { &[0xff, 0x00] } else { &[0x00, 0x00] });
        }
        Request::WriteSingleRegister { address, value } => {
            pdu.extend_from_slice(&address.to_be_bytes());
            pdu.extend_from_slice(&value.to_be_bytes());
        }
        Request::WriteMultipleRegisters { address, quantity } => {
            pdu.extend_from_slice(&address.to_be_bytes());
            pdu.extend_from_slice(&quantity.to_be_bytes());
            pdu.push((quantity * 2) as u8);
            for _ in 0..quantity {
                pdu.extend_from_slice(&rng.random::<u16>().to_be_bytes());
            }
        }
        Request::ReadDeviceIdentification => {
            // MEI type 14, Read Device ID code 01 (basic stream), object id 00.
            pdu.extend_from_slice(&[0x0e, 0x01, 0x00]);
        }
    }
    adu(out, transaction, unit, &pdu)
}

/// The normal response to `request`, with the identity strings of the answering device.
pub fn response<R: Rng>(
    out: &mut Vec<u8>,
    transaction: u16,
    unit: u8,
    request: Request,
    identity: (&str, &str, &str),
    rng: &mut R,
) -> Pdu {
    let mut pdu = Vec::with_capacity(260);
    pdu.push(request.function_code());
    match request {
        Request::ReadCoils { quantity, .. } => {
            let bytes = quantity.div_ceil(8);
            pdu.push(bytes as u8);
            for _ in 0..bytes {
                pdu.push(rng.random());
            }
        }
        Request::ReadHoldingRegisters { quantity, .. }
        | Request::ReadInputRegisters { quantity, .. } => {
            pdu.push((quantity * 2) as u8);
            for _ in 0..quantity {
                pdu.extend_from_slice(&rng.random_range(0u16..4000).to_be_bytes());
            }
        }
        Request::WriteSingleCoil { address, on } => {
            pdu.extend_from_slice(&address.to_be_bytes());
            pdu.extend_from_slice(if on { &[0xff, 0x00] } else { &[0x00, 0x00] });
        }
        Request::WriteSingleRegister { address, value } => {
            pdu.extend_from_slice(&address.to_be_bytes());
            pdu.extend_from_slice(&value.to_be_bytes());
        }
        Request::WriteMultipleRegisters { address, quantity } => {
            pdu.extend_from_slice(&address.to_be_bytes());
            pdu.extend_from_slice(&quantity.to_be_bytes());
        }
        Request::ReadDeviceIdentification => {
            // MEI 14, code 01, conformity level 0x81 (basic, stream and individual
            // access), more follows 0, next object 0, three objects (6.21).
            pdu.extend_from_slice(&[0x0e, 0x01, 0x81, 0x00, 0x00, 0x03]);
            for (id, value) in [identity.0, identity.1, identity.2].iter().enumerate() {
                pdu.push(id as u8);
                pdu.push(value.len() as u8);
                pdu.extend_from_slice(value.as_bytes());
            }
        }
    }
    adu(out, transaction, unit, &pdu)
}

/// An exception response (section 7): the function code with the high bit set.
pub fn exception(out: &mut Vec<u8>, transaction: u16, unit: u8, request: Request, code: u8) -> Pdu {
    adu(
        out,
        transaction,
        unit,
        &[request.function_code() | 0x80, code],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn read_holding_registers_request_and_response_bytes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let read = Request::ReadHoldingRegisters {
            address: 0x006b,
            quantity: 3,
        };
        let mut out = Vec::new();
        let pdu = request(&mut out, 1, 17, read, &mut rng);
        assert_eq!(out, [0, 1, 0, 0, 0, 6, 17, 3, 0x00, 0x6b, 0x00, 0x03]);
        assert_eq!(pdu.function, "3");
        out.clear();
        response(&mut out, 1, 17, read, ("a", "b", "c"), &mut rng);
        // MBAP length = unit + fc + byte count + 6 data bytes.
        assert_eq!(out.get(4..9), Some(&[0, 9, 17, 3, 6][..]));
        assert_eq!(out.len(), 6 + 9);
    }

    #[test]
    fn exception_keeps_function_key_without_exception_bit() {
        let mut out = Vec::new();
        let read = Request::ReadInputRegisters {
            address: 0,
            quantity: 1,
        };
        let pdu = exception(&mut out, 9, 1, read, 2);
        assert_eq!(out, [0, 9, 0, 0, 0, 3, 1, 0x84, 2]);
        assert_eq!(pdu.function, "4");
    }
}
