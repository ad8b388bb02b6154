//! PROFINET frames on EtherType 0x8892 (IEC 61158-6-10): a FrameID, then for DCP the
//! six-field header (ServiceID, ServiceType, Xid, ResponseDelay, DCPDataLength) and
//! option blocks (§4.3.1.3); for RT class 1 cyclic data the IO data and the trailer
//! (CycleCounter, DataStatus, TransferStatus).

use super::{Pdu, Proto};

/// The EtherType of PROFINET real-time frames.
pub const ETHER_TYPE: u16 = 0x8892;
/// DCP Identify multicast address (PROFINET DCP identify, 01:0E:CF:00:00:00).
pub const DCP_IDENTIFY_MAC: [u8; 6] = [0x01, 0x0e, 0xcf, 0x00, 0x00, 0x00];
/// DataStatus of a running provider with valid data (primary, DataValid,
/// ProviderState run, StationProblemIndicator ok).
const DATA_STATUS_OK: u8 = 0x35;

fn pdu(function: &'static str) -> Pdu {
    Pdu {
        proto: Proto::Profinet,
        function,
        counts_as_pdu: true,
    }
}

/// DCP Identify All request (FrameID 0xFEFE, service 5 type 0, option All/All).
pub fn dcp_identify_all(out: &mut Vec<u8>, xid: u32) -> Pdu {
    out.extend_from_slice(&0xfefeu16.to_be_bytes());
    out.extend_from_slice(&[5, 0]);
    out.extend_from_slice(&xid.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // ResponseDelayFactor
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&[0xff, 0xff, 0x00, 0x00]);
    pdu("dcp/5/0")
}

/// What an IO device says of itself in an Identify response.
pub struct Station<'a> {
    pub name_of_station: &'a str,
    pub type_of_station: &'a str,
    pub vendor_id: u16,
    pub device_id: u16,
    pub ip: [u8; 4],
    pub mask: [u8; 4],
}

fn block(out: &mut Vec<u8>, option: u8, suboption: u8, info: u16, value: &[u8]) {
    out.extend_from_slice(&[option, suboption]);
    out.extend_from_slice(&((2 + value.len()) as u16).to_be_bytes());
    out.extend_from_slice(&info.to_be_bytes());
    out.extend_from_slice(value);
    if value.len() % 2 == 1 {
        out.push(0); // blocks are padded to an even length
    }
}

/// DCP Identify response (FrameID 0xFEFF, service 5 type 1) answering `xid`.
pub fn dcp_identify_response(out: &mut Vec<u8>, xid: u32, station: &Station<'_>) -> Pdu {
    let mut blocks = Vec::with_capacity(96);
    block(&mut blocks, 2, 1, 0, station.type_of_station.as_bytes());
    block(&mut blocks, 2, 2, 0, station.name_of_station.as_bytes());
    let mut ids = [0u8; 4];
    ids[..2].copy_from_slice(&station.vendor_id.to_be_bytes());
    ids[2..].copy_from_slice(&station.device_id.to_be_bytes());
    block(&mut blocks, 2, 3, 0, &ids);
    block(&mut blocks, 2, 4, 0, &[0x01, 0x00]); // DeviceRole: IO device
    let mut ip = [0u8; 12];
    ip[..4].copy_from_slice(&station.ip);
    ip[4..8].copy_from_slice(&station.mask);
    block(&mut blocks, 1, 2, 1, &ip); // IP parameter, set
    out.extend_from_slice(&0xfeffu16.to_be_bytes());
    out.extend_from_slice(&[5, 1]);
    out.extend_from_slice(&xid.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(blocks.len() as u16).to_be_bytes());
    out.extend_from_slice(&blocks);
    pdu("dcp/5/1")
}

/// An RT class 1 cyclic frame: `frame_id` (0x8000-0xBBFF), 40 bytes of IO data (the
/// minimum that fills an Ethernet frame, so no padding precedes the trailer), trailer.
pub fn cyclic(out: &mut Vec<u8>, frame_id: u16, cycle_counter: u16, data: &[u8; 40]) -> Pdu {
    out.extend_from_slice(&frame_id.to_be_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&cycle_counter.to_be_bytes());
    out.extend_from_slice(&[DATA_STATUS_OK, 0x00]);
    pdu("pn_rt+pn_io")
}

#[cfg(test)]
mod tests {
    use super::*;
    use otsensor_wire::profinet::{Dcp, FrameKind, RtFrame};

    #[test]
    fn frames_parse_with_the_sensor_view() {
        let mut out = Vec::new();
        dcp_identify_all(&mut out, 7);
        let rt = RtFrame::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rt.kind(), FrameKind::DcpIdentifyRequest);
        let dcp = Dcp::new_checked(rt.payload()).unwrap_or_else(|e| panic!("{e}"));
        assert!(dcp.is_identify_all());
        let mut out = Vec::new();
        let station = Station {
            name_of_station: "et200sp-1",
            type_of_station: "ET 200SP",
            vendor_id: 0x002a,
            device_id: 0x0313,
            ip: [10, 20, 0, 40],
            mask: [255, 255, 255, 0],
        };
        dcp_identify_response(&mut out, 7, &station);
        let rt = RtFrame::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        let dcp = Dcp::new_checked(rt.payload()).unwrap_or_else(|e| panic!("{e}"));
        assert!(dcp.anomalies().is_empty());
        let parsed = dcp.station();
        assert_eq!(parsed.name_of_station, Some(&b"et200sp-1"[..]));
        assert_eq!(parsed.ip, Some([10, 20, 0, 40]));
        let mut out = Vec::new();
        cyclic(&mut out, 0x8001, 256, &[0; 40]);
        let rt = RtFrame::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rt.cycle_counter(), Some(256));
        assert_eq!(rt.data_status(), Some(DATA_STATUS_OK));
    }
}
