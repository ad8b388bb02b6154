//! Config reload against the real XDP program (BPF_PROG_TEST_RUN): a port added by a
//! reload sends that port's frames to user space at once; an invalid file leaves the
//! kernel tables and the policy exactly as they were.
#![cfg(target_os = "linux")]

mod xdp_frames;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use otsensor::config::Config;
use otsensor::ebpf::{XdpFilter, PROGRAM_NAME};
use otsensor::live::xdp_settings;
use otsensor::reload::{Reloader, SharedPolicy};
use xdp_frames::*;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const PLC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const HMI: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 20);

fn run(filter: &mut XdpFilter, frame: &[u8]) -> u32 {
    filter
        .test_run(PROGRAM_NAME, frame, 1)
        .expect("BPF_PROG_TEST_RUN")
        .1
}

/// A fresh mid-flow frame (its own source port, so its own flow) to `dport`: with one
/// first packet per flow, the second frame of the flow is bulk unless the port is
/// industrial.
fn second_frame_verdict(filter: &mut XdpFilter, sport: u16, dport: u16) -> u32 {
    let frame = tcp4(HMI, sport, PLC, dport, TCP_ACK | TCP_PSH, &payload(12));
    run(filter, &frame);
    run(filter, &frame)
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("otsensor-reload-kernel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn reload_rewrites_the_kernel_tables_and_refuses_invalid_files() {
    if !kernel_tests_allowed("reload_rewrites_the_kernel_tables_and_refuses_invalid_files") {
        return;
    }
    let dir = TempDir::new();
    let path = dir.0.join("otsensor.yaml");
    let base = "capture:\n  first_packets_per_flow: 1\n  industrial_tcp_ports: [502]\n";
    std::fs::write(&path, base).expect("write");
    let policy = Config::load(&path)
        .and_then(|c| c.validate())
        .expect("valid config");
    let mut filter = XdpFilter::load(&xdp_settings(&policy)).expect("load the XDP program");
    let shared = SharedPolicy::new(Arc::new(policy));
    shared.attach_kernel_maps(filter.policy_maps().expect("policy maps"));
    let reader = filter.policy_maps().expect("second handle");
    let reloader = Reloader::new(Some(path.clone()), None, Arc::clone(&shared), None);

    assert_eq!(second_frame_verdict(&mut filter, 40001, 5020), XDP_DROP);
    assert_eq!(second_frame_verdict(&mut filter, 40002, 502), XDP_PASS);

    // Add 5020, drop 502, add an EtherType.
    std::fs::write(
        &path,
        "capture:\n  first_packets_per_flow: 1\n  industrial_tcp_ports: [5020]\n  industrial_ethertypes: [0x88b8, 0x88ba]\n",
    )
    .expect("write");
    let outcome = reloader.reload().expect("reload");
    assert!(outcome.kernel_maps_updated);
    assert_eq!(
        outcome.changed,
        vec![
            "capture.industrial_tcp_ports",
            "capture.industrial_ethertypes"
        ]
    );
    assert_eq!(second_frame_verdict(&mut filter, 40003, 5020), XDP_PASS);
    assert_eq!(second_frame_verdict(&mut filter, 40004, 502), XDP_DROP);
    assert_eq!(reader.port_bits(5020).expect("read"), (true, false));
    assert_eq!(reader.port_bits(502).expect("read"), (false, false));
    assert_eq!(reader.ethertypes(), vec![0x88b8, 0x88ba]);
    assert_eq!(shared.generation(), 2);

    // Invalid (port 0 on line 3): refused with the reason, nothing in the kernel moves.
    std::fs::write(
        &path,
        "capture:\n  first_packets_per_flow: 1\n  industrial_tcp_ports: [0]\n",
    )
    .expect("write");
    let error = reloader.reload().expect_err("refused");
    let reason = error.to_string();
    assert!(
        reason.contains("capture.industrial_tcp_ports[0]"),
        "{reason}"
    );
    assert!(reason.contains("line 3"), "{reason}");
    assert_eq!(shared.generation(), 2);
    assert_eq!(shared.current().industrial_tcp_ports, vec![5020]);
    assert_eq!(reader.port_bits(5020).expect("read"), (true, false));
    assert_eq!(reader.ethertypes(), vec![0x88b8, 0x88ba]);
    assert_eq!(second_frame_verdict(&mut filter, 40005, 5020), XDP_PASS);

    // Bulk action: pass instead of drop, live.
    std::fs::write(
        &path,
        "capture:\n  first_packets_per_flow: 1\n  industrial_tcp_ports: [5020]\n  industrial_ethertypes: [0x88b8, 0x88ba]\n  bulk_action: pass\n",
    )
    .expect("write");
    let outcome = reloader.reload().expect("reload");
    assert_eq!(outcome.changed, vec!["capture.bulk_action"]);
    assert_eq!(second_frame_verdict(&mut filter, 40006, 502), XDP_PASS);

    // 63 new EtherTypes beside the 2 in the table would overflow its 64 slots
    // together: the stale ones make room first.
    let many: Vec<String> = (0..63u16).map(|i| format!("{:#06x}", 0x9000 + i)).collect();
    std::fs::write(
        &path,
        format!(
            "capture:\n  first_packets_per_flow: 1\n  industrial_tcp_ports: [5020]\n  industrial_ethertypes: [{}]\n",
            many.join(", ")
        ),
    )
    .expect("write");
    reloader.reload().expect("reload to 63 EtherTypes");
    let table = reader.ethertypes();
    assert_eq!(table.len(), 63);
    assert_eq!(table.first(), Some(&0x9000));
    assert!(!table.contains(&0x88b8));
}
