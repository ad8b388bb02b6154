//! IEC 61850 GOOSE: `Goose::new_checked`, the BER walk of the goosePdu and its
//! allData element count on arbitrary bytes (an Ethernet payload after 0x88B8).
#![no_main]

use libfuzzer_sys::fuzz_target;
use otsensor_wire::goose::Goose;

fuzz_target!(|data: &[u8]| {
    if let Ok(goose) = Goose::new_checked(data) {
        assert!(goose.as_bytes().len() <= data.len());
        let _ = (
            goose.appid(),
            goose.length(),
            goose.reserved1(),
            goose.reserved2(),
        );
        let _ = (goose.simulation_bit(), goose.apdu());
        let _ = goose.anomalies().labels().count();
        if let Some(pdu) = goose.pdu() {
            let _ = (pdu.gocb_ref, pdu.dat_set, pdu.go_id, pdu.t_seconds());
            let _ = (pdu.st_num, pdu.sq_num, pdu.conf_rev, pdu.simulation);
            if let Some(count) = pdu.data_count() {
                assert!(count <= pdu.all_data.map_or(0, <[u8]>::len));
            }
        }
    }
});
