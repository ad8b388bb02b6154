//! End to end with the real kernel: two network namespaces joined by a 2-queue veth
//! pair; the XDP pre-filter and one AF_XDP socket per queue on the receiving end (a
//! re-exec of this test binary under `nsenter`); tcpreplay sends a generated capture
//! from the other end. Exact counts are asserted: every frame meant for user space
//! arrives byte for byte, bulk is dropped in the kernel and accounted per conversation,
//! and per queue the kernel's redirects equal receptions plus socket drops.
//!
//! A guard removes the namespaces, the capture file and any receiver process even when
//! an assertion fails; afterwards the test checks that nothing was left behind.
#![cfg(target_os = "linux")]

mod xdp_frames;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use otsensor::capture::afxdp::{QueueSocket, SocketSettings, SocketStats, Waker};
use otsensor::capture::live::LiveCapture;
use otsensor::capture::{LinkType, Packet};
use otsensor::ebpf::{AttachMode, Counter, XdpFilter, XdpSettings};
use serde_json::{json, Value};
use xdp_frames::*;
use xtask::testlab;

const QUEUES: u32 = 2;
const FIRST_PACKETS: u32 = 4;

const PLC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const HMI: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 20);
const BACKUP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 30);

// ---- the receiving side (runs inside the namespace) -------------------------------

/// Not a test on its own: the receiver process `xdp_netns_end_to_end` starts with
/// `nsenter`. It attaches the filter, opens a socket per queue, prints `READY`, receives
/// until a line arrives on stdin, then prints `RESULT {json}`.
#[test]
#[ignore = "helper process of xdp_netns_end_to_end"]
fn receiver_process() {
    let Ok(ifname) = std::env::var("OTS_XDP_RECEIVER") else {
        return;
    };
    let mode = match std::env::var("OTS_XDP_MODE").as_deref() {
        Ok("generic") => AttachMode::Generic,
        Ok("auto") => AttachMode::DriverOrGeneric,
        _ => AttachMode::Driver,
    };
    let settings = XdpSettings {
        first_packets: FIRST_PACKETS,
        mode,
        ..XdpSettings::default()
    };
    let mut filter = XdpFilter::load(&settings).expect("load");
    if std::env::var("OTS_XDP_LEGACY").is_ok() {
        // Simulates a crashed run of the old kind: attached through netlink, then killed.
        filter
            .attach_legacy_netlink(&ifname)
            .expect("legacy attach");
        let ifindex = filter.attached_ifindex().expect("attached");
        let prog_id = otsensor::ebpf::xdp_attachment(ifindex)
            .expect("query")
            .map(|a| a.prog_id)
            .unwrap_or(0);
        println!("READY {}", json!({"prog_id": prog_id}));
        std::io::stdout().flush().expect("flush");
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    if std::env::var("OTS_XDP_SOURCE").as_deref() == Ok("live") {
        drop(filter);
        live_receiver(&ifname, &settings);
        return;
    }
    let report = filter.attach(&ifname).expect("attach");
    let ifindex = filter.attached_ifindex().expect("attached");
    let prog_id = otsensor::ebpf::xdp_attachment(ifindex)
        .expect("query")
        .map(|a| a.prog_id)
        .unwrap_or(0);
    let queues = otsensor::capture::afxdp::rx_queue_count(&ifname).expect("queue count");
    assert_eq!(queues, QUEUES, "RX queues reported for the veth");
    let mut sockets: Vec<QueueSocket> = (0..queues)
        .map(|q| QueueSocket::open(&ifname, q, &SocketSettings::default()).expect("socket"))
        .collect();
    for socket in &sockets {
        filter
            .register_socket(socket.queue(), socket)
            .expect("register");
    }
    let modes: Vec<String> = sockets.iter().map(|s| format!("{:?}", s.mode())).collect();
    println!(
        "READY {}",
        json!({"mode": format!("{:?}", report.mode), "fell_back": report.fell_back_to_generic,
               "replaced": report.replaced_stale_program,
               "prog_id": prog_id, "socket_modes": modes})
    );
    std::io::stdout().flush().expect("flush");

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            stop.store(true, Ordering::SeqCst);
        });
    }
    let mut frames: Vec<(u32, String)> = Vec::new();
    loop {
        let mut got = 0;
        for socket in sockets.iter_mut() {
            let queue = socket.queue();
            got += socket.recv_batch(&mut |packet: Packet<'_>| {
                frames.push((queue, hex(packet.data)));
            });
        }
        if got == 0 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    let stats: Vec<SocketStats> = sockets
        .iter()
        .map(|socket| socket.stats().expect("stats"))
        .collect();
    let result = findings(&filter, &stats, frames);
    // The program goes before the sockets it redirects to.
    filter.detach().expect("detach");
    drop(filter);
    drop(sockets);
    println!("RESULT {result}");
    std::io::stdout().flush().expect("flush");
}

/// The receiver through `LiveCapture`, as `otsensor run` uses it: the sockets are taken
/// out (here read by this one thread, parked in poll(2) with a waker when idle), the
/// program is detached before the last drain, and the books are kept through the
/// capture's statistics handles.
fn live_receiver(ifname: &str, settings: &XdpSettings) {
    let mut live = LiveCapture::start(ifname, settings, &SocketSettings::default())
        .expect("start live capture");
    let attach = live.attach_report();
    let ifindex = live.filter().attached_ifindex().expect("attached");
    let prog_id = otsensor::ebpf::xdp_attachment(ifindex)
        .expect("query")
        .map(|a| a.prog_id)
        .unwrap_or(0);
    println!(
        "READY {}",
        json!({"mode": format!("{:?}", attach.mode), "fell_back": attach.fell_back_to_generic,
               "replaced": attach.replaced_stale_program, "prog_id": prog_id})
    );
    std::io::stdout().flush().expect("flush");
    let mut sockets = live.take_sockets();
    assert_eq!(sockets.len(), QUEUES as usize);
    assert!(
        live.take_sockets().is_empty(),
        "sockets are handed out once"
    );
    let waker = Arc::new(Waker::new().expect("eventfd"));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (stop, waker) = (Arc::clone(&stop), Arc::clone(&waker));
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            stop.store(true, Ordering::SeqCst);
            waker.wake();
        });
    }
    let mut frames = Vec::new();
    let mut detached = false;
    loop {
        let mut got = 0;
        for socket in sockets.iter_mut() {
            got += socket.recv_batch(&mut |packet: Packet<'_>| {
                assert_eq!(packet.link, LinkType::Ethernet);
                assert_eq!(packet.wire_len as usize, packet.data.len());
                frames.push((u32::MAX, hex(packet.data)));
            });
        }
        if got > 0 {
            continue;
        }
        if detached {
            break;
        }
        if stop.load(Ordering::SeqCst) {
            // Detach first: then the rings hold all there will be, and one more empty
            // round ends the drain.
            live.detach().expect("detach");
            detached = true;
            continue;
        }
        // Only queue 0's socket is waited on; the timeout covers the other queue.
        let _ = sockets[0].wait_or_woken(&waker, Duration::from_millis(20));
    }
    let stats = live.socket_stats().expect("socket stats");
    let result = findings(live.filter(), &stats, frames);
    for books in live.queue_accounting().expect("queue accounting") {
        assert_eq!(books.unaccounted, 0, "{books:?}");
        assert_eq!(books.redirected, books.received, "{books:?}");
    }
    drop(live);
    drop(sockets);
    println!("RESULT {result}");
    std::io::stdout().flush().expect("flush");
}

/// The receiver's findings: frames received, kernel counters, per-queue accounting,
/// conversations.
fn findings(filter: &XdpFilter, sockets: &[SocketStats], frames: Vec<(u32, String)>) -> Value {
    let counters = filter.counters().expect("counters");
    let counters: BTreeMap<&str, [u64; 2]> = counters
        .iter()
        .map(|(c, v)| (c.label(), [v.packets, v.bytes]))
        .collect();
    let queue_counters = filter.queue_counters(QUEUES).expect("queue counters");
    let queues: Vec<Value> = sockets
        .iter()
        .zip(&queue_counters)
        .enumerate()
        .map(|(queue, (stats, kernel))| {
            json!({"queue": queue, "redirected": kernel.redirected,
                   "no_socket": kernel.no_socket, "received": stats.received_packets,
                   "kernel_drops": stats.kernel_drops(),
                   "unaccounted": stats.unaccounted(kernel.redirected) as i64})
        })
        .collect();
    let conversations: Vec<Value> = filter
        .conversations()
        .expect("conversations")
        .into_iter()
        .map(|(k, t)| {
            json!({"client": k.client.to_string(), "server": k.server.to_string(),
                   "protocol": k.protocol, "server_port": k.server_port,
                   "packets_to_server": t.packets_to_server, "bytes_to_server": t.bytes_to_server,
                   "packets_to_client": t.packets_to_client, "bytes_to_client": t.bytes_to_client,
                   "flows": t.flows})
        })
        .collect();
    json!({"frames": frames, "counters": counters, "queues": queues,
           "conversations": conversations})
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- the test -----------------------------------------------------------------------

/// Namespaces, links, files and processes of one run; all removed on drop.
/// The shared lab (two namespaces, the veth pair, a scratch directory) and the
/// receivers; everything removed on drop.
struct Lab {
    lab: testlab::Lab,
    tx_ns: String,
    rx_ns: String,
    tx_if: String,
    rx_if: String,
    pcap: PathBuf,
    children: Vec<Child>,
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    testlab::run(program, args).map_err(|e| format!("{e:#}"))
}

impl Lab {
    fn create() -> Lab {
        let mut lab = testlab::Lab::new("x").expect("lab");
        let pair = lab.pair(QUEUES).expect("lab setup");
        let pcap = lab.dir().join("traffic.pcap");
        Lab {
            lab,
            tx_ns: pair.tx_ns,
            rx_ns: pair.rx_ns,
            tx_if: pair.tx_if,
            rx_if: pair.rx_if,
            pcap,
            children: Vec::new(),
        }
    }

    /// Starts the receiver in the receiving namespace and waits for its READY line.
    fn start_receiver(&mut self, mode: &str) -> (ChildStdin, mpsc::Receiver<String>, Value) {
        let exe = std::env::current_exe().expect("test binary path");
        let mut command = Command::new("nsenter");
        if mode == "legacy" {
            command.env("OTS_XDP_LEGACY", "1");
        }
        if mode == "live" {
            command.env("OTS_XDP_SOURCE", "live");
        }
        let mut child = command
            .arg(format!("--net=/run/netns/{}", self.rx_ns))
            .arg(exe)
            .args([
                "--exact",
                "receiver_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("OTS_XDP_RECEIVER", &self.rx_if)
            .env("OTS_XDP_MODE", mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn receiver");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        self.children.push(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = wait_for(&rx, "READY ", Duration::from_secs(30));
        (stdin, rx, ready)
    }

    fn kill_receivers(&mut self) {
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Receivers first; dropping `lab` then deletes the namespaces (and with them
        // the veth pair) and the capture file.
        self.kill_receivers();
    }
}

fn wait_for(lines: &mpsc::Receiver<String>, prefix: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                // libtest may print "test receiver_process ... " before it, unterminated.
                if let Some(start) = line.find(prefix) {
                    let body = &line[start + prefix.len()..];
                    return serde_json::from_str(body).expect("receiver JSON");
                }
            }
            Err(e) => panic!("receiver never printed {prefix:?}: {e}"),
        }
    }
}

/// What the program must do with each frame.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    ToUserSpace,
    Shed,
}

/// The capture: industrial traffic, conversation starts, first packets, bulk.
fn traffic() -> Vec<(Vec<u8>, Expect)> {
    use Expect::*;
    let mut frames = Vec::new();
    for target in [PLC, BACKUP, HMI] {
        frames.push((arp(HMI, target), ToUserSpace));
    }
    for i in 0..10 {
        let request = tcp4(HMI, 40000, PLC, 502, TCP_ACK | TCP_PSH, &payload(12 + i));
        let response = tcp4(PLC, 502, HMI, 40000, TCP_ACK | TCP_PSH, &payload(11 + i));
        frames.push((request, ToUserSpace));
        frames.push((response, ToUserSpace));
    }
    for i in 0..6 {
        frames.push((udp4(HMI, 47808, PLC, 47808, &payload(20 + i)), ToUserSpace));
    }
    for i in 0..4 {
        frames.push((ethernet(&[], ETH_PROFINET, &payload(46 + i)), ToUserSpace));
    }
    // SMB to the backup server: handshake, two first packets, bulk both ways, close.
    frames.push((tcp4(HMI, 40100, BACKUP, 445, TCP_SYN, &[]), ToUserSpace));
    frames.push((
        tcp4(BACKUP, 445, HMI, 40100, TCP_SYN | TCP_ACK, &[]),
        ToUserSpace,
    ));
    for _ in 0..2 {
        frames.push((
            tcp4(HMI, 40100, BACKUP, 445, TCP_ACK, &payload(100)),
            ToUserSpace,
        ));
    }
    for i in 0..30 {
        frames.push((tcp4(HMI, 40100, BACKUP, 445, TCP_ACK, &payload(1400)), Shed));
        if i % 3 == 0 {
            frames.push((tcp4(BACKUP, 445, HMI, 40100, TCP_ACK, &payload(1000)), Shed));
        }
    }
    frames.push((
        tcp4(HMI, 40100, BACKUP, 445, TCP_FIN | TCP_ACK, &[]),
        ToUserSpace,
    ));
    frames.push((
        tcp4(BACKUP, 445, HMI, 40100, TCP_FIN | TCP_ACK, &[]),
        ToUserSpace,
    ));
    frames.push((tcp4(HMI, 40100, BACKUP, 445, TCP_RST, &[]), ToUserSpace));
    // A second SMB connection picked up mid-stream: first K, then bulk.
    for i in 0..10 {
        let expect = if i < FIRST_PACKETS { ToUserSpace } else { Shed };
        frames.push((
            tcp4(HMI, 40101, BACKUP, 445, TCP_ACK, &payload(900)),
            expect,
        ));
    }
    // Video over UDP: first K, then bulk.
    for i in 0..29 {
        let expect = if i < FIRST_PACKETS { ToUserSpace } else { Shed };
        frames.push((udp4(HMI, 40200, BACKUP, 9000, &payload(1200)), expect));
    }
    frames
}

fn write_pcap(path: &PathBuf, frames: &[(Vec<u8>, Expect)]) {
    let file = std::fs::File::create(path).expect("create pcap");
    let mut writer = pcap_file::pcap::PcapWriter::new(file).expect("pcap header");
    for (i, (frame, _)) in frames.iter().enumerate() {
        let packet = pcap_file::pcap::PcapPacket::new(
            Duration::from_micros(i as u64),
            frame.len() as u32,
            frame,
        );
        writer.write_packet(&packet).expect("pcap packet");
    }
}

fn tools_present() -> bool {
    testlab::require_tools(
        "xdp_netns_end_to_end",
        &["ip", "nsenter", "tcpreplay", "ethtool"],
    )
}

fn counter(result: &Value, counter: Counter) -> (u64, u64) {
    let pair = &result["counters"][counter.label()];
    (
        pair[0].as_u64().unwrap_or(u64::MAX),
        pair[1].as_u64().unwrap_or(u64::MAX),
    )
}

/// One replay of the capture against a receiver in `mode`; returns the ids of the XDP
/// programs it loaded (the killed one and the one that ran).
fn replay_and_check(lab: &mut Lab, mode: &str, frames: &[(Vec<u8>, Expect)]) -> [u32; 2] {
    // A receiver killed with SIGKILL leaves nothing that stops the next one. In driver
    // mode it held a bpf_link, which died with it; the generic run first kills a
    // receiver that attached through netlink (as old kernels and `ip link` do), whose
    // program stays attached and must be found and replaced.
    let first_mode = if mode == "generic" { "legacy" } else { mode };
    let (_stdin, _lines, first) = lab.start_receiver(first_mode);
    lab.kill_receivers();
    let still_attached =
        run("ip", &["-n", &lab.rx_ns, "-d", "link", "show", &lab.rx_if]).expect("ip link show");
    assert_eq!(
        still_attached.contains("prog/xdp"),
        first_mode == "legacy",
        "{first_mode}: XDP attachment after SIGKILL: {still_attached}"
    );
    let (mut stdin, lines, ready) = lab.start_receiver(mode);
    let expected_mode = if mode == "generic" {
        "Generic"
    } else {
        "Driver"
    };
    assert_eq!(ready["mode"], expected_mode, "{ready}");
    assert_eq!(ready["fell_back"], false);
    assert_ne!(
        ready["prog_id"], first["prog_id"],
        "a fresh program after the restart"
    );
    let expected_replaced = if first_mode == "legacy" {
        first["prog_id"].clone()
    } else {
        Value::Null
    };
    assert_eq!(
        ready["replaced"], expected_replaced,
        "stale attachment replaced"
    );

    lab.lab
        .tcpreplay(&lab.tx_ns, &lab.tx_if, &lab.pcap, &["-q", "-t"])
        .expect("tcpreplay");
    std::thread::sleep(Duration::from_millis(500));
    writeln!(stdin, "stop").expect("stop receiver");
    let result = wait_for(&lines, "RESULT ", Duration::from_secs(30));

    // Every frame meant for user space arrived, byte for byte, and nothing else.
    let mut expected: Vec<String> = frames
        .iter()
        .filter(|(_, e)| *e == Expect::ToUserSpace)
        .map(|(f, _)| hex(f))
        .collect();
    let mut received: Vec<String> = result["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|pair| pair[1].as_str().unwrap_or_default().to_string())
        .collect();
    expected.sort();
    received.sort();
    assert_eq!(
        received.len(),
        expected.len(),
        "{mode}: frames received by user space"
    );
    assert!(
        received == expected,
        "received frames differ from the expected ones"
    );

    let up = expected.len() as u64;
    let shed: Vec<&Vec<u8>> = frames
        .iter()
        .filter(|(_, e)| *e == Expect::Shed)
        .map(|(f, _)| f)
        .collect();
    let shed_bytes: u64 = shed.iter().map(|f| f.len() as u64).sum();
    assert_eq!(counter(&result, Counter::IndustrialPort).0, 26);
    assert_eq!(counter(&result, Counter::IndustrialEthertype).0, 4);
    assert_eq!(counter(&result, Counter::Arp).0, 3);
    assert_eq!(counter(&result, Counter::TcpControl).0, 5);
    assert_eq!(
        counter(&result, Counter::FlowFirstPackets).0,
        2 + 2 * u64::from(FIRST_PACKETS)
    );
    assert_eq!(counter(&result, Counter::Redirected).0, up);
    assert_eq!(counter(&result, Counter::NoSocket).0, 0);
    assert_eq!(
        counter(&result, Counter::Bulk),
        (shed.len() as u64, shed_bytes)
    );
    assert_eq!(
        counter(&result, Counter::Dropped),
        (shed.len() as u64, shed_bytes)
    );
    for label in [
        "malformed",
        "unparsed",
        "fragment",
        "icmp",
        "dhcp",
        "passed",
    ] {
        assert_eq!(result["counters"][label][0], 0, "{label}: no stray frames");
    }

    eprintln!(
        "xdp_netns {mode}: ready {ready}; queues {}",
        result["queues"]
    );
    // Per queue: redirected = received + socket drops.
    let mut redirected_total = 0;
    for queue in result["queues"].as_array().expect("queues") {
        assert_eq!(queue["unaccounted"], 0, "{mode}: {queue}");
        assert_eq!(queue["kernel_drops"], 0, "{queue}");
        redirected_total += queue["redirected"].as_u64().unwrap_or(0);
    }
    assert_eq!(redirected_total, up);

    // Bulk accounting per conversation (client, server, protocol, server port).
    let smb_to_server = 30 * (14 + 20 + 20 + 1400) + 6 * (14 + 20 + 20 + 900);
    let smb_to_client = 10 * (14 + 20 + 20 + 1000);
    let video_to_server = 25 * (14 + 20 + 8 + 1200);
    let conversations = result["conversations"].as_array().expect("conversations");
    let find = |port: u16| {
        conversations
            .iter()
            .find(|c| c["server_port"] == port)
            .unwrap_or_else(|| panic!("conversation to port {port} in {conversations:?}"))
    };
    let smb = find(445);
    assert_eq!(smb["client"], IpAddr::V4(HMI).to_string());
    assert_eq!(smb["server"], IpAddr::V4(BACKUP).to_string());
    assert_eq!(smb["protocol"], 6);
    assert_eq!(smb["flows"], 2);
    assert_eq!(smb["packets_to_server"], 36);
    assert_eq!(smb["bytes_to_server"], smb_to_server);
    assert_eq!(smb["packets_to_client"], 10);
    assert_eq!(smb["bytes_to_client"], smb_to_client);
    let video = find(9000);
    assert_eq!(video["protocol"], 17);
    assert_eq!(video["packets_to_server"], 25);
    assert_eq!(video["bytes_to_server"], video_to_server);
    assert_eq!(video["packets_to_client"], 0);
    assert_eq!(
        smb_to_server + smb_to_client + video_to_server,
        shed_bytes,
        "conversations cover all shed bytes"
    );

    kill_check_finished(lab);
    [
        first["prog_id"].as_u64().unwrap_or(0) as u32,
        ready["prog_id"].as_u64().unwrap_or(0) as u32,
    ]
}

/// Reaps the receiver that printed its result.
fn kill_check_finished(lab: &mut Lab) {
    for mut child in lab.children.drain(..) {
        let status = child.wait().expect("receiver exit");
        assert!(status.success(), "receiver exited with {status}");
    }
}

#[test]
fn xdp_netns_end_to_end() {
    if !kernel_tests_allowed("xdp_netns_end_to_end") || !tools_present() {
        return;
    }
    let frames = traffic();
    let mut lab = Lab::create();
    write_pcap(&lab.pcap, &frames);
    let names = (
        lab.tx_ns.clone(),
        lab.rx_ns.clone(),
        lab.tx_if.clone(),
        lab.rx_if.clone(),
    );

    let mut programs = Vec::new();
    for mode in ["driver", "generic", "live"] {
        programs.extend(replay_and_check(&mut lab, mode, &frames));
    }

    otsensor_run_and_check(&mut lab, &frames);

    // A veth whose peer has MTU 9000 refuses driver mode (drivers/net/veth.c checks the
    // peer's MTU against one page): the fallback is taken, and reported.
    for (ns, ifname) in [(&lab.tx_ns, &lab.tx_if), (&lab.rx_ns, &lab.rx_if)] {
        run("ip", &["-n", ns, "link", "set", ifname, "mtu", "9000"]).expect("mtu");
    }
    let (mut stdin, lines, ready) = lab.start_receiver("auto");
    assert_eq!(ready["mode"], "Generic", "{ready}");
    assert_eq!(ready["fell_back"], true, "{ready}");
    programs.push(ready["prog_id"].as_u64().unwrap_or(0) as u32);
    writeln!(stdin, "stop").expect("stop receiver");
    wait_for(&lines, "RESULT ", Duration::from_secs(30));
    kill_check_finished(&mut lab);
    drop(lab);

    // Nothing left behind: namespaces, links, processes (waited above or in drop),
    // and none of the four programs the receivers loaded.
    let left = testlab::Lab::leftovers(&[names.0.clone(), names.1.clone()]);
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(run("ip", &["link", "show", &names.2]).is_err());
    assert!(run("ip", &["link", "show", &names.3]).is_err());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive: Vec<u32> = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .map(|p| p.id())
            .filter(|id| programs.contains(id))
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "XDP programs {alive:?} still loaded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- `otsensor run` itself: kernel conversations in the inventory, live metrics ----

/// The sum of a metric's samples whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// IPv4 frames of the capture sent by `ip` (every one of them, shed or not).
fn ipv4_frames_from(frames: &[(Vec<u8>, Expect)], ip: Ipv4Addr) -> (u64, u64) {
    let from: Vec<&(Vec<u8>, Expect)> = frames
        .iter()
        .filter(|(f, _)| f.get(12..14) == Some(&[0x08, 0x00][..]))
        .filter(|(f, _)| f.get(26..30) == Some(&ip.octets()[..]))
        .collect();
    let shed = from.iter().filter(|(_, e)| *e == Expect::Shed).count() as u64;
    (from.len() as u64, shed)
}

/// Runs the `otsensor` binary on the receiving end with a database and `--serve`:
/// scrapes /metrics while it runs (kernel counters folded in live and consistent with
/// the capture), then checks that the bulk the kernel shed reached the inventory's
/// packet counts through the periodic conversation reports.
fn otsensor_run_and_check(lab: &mut Lab, frames: &[(Vec<u8>, Expect)]) {
    run("ip", &["-n", &lab.rx_ns, "link", "set", "lo", "up"]).expect("lo up");
    let dir = std::env::temp_dir().join(format!("ots-xdp-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let _remove = RemoveDir(dir.clone());
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!("capture:\n  first_packets_per_flow: {FIRST_PACKETS}\n"),
    )
    .expect("config");
    let (summary, db) = (dir.join("summary.json"), dir.join("inventory.db"));
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.rx_ns))
        .arg(env!("CARGO_BIN_EXE_otsensor"))
        .args([
            "run",
            "--interface",
            &lab.rx_if,
            "--workers",
            "1",
            "--eve",
            "-",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--summary-json")
        .arg(&summary)
        .arg("--db")
        .arg(&db)
        .args(["--serve", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn otsensor run");
    let stderr = child.stderr.take().expect("stderr");
    let pid = child.id().to_string();
    lab.children.push(child);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[otsensor] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut address = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("otsensor run never attached");
        if let Some(rest) = line.strip_prefix("otsensor: serving http://") {
            address = Some(rest.trim_end_matches('/').to_owned());
        }
        if line.contains("otsensor: attached to") {
            break;
        }
    }
    let address = address.expect("otsensor printed its HTTP address");

    lab.lab
        .tcpreplay(&lab.tx_ns, &lab.tx_if, &lab.pcap, &["-q", "-t"])
        .expect("tcpreplay");
    // Metrics are folded every second by the reader (also while idle).
    std::thread::sleep(Duration::from_millis(2500));
    let url = format!("http://{address}/metrics");
    let text =
        run("ip", &["netns", "exec", &lab.rx_ns, "curl", "-sf", &url]).expect("scrape /metrics");
    let up = frames
        .iter()
        .filter(|(_, e)| *e == Expect::ToUserSpace)
        .count() as u64;
    let shed = frames.len() as u64 - up;
    let kernel = |kind: &str, counter: &str| {
        metric(
            &text,
            "otsensor_kernel_packets_total",
            &[("kind", kind), ("counter", counter)],
        )
    };
    assert_eq!(kernel("reason", "bulk"), shed, "live metric: bulk");
    assert_eq!(kernel("verdict", "dropped"), shed, "live metric: dropped");
    assert_eq!(
        kernel("verdict", "redirected"),
        up,
        "live metric: redirected"
    );
    assert_eq!(kernel("reason", "industrial_port"), 26);
    assert_eq!(kernel("reason", "arp"), 3);
    let queue = |state: &str| {
        metric(
            &text,
            "otsensor_xdp_queue_frames_total",
            &[("state", state)],
        )
    };
    assert_eq!(queue("redirected"), up, "live metric: queue redirected");
    assert_eq!(queue("received"), up, "live metric: queue received");
    assert_eq!(queue("kernel_dropped"), 0);
    assert_eq!(queue("no_socket"), 0);
    assert!(
        text.lines()
            .filter(|l| l.starts_with("otsensor_xdp_queue_unaccounted{"))
            .count()
            == QUEUES as usize
            && metric(&text, "otsensor_xdp_queue_unaccounted", &[]) == 0,
        "unaccounted gauges: {text}"
    );

    let _ = Command::new("kill").args(["-INT", &pid]).status();
    for mut child in lab.children.drain(..) {
        let status = child.wait().expect("otsensor exit");
        assert!(status.success(), "otsensor run exited with {status}");
    }

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary written"))
            .expect("summary JSON");
    assert_eq!(
        summary["kernel"]["shed_packets"], shed,
        "{}",
        summary["kernel"]
    );
    assert_eq!(summary["packets"], up, "packets through the pipeline");

    // The inventory counts every IPv4 packet each device sent: those user space saw
    // (flow records) and those the kernel shed (conversation reports).
    let store = otsensor::store::Store::open(&db).expect("open the run's database");
    let devices: BTreeMap<String, Value> = store.devices().expect("devices").into_iter().collect();
    for ip in [HMI, BACKUP, PLC] {
        let (sent, shed_from) = ipv4_frames_from(frames, ip);
        let key = devices
            .keys()
            .find(|k| k.ends_with(&ip.to_string()))
            .unwrap_or_else(|| panic!("{ip} in the inventory: {:?}", devices.keys()));
        let record = &devices[key];
        assert_eq!(
            record["packets_sent"], sent,
            "{ip}: packets sent ({shed_from} of them shed in the kernel): {record}"
        );
    }
    assert!(
        devices.values().any(|r| r["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == &json!(BACKUP.to_string())))),
        "the backup server is someone's peer"
    );
}

/// Removes a temporary directory on every exit path.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
