//! `otsensor run` end to end with the real kernel: a generated plant capture is sent
//! over a veth pair between two network namespaces; otsensor captures on the far end
//! through the XDP pre-filter and AF_XDP, then stops on SIGTERM. Every industrial PDU,
//! every flow and every device of the ground truth must reach user space; bulk is shed
//! in the kernel, and the kernel's books balance. The test removes its namespaces,
//! programs and processes even when it fails, and checks that it did.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Root and the tools are required; outside CI their absence skips, in CI it fails.
fn allowed() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .is_some_and(|uid| uid == "0");
    let missing: Vec<&str> = ["ip", "nsenter", "ethtool"]
        .into_iter()
        .filter(|tool| Command::new(tool).arg("--version").output().is_err())
        .collect();
    if root && missing.is_empty() {
        return true;
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !in_ci,
        "live_run needs root and {missing:?}; CI=true forbids skipping"
    );
    eprintln!("live_run: SKIPPED (root: {root}, missing tools: {missing:?})");
    false
}

/// The namespaces, the veth pair and the processes of one test run.
struct Lab {
    tx_ns: String,
    rx_ns: String,
    tx_if: String,
    rx_if: String,
    dir: PathBuf,
    children: Vec<Child>,
}

impl Lab {
    fn create(queues: u32) -> Lab {
        let id = format!("{}{queues}", std::process::id());
        let dir = std::env::temp_dir().join(format!("ots-live-{id}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let lab = Lab {
            tx_ns: format!("otl-tx-{id}"),
            rx_ns: format!("otl-rx-{id}"),
            tx_if: format!("otla{id}"),
            rx_if: format!("otlb{id}"),
            dir,
            children: Vec::new(),
        };
        run("ip", &["netns", "add", &lab.tx_ns]).expect("netns");
        run("ip", &["netns", "add", &lab.rx_ns]).expect("netns");
        #[rustfmt::skip]
        let q = queues.to_string();
        #[rustfmt::skip]
        run("ip", &["link", "add", &lab.tx_if, "numtxqueues", &q, "numrxqueues", &q, "type", "veth",
                    "peer", "name", &lab.rx_if, "numtxqueues", &q, "numrxqueues", &q]).expect("veth");
        run("ip", &["link", "set", &lab.tx_if, "netns", &lab.tx_ns]).expect("move");
        run("ip", &["link", "set", &lab.rx_if, "netns", &lab.rx_ns]).expect("move");
        for (ns, ifname) in [(&lab.tx_ns, &lab.tx_if), (&lab.rx_ns, &lab.rx_if)] {
            // No IPv6 on the pair: the kernel's own ND/MLD frames would spoil exact counts.
            let sysctl = format!("net.ipv6.conf.{ifname}.disable_ipv6=1");
            run("ip", &["netns", "exec", ns, "sysctl", "-qw", &sysctl]).expect("sysctl");
            run("ip", &["-n", ns, "link", "set", ifname, "up"]).expect("up");
        }
        // Keep 802.1Q tags in the frame bytes and every frame GRO-eligible for veth's
        // native XDP path (drivers/net/veth.c).
        #[rustfmt::skip]
        run("ip", &["netns", "exec", &lab.tx_ns, "ethtool", "-K", &lab.tx_if, "tso", "off", "txvlan", "off"]).expect("ethtool");
        let _ = run(
            "ip",
            &[
                "netns", "exec", &lab.rx_ns, "ethtool", "-K", &lab.rx_if, "rxvlan", "off",
            ],
        );
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = run("ip", &["netns", "del", &self.tx_ns]);
        let _ = run("ip", &["netns", "del", &self.rx_ns]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The otsensor binary built beside this test (target/<profile>/otsensor).
fn otsensor_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let binary = dir.join("otsensor");
    assert!(
        binary.exists(),
        "{} missing: build the workspace first",
        binary.display()
    );
    binary
}

fn count(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn kernel(summary: &Value, counter: &str) -> u64 {
    summary["kernel"]["counters"][counter][0]
        .as_u64()
        .unwrap_or(0)
}

/// The names of a process's threads (`/proc/PID/task/*/comm`).
fn thread_names(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc/PID/task")
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn otsensor_run_captures_a_plant_exactly() {
    if !allowed() {
        return;
    }
    // One after the other: both send at a fixed rate on the same two cores.
    for queues in [1, 2] {
        captures_a_plant_exactly(queues);
    }
}

/// `otsensor run` on a veth with `queues` RX queues: one worker thread per queue and
/// no other thread that reads packets; exact books; the whole plant seen.
fn captures_a_plant_exactly(queues: u32) {
    let mut lab = Lab::create(queues);
    let names = (lab.tx_ns.clone(), lab.rx_ns.clone());
    let capture = lab.dir.join("plant.pcap");
    let options = xtask::gen::MixOptions {
        packets: 30_000,
        seed: 11,
        resolution: xtask::gen::Resolution::Micro,
    };
    let truth = xtask::gen::mix(&options, &capture).expect("generate");
    let summary_path = lab.dir.join("summary.json");

    let mut sensor = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.rx_ns))
        .arg(otsensor_binary())
        .args([
            "run",
            "--interface",
            &lab.rx_if,
            "--workers",
            &queues.to_string(),
            "--eve",
            "-",
            "--summary-json",
        ])
        .arg(&summary_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start otsensor");
    let stderr = sensor.stderr.take().expect("stderr");
    let pid = sensor.id();
    lab.children.push(sensor);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[otsensor] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("otsensor attach");
        assert!(!line.contains("error"), "otsensor failed: {line}");
        if line.contains("attached to") {
            break;
        }
    }

    // One worker thread per queue, named after its queue; the rest of the process is
    // the main thread (housekeeping), the analyzer and the outputs: no reader thread.
    // The workers start right after the attach message: give them a moment.
    let expected: Vec<String> = (0..queues).map(|q| format!("otsensor-q{q}")).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut threads = thread_names(pid);
    while threads
        .iter()
        .filter(|n| n.starts_with("otsensor-q"))
        .count()
        < expected.len()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
        threads = thread_names(pid);
    }
    let workers: Vec<&String> = threads
        .iter()
        .filter(|n| n.starts_with("otsensor-q"))
        .collect();
    assert_eq!(
        workers,
        expected.iter().collect::<Vec<_>>(),
        "threads: {threads:?}"
    );
    for name in &threads {
        assert!(
            !name.contains("reader") && !name.starts_with("otsensor-worke"),
            "unexpected thread {name:?} in {threads:?}"
        );
    }

    // A paced send: the test is about exact accounting, not about the top rate. Through
    // the qdisc path, so that the veth picks the queue by the (symmetric) flow hash as a
    // NIC's RSS would: every frame of a flow on one queue, in order.
    let frames = xtask::sender::load_frames(&capture).expect("load the capture");
    let sender =
        xtask::sender::Sender::open(&lab.tx_ns, &lab.tx_if, frames, false).expect("sender");
    let sent = sender.send(truth.packets, 20_000).expect("send");
    assert_eq!(sent.packets, truth.packets);
    drop(sender);
    std::thread::sleep(Duration::from_millis(500));
    run("kill", &["-TERM", &pid.to_string()]).expect("SIGTERM");
    let status = lab.children[0].wait().expect("otsensor exit");
    assert!(status.success(), "otsensor exited with {status}");
    lab.children.clear();

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).expect("summary written"))
            .expect("JSON");
    eprintln!(
        "stream: {}\ncounters: {}\nkernel: {}",
        summary["stream"], summary["counters"], summary["kernel"]
    );
    // The kernel saw every frame once and gave each one verdict.
    let redirected = kernel(&summary, "redirected");
    let dropped = kernel(&summary, "dropped");
    assert_eq!(
        redirected + dropped + kernel(&summary, "passed") + kernel(&summary, "no_socket"),
        truth.packets
    );
    assert_eq!(kernel(&summary, "no_socket"), 0);
    // Every redirected frame reached the pipeline; the queues' books balance.
    assert_eq!(count(&summary, "packets"), redirected);
    assert_eq!(
        count(&summary, "workers"),
        u64::from(queues),
        "one worker per queue"
    );
    let books = summary["kernel"]["queues"].as_array().expect("queues");
    assert_eq!(books.len(), queues as usize);
    for queue in books {
        assert_eq!(queue["unaccounted"], 0, "{queue}");
        assert_eq!(
            count(queue, "redirected"),
            count(queue, "received") + count(queue, "kernel_drops"),
            "{queue}"
        );
    }
    // Every industrial PDU, conversation and device of the plant was seen.
    for protocol in ["modbus", "dnp3", "bacnet", "enip", "s7comm"] {
        assert_eq!(
            summary["protocols"][protocol].as_u64(),
            truth.protocols.get(protocol).copied(),
            "{protocol}"
        );
    }
    assert_eq!(
        count(&summary, "flows"),
        truth.flows,
        "every conversation start reached user space"
    );
    assert_eq!(count(&summary, "devices"), truth.devices);
    // Bulk was shed in the kernel and accounted per conversation there.
    assert!(dropped > 0, "the mix's bulk transfers must be shed");
    assert_eq!(summary["kernel"]["shed_packets"].as_u64(), Some(dropped));
    assert!(
        summary["kernel"]["shed_conversations"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );

    drop(lab);
    let netns = run("ip", &["netns", "list"]).unwrap_or_default();
    assert!(
        !netns.contains(&names.0) && !netns.contains(&names.1),
        "namespaces left: {netns}"
    );
    let processes = run(
        "pgrep",
        &["-f", &format!("run --interface otlb{}", std::process::id())],
    )
    .unwrap_or_default();
    assert!(
        processes.trim().is_empty(),
        "otsensor left running: {processes}"
    );
}
