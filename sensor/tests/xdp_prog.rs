//! Classification by the XDP pre-filter, run in the kernel with BPF_PROG_TEST_RUN.
#![cfg(target_os = "linux")]

use otsensor::ebpf::{Counter, XdpFilter, XdpSettings, PROGRAM_NAME};

#[test]
fn smoke() {
    let mut filter = XdpFilter::load(&XdpSettings::default()).expect("load");
    let frame = [0u8; 64];
    let (d, action) = filter.test_run(PROGRAM_NAME, &frame, 1).expect("run");
    println!("{d:?} {action}");
    let c = filter.counters().expect("counters");
    for (k, v) in c.iter() { println!("{} {:?}", k.label(), v); }
    assert_eq!(c.packets(Counter::Unparsed), 1);
}
