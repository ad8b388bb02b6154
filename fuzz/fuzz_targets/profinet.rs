//! PROFINET: the real-time frame view with its DCP and RTA (alarm) views, and the
//! connectionless DCE/RPC view of IO-CM, on arbitrary bytes (an Ethernet payload after
//! 0x8892, or a UDP payload to 34964: both views see every input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use otsensor_wire::profinet::{Dcp, Rpc, RtFrame, Rta};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = RtFrame::new_checked(data) {
        let _ = (frame.frame_id(), frame.kind(), frame.payload());
        let _ = (frame.cycle_counter(), frame.data_status(), frame.transfer_status());
        if let Some(io) = frame.cyclic_data() {
            assert!(io.len() <= data.len());
        }
        if let Ok(dcp) = Dcp::new_checked(frame.payload()) {
            let _ = (dcp.service(), dcp.service_type(), dcp.xid(), dcp.response_delay());
            for block in dcp.blocks() {
                assert!(block.data.len() <= data.len());
                let _ = (block.info(), block.value());
            }
            let _ = dcp.get_options().count();
            let _ = (dcp.is_identify_all(), dcp.station());
            let _ = dcp.anomalies().labels().count();
        }
        if let Ok(rta) = Rta::new_checked(frame.payload()) {
            let _ = (rta.dst_endpoint(), rta.src_endpoint(), rta.pdu_type(), rta.version());
            let _ = (rta.send_seq_num(), rta.ack_seq_num(), rta.var_part());
            let _ = (rta.pnio_status(), rta.alarm_type(), rta.anomalies());
        }
    }
    if let Ok(rpc) = Rpc::new_checked(data) {
        let _ = (rpc.packet_type(), rpc.flags1(), rpc.interface_uuid(), rpc.object_uuid());
        let _ = (rpc.activity_uuid(), rpc.pnio_interface(), rpc.pnio_object());
        let _ = (rpc.seqnum(), rpc.opnum(), rpc.pnio_opnum(), rpc.fragment_number());
        assert!(rpc.body().len() <= data.len());
        let _ = (rpc.is_inner_fragment(), rpc.pnio_status(), rpc.record_index());
        for block in rpc.blocks() {
            assert!(block.body.len() <= data.len());
        }
        let _ = rpc.anomalies().labels().count();
    }
});
