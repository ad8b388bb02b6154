//! IEC 61850-8-1 GOOSE APDUs (annex A `IECGoosePdu`, §C.2.3 header): APPID, length,
//! Reserved 1 (bit 15: simulation, edition 2), Reserved 2, then the BER-encoded
//! `goosePdu` [APPLICATION 1] with its context-tagged fields in order.

use super::ber::{push_tlv, unsigned};
use super::{Pdu, Proto};

/// The EtherType of GOOSE.
pub const ETHER_TYPE: u16 = 0x88b8;

/// One publication of a control block.
#[derive(Clone, Copy, Debug)]
pub struct Publication<'a> {
    pub appid: u16,
    pub gocb_ref: &'a str,
    pub dat_set: &'a str,
    pub go_id: &'a str,
    /// Seconds since 1970 of the last state change.
    pub t_seconds: u32,
    pub st_num: u32,
    pub sq_num: u32,
    /// The `simulation` (edition 1: `test`) field and the Reserved 1 bit.
    pub simulation: bool,
    pub conf_rev: u32,
    /// The data set's booleans.
    pub values: &'a [bool],
}

/// Appends the GOOSE APDU (the Ethernet payload after the EtherType).
pub fn publication(out: &mut Vec<u8>, p: &Publication<'_>) -> Pdu {
    let mut data = Vec::with_capacity(3 * p.values.len());
    for &value in p.values {
        push_tlv(&mut data, 0x83, &[u8::from(value)]);
    }
    let mut fields = Vec::with_capacity(160);
    push_tlv(&mut fields, 0x80, p.gocb_ref.as_bytes());
    push_tlv(&mut fields, 0x81, &unsigned(2_000)); // timeAllowedtoLive, ms
    push_tlv(&mut fields, 0x82, p.dat_set.as_bytes());
    push_tlv(&mut fields, 0x83, p.go_id.as_bytes());
    let mut t = [0u8; 8];
    t[..4].copy_from_slice(&p.t_seconds.to_be_bytes());
    t[7] = 0x0a; // quality: 10 bits of fraction accuracy
    push_tlv(&mut fields, 0x84, &t);
    push_tlv(&mut fields, 0x85, &unsigned(p.st_num));
    push_tlv(&mut fields, 0x86, &unsigned(p.sq_num));
    push_tlv(&mut fields, 0x87, &[u8::from(p.simulation)]);
    push_tlv(&mut fields, 0x88, &unsigned(p.conf_rev));
    push_tlv(&mut fields, 0x89, &[0]); // ndsCom
    push_tlv(&mut fields, 0x8a, &unsigned(p.values.len() as u32));
    push_tlv(&mut fields, 0xab, &data);
    let mut apdu = Vec::with_capacity(fields.len() + 4);
    push_tlv(&mut apdu, 0x61, &fields);
    out.extend_from_slice(&p.appid.to_be_bytes());
    out.extend_from_slice(&((8 + apdu.len()) as u16).to_be_bytes());
    let reserved1: u16 = if p.simulation { 0x8000 } else { 0 };
    out.extend_from_slice(&reserved1.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&apdu);
    Pdu {
        proto: Proto::Goose,
        function: "goose",
        counts_as_pdu: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otsensor_wire::goose::Goose;

    #[test]
    fn publications_parse_with_the_sensor_view() {
        let mut out = Vec::new();
        let p = Publication {
            appid: 0x0101,
            gocb_ref: "IED1LD0/LLN0$GO$gcbTrip",
            dat_set: "IED1LD0/LLN0$dsTrip",
            go_id: "IED1_Trip",
            t_seconds: 1_709_532_000,
            st_num: 200,
            sq_num: 7,
            simulation: false,
            conf_rev: 3,
            values: &[true, false, false],
        };
        publication(&mut out, &p);
        let goose = Goose::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        assert!(goose.anomalies().is_empty(), "{:?}", goose.anomalies());
        let pdu = goose.pdu().unwrap_or_else(|| panic!("no pdu"));
        assert_eq!(pdu.gocb_ref, Some(p.gocb_ref.as_bytes()));
        assert_eq!(
            (pdu.st_num, pdu.sq_num, pdu.conf_rev),
            (Some(200), Some(7), Some(3))
        );
        assert_eq!(pdu.simulation, Some(false));
        let mut out = Vec::new();
        publication(
            &mut out,
            &Publication {
                simulation: true,
                ..p
            },
        );
        let goose = Goose::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        assert!(goose.simulation_bit());
        assert!(goose.anomalies().is_empty(), "{:?}", goose.anomalies());
    }
}
