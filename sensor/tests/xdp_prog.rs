//! The XDP pre-filter's decisions, run in the kernel with BPF_PROG_TEST_RUN: each frame
//! runs once, so return values, counters and the flow map must match exactly.
#![cfg(target_os = "linux")]

mod xdp_frames;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use otsensor::ebpf::{
    abi, Counter, FlowKey, FlowVerdict, ShedAction, XdpFilter, XdpSettings, PROGRAM_NAME,
};
use xdp_frames::*;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const PLC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const HMI: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 20);
const BACKUP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 30);

/// Runs one frame; returns the XDP action.
fn run(filter: &mut XdpFilter, frame: &[u8]) -> u32 {
    filter
        .test_run(PROGRAM_NAME, frame, 1)
        .expect("BPF_PROG_TEST_RUN")
        .1
}

fn load(settings: &XdpSettings) -> XdpFilter {
    XdpFilter::load(settings).expect("load the XDP program")
}

/// With no AF_XDP socket registered, "to user space" becomes the no-socket action
/// (pass by default), counted as such.
#[test]
fn industrial_traffic_goes_to_user_space() {
    if !kernel_tests_allowed("industrial_traffic_goes_to_user_space") {
        return;
    }
    let mut filter = load(&XdpSettings::default());
    let modbus = tcp4(HMI, 40000, PLC, 502, TCP_ACK | TCP_PSH, &payload(12));
    let modbus_reply = tcp4(PLC, 502, HMI, 40000, TCP_ACK | TCP_PSH, &payload(11));
    let bacnet = udp4(HMI, 47808, PLC, 47808, &payload(20));
    let profinet = ethernet(&[], ETH_PROFINET, &payload(40));
    let qinq_v6_s7 = ethernet(
        &[(ETH_QINQ, 100), (ETH_VLAN, 200)],
        ETH_IPV6,
        &ipv6(
            Ipv6Addr::LOCALHOST,
            Ipv6Addr::UNSPECIFIED,
            IPPROTO_TCP,
            &tcp(50000, 102, TCP_ACK, &payload(10)),
        ),
    );
    for frame in [&modbus, &modbus_reply, &bacnet, &profinet, &qinq_v6_s7] {
        assert_eq!(run(&mut filter, frame), XDP_PASS);
    }
    let c = filter.counters().expect("counters");
    assert_eq!(c.packets(Counter::IndustrialPort), 4);
    assert_eq!(
        c.bytes(Counter::IndustrialPort),
        (modbus.len() + modbus_reply.len() + bacnet.len() + qinq_v6_s7.len()) as u64
    );
    assert_eq!(c.packets(Counter::IndustrialEthertype), 1);
    assert_eq!(c.packets(Counter::NoSocket), 5);
    assert_eq!(c.packets(Counter::Redirected), 0);
    assert_eq!(c.packets(Counter::Bulk), 0);
    // Industrial traffic needs no kernel flow state.
    assert!(filter.flows().expect("flows").is_empty());
    let queues = filter.queue_counters(1).expect("queue counters");
    assert_eq!(queues[0].no_socket, 5);
}

#[test]
fn conversation_starts_then_first_k_then_bulk() {
    if !kernel_tests_allowed("conversation_starts_then_first_k_then_bulk") {
        return;
    }
    let settings = XdpSettings {
        first_packets: 4,
        ..XdpSettings::default()
    };
    let mut filter = load(&settings);
    // SMB between a client and a backup server: a handshake, data both ways, a close.
    let syn = tcp4(HMI, 40000, BACKUP, 445, TCP_SYN, &[]);
    let syn_ack = tcp4(BACKUP, 445, HMI, 40000, TCP_SYN | TCP_ACK, &[]);
    assert_eq!(run(&mut filter, &syn), XDP_PASS);
    assert_eq!(run(&mut filter, &syn_ack), XDP_PASS);
    // Packets 3 and 4 of the flow: still among the first K = 4.
    let to_server = tcp4(HMI, 40000, BACKUP, 445, TCP_ACK, &payload(1000));
    let to_client = tcp4(BACKUP, 445, HMI, 40000, TCP_ACK, &payload(1400));
    assert_eq!(run(&mut filter, &to_server), XDP_PASS);
    assert_eq!(run(&mut filter, &to_client), XDP_PASS);
    // Then bulk: 5 packets to the server and 3 back, dropped in the kernel.
    for _ in 0..5 {
        assert_eq!(run(&mut filter, &to_server), XDP_DROP);
    }
    for _ in 0..3 {
        assert_eq!(run(&mut filter, &to_client), XDP_DROP);
    }
    // FIN and RST are conversation events: always to user space.
    let fin = tcp4(HMI, 40000, BACKUP, 445, TCP_FIN | TCP_ACK, &[]);
    let rst = tcp4(BACKUP, 445, HMI, 40000, TCP_RST, &[]);
    assert_eq!(run(&mut filter, &fin), XDP_PASS);
    assert_eq!(run(&mut filter, &rst), XDP_PASS);

    let c = filter.counters().expect("counters");
    assert_eq!(c.packets(Counter::TcpControl), 4);
    assert_eq!(c.packets(Counter::FlowFirstPackets), 2);
    assert_eq!(c.packets(Counter::Bulk), 8);
    assert_eq!(c.packets(Counter::Dropped), 8);
    assert_eq!(
        c.bytes(Counter::Dropped),
        (5 * to_server.len() + 3 * to_client.len()) as u64
    );
    assert_eq!(c.packets(Counter::NoSocket), 6);

    let flows = filter.flows().expect("flows");
    assert_eq!(flows.len(), 1);
    let (key, state) = flows[0];
    assert_eq!(
        key,
        FlowKey::new(IpAddr::V4(HMI), 40000, IpAddr::V4(BACKUP), 445, IPPROTO_TCP)
    );
    assert_eq!(state.packets_seen, 14);
    // HMI 10.0.0.20 < BACKUP 10.0.0.30: the client is `lo`, the server `hi`.
    assert_eq!(state.server_side, abi::SERVER_HI);
    assert_eq!(state.shed_packets, [5, 3]);
    assert_eq!(
        state.shed_bytes,
        [5 * to_server.len() as u64, 3 * to_client.len() as u64]
    );

    let conversations = filter.conversations().expect("conversations");
    assert_eq!(conversations.len(), 1);
    let (conversation, totals) = conversations.iter().next().expect("one");
    assert_eq!(conversation.client, IpAddr::V4(HMI));
    assert_eq!(conversation.server, IpAddr::V4(BACKUP));
    assert_eq!(conversation.server_port, 445);
    assert_eq!(totals.packets_to_server, 5);
    assert_eq!(totals.packets_to_client, 3);
    assert_eq!(totals.bytes, c.bytes(Counter::Dropped));
}

#[test]
fn user_space_verdicts_keep_or_shed_a_flow() {
    if !kernel_tests_allowed("user_space_verdicts_keep_or_shed_a_flow") {
        return;
    }
    let settings = XdpSettings {
        first_packets: 1,
        bulk_action: ShedAction::Pass,
        ..XdpSettings::default()
    };
    let mut filter = load(&settings);
    // Modbus on a non-standard port: user space recognises it and keeps the flow.
    let odd_modbus = udp4(HMI, 40001, PLC, 5020, &payload(12));
    let video = udp4(HMI, 40002, BACKUP, 9000, &payload(1200));
    assert_eq!(run(&mut filter, &odd_modbus), XDP_PASS); // first packet
    assert_eq!(run(&mut filter, &odd_modbus), XDP_PASS); // bulk, passed by config
    let c = filter.counters().expect("counters");
    assert_eq!(c.packets(Counter::FlowFirstPackets), 1);
    assert_eq!(c.packets(Counter::Bulk), 1);
    assert_eq!(c.packets(Counter::Passed), 1);

    let keep = FlowKey::new(IpAddr::V4(PLC), 5020, IpAddr::V4(HMI), 40001, IPPROTO_UDP);
    filter.set_verdict(&keep, FlowVerdict::Keep).expect("keep");
    let shed = FlowKey::new(
        IpAddr::V4(HMI),
        40002,
        IpAddr::V4(BACKUP),
        9000,
        IPPROTO_UDP,
    );
    filter.set_verdict(&shed, FlowVerdict::Shed).expect("shed");
    for _ in 0..3 {
        run(&mut filter, &odd_modbus);
        run(&mut filter, &video);
    }
    let c = filter.counters().expect("counters");
    assert_eq!(c.packets(Counter::FlowKeep), 3);
    // The shed verdict overrides the first-K rule from the flow's first packet.
    assert_eq!(c.packets(Counter::FlowShed), 3);
    assert_eq!(c.packets(Counter::Passed), 4);
    assert_eq!(c.packets(Counter::NoSocket), 1 + 3);

    filter.clear_verdict(&keep).expect("clear");
    run(&mut filter, &odd_modbus);
    assert_eq!(
        filter.counters().expect("counters").packets(Counter::Bulk),
        2
    );
}

#[test]
fn unusual_frames_are_counted_and_sent_up_never_shed() {
    if !kernel_tests_allowed("unusual_frames_are_counted_and_sent_up_never_shed") {
        return;
    }
    let mut filter = load(&XdpSettings {
        first_packets: 0,
        ..XdpSettings::default()
    });
    let v6a: Ipv6Addr = "fe80::1".parse().expect("addr");
    let v6b: Ipv6Addr = "fe80::2".parse().expect("addr");
    let cases: Vec<(&str, Vec<u8>, Counter)> = vec![
        ("arp", arp(HMI, PLC), Counter::Arp),
        (
            "dhcp",
            udp4(
                Ipv4Addr::UNSPECIFIED,
                68,
                Ipv4Addr::BROADCAST,
                67,
                &payload(240),
            ),
            Counter::Dhcp,
        ),
        (
            "dhcpv6",
            ethernet(
                &[],
                ETH_IPV6,
                &ipv6(v6a, v6b, IPPROTO_UDP, &udp(546, 547, &payload(40))),
            ),
            Counter::Dhcp,
        ),
        (
            "icmp",
            ethernet(
                &[],
                ETH_IPV4,
                &ipv4(HMI, PLC, IPPROTO_ICMP, 0, &payload(16)),
            ),
            Counter::Icmp,
        ),
        (
            "ipv4 first fragment",
            ethernet(
                &[],
                ETH_IPV4,
                &ipv4(HMI, BACKUP, IPPROTO_UDP, 0x2000, &udp(1, 2, &payload(64))),
            ),
            Counter::Fragment,
        ),
        (
            "ipv4 later fragment",
            ethernet(
                &[],
                ETH_IPV4,
                &ipv4(HMI, BACKUP, IPPROTO_UDP, 0x0008, &payload(64)),
            ),
            Counter::Fragment,
        ),
        (
            "ipv6 fragment after hop-by-hop",
            ethernet(
                &[],
                ETH_IPV6,
                &ipv6(
                    v6a,
                    v6b,
                    IPPROTO_HOPOPTS,
                    &ipv6_options(
                        IPPROTO_FRAGMENT,
                        &ipv6_fragment(IPPROTO_UDP, 0, true, &udp(1, 2, &payload(8))),
                    ),
                ),
            ),
            Counter::Fragment,
        ),
        (
            "truncated ipv4",
            ethernet(&[], ETH_IPV4, &[0x45, 0, 0, 40]),
            Counter::Malformed,
        ),
        (
            "ipv4 ihl 4",
            ethernet(&[], ETH_IPV4, &{
                let mut ip = ipv4(HMI, PLC, IPPROTO_TCP, 0, &tcp(1, 2, TCP_ACK, &[]));
                ip[0] = 0x44;
                ip
            }),
            Counter::Malformed,
        ),
        (
            "truncated tcp",
            ethernet(
                &[],
                ETH_IPV4,
                &ipv4(HMI, PLC, IPPROTO_TCP, 0, &[0, 1, 0, 2]),
            ),
            Counter::Malformed,
        ),
        (
            "udp length 3",
            ethernet(
                &[],
                ETH_IPV4,
                &ipv4(HMI, PLC, IPPROTO_UDP, 0, &[0, 1, 0, 2, 0, 3, 0, 0]),
            ),
            Counter::Malformed,
        ),
        (
            "three vlan tags",
            ethernet(
                &[(ETH_QINQ, 1), (ETH_VLAN, 2), (ETH_VLAN, 3)],
                ETH_IPV4,
                &payload(40),
            ),
            Counter::Unparsed,
        ),
        (
            "802.3 llc (stp)",
            ethernet(&[], 0x0026, &payload(38)),
            Counter::Unparsed,
        ),
        (
            "vlan tag cut off",
            ethernet(&[], ETH_VLAN, &[]),
            Counter::Malformed,
        ),
    ];
    for (name, frame, reason) in &cases {
        let before = filter.counters().expect("counters");
        assert_eq!(
            run(&mut filter, frame),
            XDP_PASS,
            "{name}: sent up (no socket: pass)"
        );
        let after = filter.counters().expect("counters");
        assert_eq!(
            after.packets(*reason) - before.packets(*reason),
            1,
            "{name}: reason {reason:?}"
        );
        assert_eq!(
            after.bytes(*reason) - before.bytes(*reason),
            frame.len() as u64,
            "{name}: bytes"
        );
        assert_eq!(
            after.packets(Counter::NoSocket) - before.packets(Counter::NoSocket),
            1,
            "{name}"
        );
    }
    let c = filter.counters().expect("counters");
    assert_eq!(c.packets(Counter::Dropped) + c.packets(Counter::Passed), 0);
    let reasons: u64 = Counter::REASONS.iter().map(|&r| c.packets(r)).sum();
    let verdicts: u64 = Counter::VERDICTS.iter().map(|&v| c.packets(v)).sum();
    assert_eq!(reasons, cases.len() as u64);
    assert_eq!(verdicts, cases.len() as u64);
}

#[test]
fn ipv6_extension_headers_reach_the_transport_header() {
    if !kernel_tests_allowed("ipv6_extension_headers_reach_the_transport_header") {
        return;
    }
    let mut filter = load(&XdpSettings {
        first_packets: 0,
        ..XdpSettings::default()
    });
    let a: Ipv6Addr = "2001:db8::1".parse().expect("addr");
    let b: Ipv6Addr = "2001:db8::2".parse().expect("addr");
    // Hop-by-hop, destination options, atomic fragment, then OPC UA (TCP 4840).
    let opcua = ethernet(
        &[(ETH_VLAN, 7)],
        ETH_IPV6,
        &ipv6(
            a,
            b,
            IPPROTO_HOPOPTS,
            &ipv6_options(
                60,
                &ipv6_options(
                    IPPROTO_FRAGMENT,
                    &ipv6_fragment(
                        IPPROTO_TCP,
                        0,
                        false,
                        &tcp(50000, 4840, TCP_ACK, &payload(30)),
                    ),
                ),
            ),
        ),
    );
    assert_eq!(run(&mut filter, &opcua), XDP_PASS);
    // Seven option headers exceed the parser's bound of six.
    let mut deep = udp(1000, 2000, &payload(8));
    deep = ipv6_options(IPPROTO_UDP, &deep);
    for _ in 0..6 {
        deep = ipv6_options(60, &deep);
    }
    let deep = ethernet(&[], ETH_IPV6, &ipv6(a, b, 60, &deep));
    assert_eq!(run(&mut filter, &deep), XDP_PASS);
    // Bulk UDP behind one extension header: shed (K = 0).
    let bulk = ethernet(
        &[],
        ETH_IPV6,
        &ipv6(
            a,
            b,
            60,
            &ipv6_options(IPPROTO_UDP, &udp(1000, 2000, &payload(100))),
        ),
    );
    assert_eq!(run(&mut filter, &bulk), XDP_DROP);
    let c = filter.counters().expect("counters");
    assert_eq!(c.packets(Counter::IndustrialPort), 1);
    assert_eq!(c.packets(Counter::Unparsed), 1);
    assert_eq!(c.packets(Counter::Bulk), 1);
    let flows = filter.flows().expect("flows");
    assert_eq!(flows.len(), 1);
    assert_eq!(
        flows[0].0,
        FlowKey::new(IpAddr::V6(a), 1000, IpAddr::V6(b), 2000, IPPROTO_UDP)
    );
}

#[test]
fn reloaded_settings_replace_the_tables() {
    if !kernel_tests_allowed("reloaded_settings_replace_the_tables") {
        return;
    }
    let mut filter = load(&XdpSettings {
        first_packets: 0,
        ..XdpSettings::default()
    });
    let modbus = tcp4(HMI, 40000, PLC, 502, TCP_ACK, &payload(12));
    let odd_modbus = tcp4(HMI, 40000, PLC, 5020, TCP_ACK, &payload(12));
    let profinet = ethernet(&[], ETH_PROFINET, &payload(46));
    assert_eq!(run(&mut filter, &modbus), XDP_PASS);
    assert_eq!(run(&mut filter, &odd_modbus), XDP_DROP);
    assert_eq!(run(&mut filter, &profinet), XDP_PASS);

    let mut settings = XdpSettings {
        first_packets: 0,
        ..XdpSettings::default()
    };
    settings.tcp_ports.retain(|&p| p != 502);
    settings.tcp_ports.push(5020);
    settings.ethertypes.retain(|&e| e != ETH_PROFINET);
    filter.apply_settings(&settings).expect("apply");
    assert_eq!(run(&mut filter, &modbus), XDP_DROP);
    assert_eq!(run(&mut filter, &odd_modbus), XDP_PASS);
    let before = filter.counters().expect("counters");
    assert_eq!(run(&mut filter, &profinet), XDP_PASS);
    let after = filter.counters().expect("counters");
    // No longer industrial, but still never shed: unknown ethertypes go up.
    assert_eq!(
        after.packets(Counter::Unparsed) - before.packets(Counter::Unparsed),
        1
    );
    assert_eq!(after.packets(Counter::IndustrialPort), 2);
}

/// BPF_PROG_TEST_RUN cost per packet against the empty program, same run. Ignored by
/// default (timing, not correctness): `cargo test -p otsensor --release --test xdp_prog
/// -- --ignored --nocapture prog_test_run_cost`.
#[test]
#[ignore]
fn prog_test_run_cost() {
    if !kernel_tests_allowed("prog_test_run_cost") {
        return;
    }
    let v6a: Ipv6Addr = "2001:db8::1".parse().expect("addr");
    let v6b: Ipv6Addr = "2001:db8::2".parse().expect("addr");
    let frames: Vec<(&str, Vec<u8>)> = vec![
        (
            "industrial (Modbus/TCP 502, 66 B)",
            tcp4(HMI, 40000, PLC, 502, TCP_ACK | TCP_PSH, &payload(12)),
        ),
        (
            "bulk (TCP 445 established, 1514 B)",
            tcp4(HMI, 40000, BACKUP, 445, TCP_ACK, &payload(1460)),
        ),
        (
            "bulk min-size (UDP 9000, 60 B)",
            udp4(HMI, 40002, BACKUP, 9000, &payload(18)),
        ),
        (
            "VLAN IPv6 industrial (OPC UA TCP 4840, 94 B)",
            ethernet(
                &[(ETH_VLAN, 10)],
                ETH_IPV6,
                &ipv6(
                    v6a,
                    v6b,
                    IPPROTO_TCP,
                    &tcp(50000, 4840, TCP_ACK, &payload(16)),
                ),
            ),
        ),
        (
            "VLAN IPv6 bulk (UDP, 82 B)",
            ethernet(
                &[(ETH_VLAN, 10)],
                ETH_IPV6,
                &ipv6(v6a, v6b, IPPROTO_UDP, &udp(50000, 9000, &payload(16))),
            ),
        ),
    ];
    for (name, frame) in &frames {
        let result = otsensor::ebpf::bench_pair(frame, 1_000_000, 5).expect("bench");
        let program = result.program.as_nanos();
        let empty = result.empty.as_nanos();
        println!(
            "{name}: program {program} ns, empty {empty} ns, difference {} ns (action {})",
            program.saturating_sub(empty),
            result.action
        );
    }
}

/// A frame the parser gives up on is reported through the `events` ring buffer with
/// its reason and first bytes; a flood of them is cut to the per-CPU budget and the
/// rest counted as suppressed. Fragments are normal traffic and report nothing.
#[test]
fn parse_failures_reach_the_event_ring_rate_limited() {
    if !kernel_tests_allowed("parse_failures_reach_the_event_ring_rate_limited") {
        return;
    }
    let mut filter = load(&XdpSettings::default());
    // IPv4 with IHL 4 (a 16-byte header): below the minimum of 5, so malformed.
    let mut bad = tcp4(HMI, 40000, PLC, 502, TCP_ACK, &payload(8));
    if let Some(version_ihl) = bad.get_mut(14) {
        *version_ihl = 0x44;
    }
    assert_eq!(run(&mut filter, &bad), XDP_PASS);
    let mut events = Vec::new();
    filter
        .drain_events(&mut |event| events.push(event))
        .expect("drain the event ring");
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.kind, otsensor::ebpf::KernelEventKind::ParseFailed);
    assert_eq!(event.reason(), "malformed header", "{event:?}");
    assert_eq!(event.frame_len as usize, bad.len());
    assert_eq!(event.snap(), &bad[..64.min(bad.len())]);
    assert_eq!(
        filter
            .counters()
            .expect("counters")
            .packets(Counter::Malformed),
        1
    );

    // A truncated frame: the IPv4 header cut after 10 of its bytes (test runs need at
    // least an Ethernet header).
    assert_eq!(run(&mut filter, &bad[..24]), XDP_PASS);
    let mut events = Vec::new();
    filter
        .drain_events(&mut |event| events.push(event))
        .expect("drain");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].reason(), "truncated header");
    assert_eq!(events[0].snap(), &bad[..24]);

    // A flood within one second: at most the budget per CPU gets through (test runs
    // execute on the calling CPU), the rest is counted.
    let flood = 200u32;
    filter
        .test_run(PROGRAM_NAME, &bad, flood)
        .expect("BPF_PROG_TEST_RUN repeat");
    let mut flooded = 0u64;
    filter.drain_events(&mut |_| flooded += 1).expect("drain");
    let suppressed = filter.suppressed_events().expect("suppressed");
    assert!(
        flooded <= abi::EVENTS_PER_SECOND,
        "{flooded} events from a flood"
    );
    assert_eq!(
        flooded + suppressed,
        u64::from(flood),
        "every flooded failure is either an event or counted as suppressed"
    );
}
