//! `cargo xtask live-bench`: the highest send rate with zero loss for `otsensor run`
//! (XDP + AF_XDP) and, in the same run on the same traffic, for `tcpdump -w /dev/null`
//! (AF_PACKET), on a veth pair between two network namespaces; then, at one common rate,
//! each capturer's CPU per million packets (its process's user+system time plus the
//! machine's softirq time from /proc/stat over the same interval, where the kernel's
//! receive work runs); and otsensor's CPU with no traffic at all.
//!
//! The sender (`crate::sender`) sends the generated mix from memory over AF_PACKET with
//! the qdisc bypassed, in sendmmsg batches: well above both capturers on this machine.
//! For each capturer it sends the mix at increasing packet rates (doubling from
//! `--start-pps`, then bisecting between the last clean and the first lossy rate), and a
//! trial is clean when the capturer lost nothing:
//! - otsensor: frames the XDP program never saw (sent − the program's verdicts), frames
//!   redirected to a queue with no socket, the sockets' kernel drops (XDP_STATISTICS) and
//!   unaccounted frames, all from its `--summary-json`;
//! - tcpdump: "dropped by kernel" from its exit statistics plus frames it never
//!   captured (sent − captured).
//!
//! A rate the sender could not reach (achieved < 90% of the asked rate) ends the
//! search: the best clean rate is then a lower bound, and the report says so.
//!
//! Needs root, `ip`, `nsenter`, `ethtool` and `tcpdump`. A guard deletes the
//! namespaces (and with them the veth pair) and kills the capturers on every exit path.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::testlab;

/// Options of one benchmark run.
#[derive(Debug, Clone)]
pub struct LiveBench {
    /// The `otsensor` binary (a release build).
    pub otsensor: PathBuf,
    /// Packets in the generated mix, sent once per trial.
    pub packets: u64,
    /// The first rate tried, packets per second.
    pub start_pps: u64,
    /// The highest rate tried (the sender's own ceiling on this machine is lower).
    pub max_pps: u64,
    /// Bisection steps between the last clean and the first lossy rate.
    pub refine: u32,
    /// RX/TX queues of the veth pair.
    pub queues: u32,
    /// `otsensor run --workers`.
    pub workers: usize,
    /// The common rate of the CPU comparison (0: the lower of the two zero-loss rates).
    pub cpu_pps: u64,
    /// Seconds over which otsensor's idle CPU is measured (0: skip).
    pub idle_seconds: u64,
    /// Times the mix is sent in each trial of the CPU comparison.
    pub cpu_repeat: u64,
    /// Leave the receiving veth as the kernel sets it up: its receive work (XDP and the
    /// AF_XDP copy; the stack and AF_PACKET's copy) runs in the sender's own system
    /// calls, so the sender's rate falls with the capturer's kernel-side cost.
    pub rx_in_sender: bool,
}

/// One trial: a capturer, a requested rate, what the sender achieved, what was lost.
#[derive(Debug, Clone)]
pub struct Trial {
    pub requested_pps: u64,
    pub achieved_pps: f64,
    pub sent: u64,
    pub lost: u64,
    /// The capturer process's CPU seconds (all threads) over the send and 100 ms after.
    pub process_cpu_s: f64,
    /// The same, per thread name, largest first.
    pub threads: Vec<(String, f64)>,
    /// The machine's softirq CPU seconds over the same interval.
    pub softirq_cpu_s: f64,
    /// The receiving veth's NAPI kernel threads' CPU seconds over the same interval
    /// (threaded NAPI: where XDP and the AF_XDP copy run).
    pub napi_cpu_s: f64,
    /// The whole machine's busy CPU seconds over the same interval: the capturer, the
    /// kernel's receive work wherever it ran (softirq in the sender's own context on a
    /// veth), and the sender itself.
    pub busy_cpu_s: f64,
    /// otsensor only: packet → alert latency p99 of the run, if it raised alerts.
    pub alert_p99_ns: Option<u64>,
}

impl Trial {
    /// CPU seconds per million packets sent: the process, softirq and the NAPI threads.
    pub fn cpu_per_mpkt(&self) -> f64 {
        (self.process_cpu_s + self.softirq_cpu_s + self.napi_cpu_s) * 1e6 / self.sent.max(1) as f64
    }

    /// Busy CPU seconds of the whole machine per million packets beyond what sending
    /// the same packets at the same rate costs with nothing capturing (`baseline`: busy
    /// CPU seconds per million packets of that send).
    pub fn attributable_per_mpkt(&self, baseline: f64) -> f64 {
        self.busy_cpu_s * 1e6 / self.sent.max(1) as f64 - baseline
    }
}

/// Clock ticks per second of /proc's CPU times (USER_HZ; 100 on Linux).
const USER_HZ: f64 = 100.0;

/// CPU seconds each thread of process `pid` has run so far, by thread name, from
/// `/proc/PID/task/TID/schedstat` (nanoseconds, unlike the ticks of `stat`).
fn thread_cpu_s(pid: u32) -> Vec<(String, f64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut threads = Vec::new();
    for task in tasks.flatten() {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        threads.push((name.trim().to_owned(), ns as f64 / 1e9));
    }
    threads
}

/// CPU seconds the NAPI kernel threads of interface `ifname` have run so far.
fn napi_cpu_s(ifname: &str) -> f64 {
    let prefix = format!("napi/{ifname}-");
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    processes
        .flatten()
        .filter(|p| {
            p.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|p| {
            std::fs::read_to_string(p.path().join("comm")).is_ok_and(|c| c.starts_with(&prefix))
        })
        .filter_map(|p| {
            let stat = std::fs::read_to_string(p.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .map(|ns| ns as f64 / 1e9)
        .sum()
}

/// User+system CPU seconds of process `pid`, all its threads.
fn process_cpu_s(pid: u32) -> f64 {
    thread_cpu_s(pid).iter().map(|(_, s)| s).sum()
}

/// Per thread name (threads sharing a name summed): CPU seconds used between two
/// samples, threads that started in between counted from zero; largest first.
fn thread_deltas(before: &[(String, f64)], after: &[(String, f64)]) -> Vec<(String, f64)> {
    let total = |sample: &[(String, f64)], name: &str| -> f64 {
        sample
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, s)| s)
            .sum()
    };
    let mut names: Vec<&String> = after.iter().map(|(n, _)| n).collect();
    names.sort();
    names.dedup();
    let mut deltas: Vec<(String, f64)> = names
        .into_iter()
        .map(|name| {
            (
                name.clone(),
                (total(after, name) - total(before, name)).max(0.0),
            )
        })
        .collect();
    deltas.sort_by(|a, b| b.1.total_cmp(&a.1));
    deltas
}

/// (softirq, busy) CPU seconds of the whole machine so far, from the `cpu` line of
/// /proc/stat: busy is every column but idle and iowait.
fn machine_cpu_s() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(columns) = stat.lines().find(|l| l.starts_with("cpu ")).map(|l| {
        l.split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse::<f64>().ok())
            .collect::<Vec<_>>()
    }) else {
        return (0.0, 0.0);
    };
    let column = |i: usize| columns.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy = column(0) + column(1) + column(2) + column(5) + column(6) + column(7);
    (column(6) / USER_HZ, busy / USER_HZ)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Capturer {
    Otsensor,
    Tcpdump,
}

impl Capturer {
    fn name(self) -> &'static str {
        match self {
            Capturer::Otsensor => "otsensor run (XDP + AF_XDP)",
            Capturer::Tcpdump => "tcpdump -w /dev/null (AF_PACKET)",
        }
    }
}

/// The lab (namespaces, veth pair, scratch directory) and the capturer; removed on
/// drop.
struct Lab {
    lab: testlab::Lab,
    pair: testlab::Pair,
    capturer: Option<Child>,
    sender: Option<crate::sender::Sender>,
}

impl Lab {
    fn create(queues: u32, rx_in_sender: bool) -> Result<Lab> {
        // The guard exists before the first namespace, so a failing step still cleans up.
        let mut lab = testlab::Lab::new("lb")?;
        let pair = lab.pair(queues)?;
        if !rx_in_sender {
            receive_like_a_nic(&lab, &pair)?;
        }
        Ok(Lab {
            lab,
            pair,
            capturer: None,
            sender: None,
        })
    }

    fn pcap(&self) -> PathBuf {
        self.lab.dir().join("mix.pcap")
    }

    fn summary(&self) -> PathBuf {
        self.lab.dir().join("summary.json")
    }

    /// Starts a capturer in the receiving namespace; returns its stderr lines once it
    /// reported that it is ready.
    fn start(&mut self, capturer: Capturer, bench: &LiveBench) -> Result<mpsc::Receiver<String>> {
        let netns = format!("--net=/run/netns/{}", self.pair.rx_ns);
        let mut command = Command::new("nsenter");
        command.arg(&netns);
        let ready_marker = match capturer {
            Capturer::Otsensor => {
                let _ = std::fs::remove_file(self.summary());
                // No learning phase: every device and conversation of the mix is new
                // and alerts, so the run measures packet → alert latency too.
                let config = self.lab.dir().join("bench.yaml");
                std::fs::write(&config, "learning:\n  duration: 0s\n")
                    .context("benchmark config")?;
                command
                    .arg(&bench.otsensor)
                    .args(["run", "--interface", &self.pair.rx_if, "--workers"])
                    .arg(bench.workers.to_string())
                    .arg("--summary-json")
                    .arg(self.summary())
                    .arg("--config")
                    .arg(&config)
                    .args(["--eve", "/dev/null"]);
                "otsensor: attached to"
            }
            Capturer::Tcpdump => {
                command.args(["tcpdump", "-n", "-i", &self.pair.rx_if, "-w", "/dev/null"]);
                "listening on"
            }
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the capturer under nsenter")?;
        let stderr = child.stderr.take().context("capturer stderr")?;
        self.capturer = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(ready_marker) => break,
                Ok(_) => {}
                Err(_) => bail!("{}: never became ready", capturer.name()),
            }
        }
        // tcpdump prints "listening" just before its first poll, otsensor "attached"
        // just before it starts its workers: give both a moment (a loaded machine may
        // take a while to schedule new threads).
        std::thread::sleep(Duration::from_millis(1000));
        Ok(rx)
    }

    /// Sends SIGINT to the capturer and waits for it; returns its remaining stderr.
    fn stop(&mut self, lines: mpsc::Receiver<String>) -> Result<Vec<String>> {
        let Some(mut child) = self.capturer.take() else {
            bail!("no capturer running");
        };
        // nsenter execs the capturer, so this pid is the capturer itself.
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the capturer did not stop within 30 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The exit statistics may still be on their way through the reader thread: take
        // lines until it hangs up (the pipe closed with the process).
        let mut rest = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            rest.push(line);
        }
        Ok(rest)
    }

    /// Sends `count` frames of the mix (cycling) at `pps` (0: top speed); returns
    /// (packets sent, achieved pps).
    fn send(&self, count: u64, pps: u64) -> Result<(u64, f64)> {
        let sender = self.sender.as_ref().context("the sender is not open")?;
        let sent = sender.send(count, pps)?;
        Ok((sent.packets, sent.pps()))
    }

    /// Starts `capturer`, sends `count` frames at `pps`, stops it and counts the loss.
    fn trial(
        &mut self,
        capturer: Capturer,
        bench: &LiveBench,
        pps: u64,
        count: u64,
    ) -> Result<Trial> {
        let lines = self.start(capturer, bench)?;
        if capturer == Capturer::Otsensor && !bench.rx_in_sender {
            threaded_napi(&self.lab, &self.pair)?;
        }
        let pid = self.capturer.as_ref().map_or(0, Child::id);
        let threads_before = thread_cpu_s(pid);
        let napi_before = napi_cpu_s(&self.pair.rx_if);
        let (softirq_before, busy_before) = machine_cpu_s();
        let sent = self.send(count, pps);
        // A capturer that keeps up has finished the last frames by then.
        std::thread::sleep(Duration::from_millis(100));
        let (softirq_after, busy_after) = machine_cpu_s();
        let napi = napi_cpu_s(&self.pair.rx_if) - napi_before;
        let threads = thread_deltas(&threads_before, &thread_cpu_s(pid));
        // Let the capturer read what is queued before it is told to stop: otsensor
        // drains its rings on SIGINT anyway; tcpdump leaves unread whatever sits in a
        // TPACKET_V3 block that its 1 s block timeout has not yet handed over.
        std::thread::sleep(match capturer {
            Capturer::Otsensor => Duration::from_millis(400),
            Capturer::Tcpdump => Duration::from_millis(1900),
        });
        let stderr = self.stop(lines)?;
        let (sent, achieved_pps) = sent?;
        let (lost, alert_p99_ns) = match capturer {
            Capturer::Otsensor => otsensor_loss(&self.summary(), sent)?,
            Capturer::Tcpdump => (tcpdump_loss(&stderr, sent)?, None),
        };
        Ok(Trial {
            requested_pps: pps,
            achieved_pps,
            sent,
            lost,
            process_cpu_s: threads.iter().map(|(_, s)| s).sum(),
            threads,
            softirq_cpu_s: softirq_after - softirq_before,
            napi_cpu_s: napi.max(0.0),
            busy_cpu_s: busy_after - busy_before,
            alert_p99_ns,
        })
    }

    /// The machine's busy CPU seconds per million packets for sending `count` frames at
    /// `pps` with nothing capturing (XDP detached, no AF_PACKET socket).
    fn sender_alone_per_mpkt(&self, pps: u64, count: u64) -> Result<f64> {
        let (_, busy_before) = machine_cpu_s();
        let (sent, _) = self.send(count, pps)?;
        std::thread::sleep(Duration::from_millis(100));
        let (_, busy_after) = machine_cpu_s();
        Ok((busy_after - busy_before) * 1e6 / sent.max(1) as f64)
    }

    /// otsensor's CPU with no traffic: user+system seconds over `seconds`, after it
    /// settled for a second.
    fn idle_cpu(&mut self, bench: &LiveBench, seconds: u64) -> Result<f64> {
        let lines = self.start(Capturer::Otsensor, bench)?;
        let pid = self.capturer.as_ref().map_or(0, Child::id);
        std::thread::sleep(Duration::from_secs(1));
        let before = process_cpu_s(pid);
        std::thread::sleep(Duration::from_secs(seconds));
        let used = process_cpu_s(pid) - before;
        self.stop(lines)?;
        Ok(used)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.sender = None;
        // The capturer goes first; dropping `lab` then deletes the namespaces (and with
        // them the veth pair and any XDP program attached to it).
        if let Some(mut child) = self.capturer.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Moves the receiving veth's work out of the sender's system calls, as a NIC's own
/// interrupts and NAPI polls would. The non-XDP path: RPS over every CPU (the backlog
/// is processed on the CPU the flow hash picks, not in the sender's call).
fn receive_like_a_nic(lab: &testlab::Lab, pair: &testlab::Pair) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get().min(32));
    let mask = format!("{:x}", (1u64 << cpus) - 1);
    let script = format!(
        "for q in /sys/class/net/{rx}/queues/rx-*; do echo {mask} > $q/rps_cpus || exit 1; done",
        rx = pair.rx_if
    );
    run_in(lab, &pair.rx_ns, &script).with_context(|| format!("RPS on {}", pair.rx_if))
}

/// The XDP path: veth has NAPI instances only while a program is attached; threaded,
/// they run in kernel threads the scheduler places instead of the sender's call.
fn threaded_napi(lab: &testlab::Lab, pair: &testlab::Pair) -> Result<()> {
    let script = format!("echo 1 > /sys/class/net/{}/threaded", pair.rx_if);
    run_in(lab, &pair.rx_ns, &script).with_context(|| format!("threaded NAPI on {}", pair.rx_if))
}

fn run_in(lab: &testlab::Lab, ns: &str, script: &str) -> Result<()> {
    let status = lab
        .exec(ns, "sh")
        .args(["-c", script])
        .status()
        .context("ip netns exec sh")?;
    if !status.success() {
        bail!("`{script}` failed");
    }
    Ok(())
}

/// otsensor's loss from its summary: frames the program never judged, frames with no
/// socket on their queue, socket drops and unaccounted frames.
fn otsensor_loss(summary: &Path, sent: u64) -> Result<(u64, Option<u64>)> {
    let text = std::fs::read_to_string(summary)
        .with_context(|| format!("otsensor wrote no summary at {}", summary.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).context("summary JSON")?;
    let kernel = &json["kernel"];
    let verdict = |label: &str| kernel["counters"][label][0].as_u64().unwrap_or(0);
    let judged: u64 = ["redirected", "no_socket", "dropped", "passed"]
        .iter()
        .map(|l| verdict(l))
        .sum();
    let unseen = sent.saturating_sub(judged);
    let (mut socket_drops, mut unaccounted) = (0, 0);
    for queue in kernel["queues"]
        .as_array()
        .context("summary: kernel.queues")?
    {
        socket_drops += queue["kernel_drops"].as_u64().unwrap_or(0);
        unaccounted += queue["unaccounted"].as_i64().unwrap_or(0).unsigned_abs();
    }
    let lost = unseen + verdict("no_socket") + socket_drops + unaccounted;
    if lost > 0 {
        eprintln!(
            "    lost: {unseen} never judged by XDP, {} no socket, {socket_drops} socket drops, \
             {unaccounted} unaccounted ({} redirected to user space)",
            verdict("no_socket"),
            verdict("redirected")
        );
    }
    let p99 = (json["alerts"].as_u64().unwrap_or(0) > 0)
        .then(|| json["alert_latency_ns"]["p99"].as_u64())
        .flatten();
    Ok((lost, p99))
}

/// tcpdump's loss from its exit statistics ("N packets captured", "N packets dropped by
/// kernel").
fn tcpdump_loss(stderr: &[String], sent: u64) -> Result<u64> {
    let count = |suffix: &str| -> Option<u64> {
        stderr
            .iter()
            .find(|l| l.ends_with(suffix))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    let captured = count("packets captured").context("tcpdump printed no statistics")?;
    let dropped = count("packets dropped by kernel").unwrap_or(0);
    Ok(dropped + sent.saturating_sub(captured))
}

/// What the search found for one capturer.
struct Found {
    best: Option<Trial>,
    trials: Vec<Trial>,
    /// No loss up to the sender's own ceiling: the best rate is a lower bound.
    sender_bound: bool,
}

/// The highest clean rate of one capturer, and every trial.
fn search(lab: &mut Lab, capturer: Capturer, bench: &LiveBench, count: u64) -> Result<Found> {
    let mut trials: Vec<Trial> = Vec::new();
    let mut sender_bound = false;
    let mut best: Option<Trial> = None;
    let mut first_lossy: Option<u64> = None;
    let mut pps = bench.start_pps.max(1);
    while pps <= bench.max_pps {
        let trial = lab.trial(capturer, bench, pps, count)?;
        report_trial(capturer, &trial);
        trials.push(trial.clone());
        if trial.lost > 0 {
            first_lossy = Some(pps);
            break;
        }
        // The sender saturated: asking for more only repeats this trial.
        let saturated = trial.achieved_pps < 0.9 * pps as f64;
        keep_faster(&mut best, trial);
        if saturated {
            sender_bound = true;
            break;
        }
        pps *= 2;
    }
    if let Some(mut high) = first_lossy {
        let mut low = best.as_ref().map_or(0, |t| t.requested_pps);
        for _ in 0..bench.refine {
            let mid = (low + high) / 2;
            if mid <= low || mid >= high {
                break;
            }
            let trial = lab.trial(capturer, bench, mid, count)?;
            report_trial(capturer, &trial);
            trials.push(trial.clone());
            if trial.lost == 0 {
                low = mid;
                keep_faster(&mut best, trial);
            } else {
                high = mid;
            }
        }
    }
    Ok(Found {
        best,
        trials,
        sender_bound,
    })
}

/// A clean trial becomes the best one if it sent faster: a saturated sender can send
/// slower when asked for more (the capturer's kernel work competes with it).
fn keep_faster(best: &mut Option<Trial>, trial: Trial) {
    if best
        .as_ref()
        .is_none_or(|kept| trial.achieved_pps > kept.achieved_pps)
    {
        *best = Some(trial);
    }
}

fn report_trial(capturer: Capturer, trial: &Trial) {
    eprintln!(
        "  {:<34} asked {:>8} pps, sent {:>7} at {:>10.0} pps: lost {}",
        capturer.name(),
        trial.requested_pps,
        trial.sent,
        trial.achieved_pps,
        trial.lost
    );
}

/// Runs the benchmark and prints a Markdown table.
pub fn live_bench(bench: &LiveBench) -> Result<()> {
    for tool in ["ip", "nsenter", "tcpdump", "ethtool"] {
        if testlab::find_program(tool).is_none() {
            bail!("{tool} is missing (scripts/deps.sh installs it)");
        }
    }
    if !bench.otsensor.is_file() {
        bail!(
            "{} does not exist: build it first (cargo build --release -p otsensor)",
            bench.otsensor.display()
        );
    }
    let started = Instant::now();
    let mut lab = Lab::create(bench.queues, bench.rx_in_sender)?;
    let truth = crate::gen::mix(
        &crate::gen::MixOptions {
            packets: bench.packets,
            seed: 11,
            resolution: crate::gen::Resolution::Micro,
        },
        &lab.pcap(),
    )?;
    lab.sender = Some(crate::sender::Sender::open(
        &lab.pair.tx_ns,
        &lab.pair.tx_if,
        crate::sender::load_frames(&lab.pcap())?,
        true,
    )?);
    eprintln!(
        "live-bench: {} packets, {} flows, {} devices; veth pair with {} queues",
        truth.packets, truth.flows, truth.devices, bench.queues
    );
    // The sender's own ceiling, with nothing capturing (XDP not attached).
    let count = truth.packets;
    let (ceiling_sent, ceiling_pps) = lab.send(count, 0)?;
    eprintln!("  sender alone: {ceiling_sent} frames at {ceiling_pps:.0} pps");
    let mut results = Vec::new();
    for capturer in [Capturer::Otsensor, Capturer::Tcpdump] {
        results.push((capturer, search(&mut lab, capturer, bench, count)?));
    }
    let rate = |i: usize| {
        results
            .get(i)
            .and_then(|r: &(Capturer, Found)| r.1.best.as_ref())
            .map_or(0.0, |t| t.achieved_pps)
    };
    let common = if bench.cpu_pps > 0 {
        bench.cpu_pps
    } else {
        (rate(0).min(rate(1)) as u64 / 1000 * 1000).max(1000)
    };
    // The CPU comparison sends the mix several times: /proc/stat counts in 10 ms ticks.
    let cpu_count = count.saturating_mul(bench.cpu_repeat.max(1));
    let baseline = lab.sender_alone_per_mpkt(common, cpu_count)?;
    let mut at_common = Vec::new();
    for capturer in [Capturer::Otsensor, Capturer::Tcpdump] {
        let trial = lab.trial(capturer, bench, common, cpu_count)?;
        report_trial(capturer, &trial);
        at_common.push((capturer, trial));
    }
    let idle = if bench.idle_seconds > 0 {
        Some(lab.idle_cpu(bench, bench.idle_seconds)?)
    } else {
        None
    };
    drop(lab);

    println!("sender alone (AF_PACKET, qdisc bypass, sendmmsg): {ceiling_pps:.0} pps\n");
    println!("| capturer | highest zero-loss rate (sent) | trials |");
    println!("|---|---|---|");
    for (capturer, found) in &results {
        let best = found.best.as_ref().map_or("none".to_owned(), |t| {
            let bound = if found.sender_bound {
                " (lower bound: sender-bound)"
            } else {
                ""
            };
            format!(
                "{:.0} pps (asked {}){bound}",
                t.achieved_pps, t.requested_pps
            )
        });
        println!("| {} | {best} | {} |", capturer.name(), found.trials.len());
    }
    if rate(1) > 0.0 {
        println!(
            "\nzero-loss ratio otsensor / tcpdump: {:.2}",
            rate(0) / rate(1)
        );
    }
    println!(
        "\nat {common} pps, {cpu_count} packets (sending them with nothing capturing: \
         {baseline:.3} busy CPU s per Mpkt):\n"
    );
    println!(
        "| capturer | lost | process CPU s | softirq CPU s | NAPI threads CPU s \
         | (process + softirq + NAPI) s per Mpkt \
         | machine busy beyond the sender alone, s per Mpkt |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (capturer, trial) in &at_common {
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            capturer.name(),
            trial.lost,
            trial.process_cpu_s,
            trial.softirq_cpu_s,
            trial.napi_cpu_s,
            trial.cpu_per_mpkt(),
            trial.attributable_per_mpkt(baseline)
        );
    }
    for (capturer, trial) in &at_common {
        let threads: Vec<String> = trial
            .threads
            .iter()
            .filter(|(_, s)| *s >= 0.001)
            .map(|(name, s)| format!("{name} {:.3}", s * 1e6 / trial.sent.max(1) as f64))
            .collect();
        println!(
            "{} threads, CPU s per Mpkt: {}",
            capturer.name(),
            threads.join(", ")
        );
    }
    if let [(_, ours), (_, theirs)] = at_common.as_slice() {
        if theirs.cpu_per_mpkt() > 0.0 {
            // The machine-wide figure is a difference of two sends: on a busy machine it
            // can come out at or below zero, and then there is no ratio to give.
            let beyond_sender = match theirs.attributable_per_mpkt(baseline) {
                theirs_beyond if theirs_beyond > 0.0 => format!(
                    "{:.2}",
                    ours.attributable_per_mpkt(baseline) / theirs_beyond
                ),
                _ => "n/a: tcpdump's is within the baseline's noise".to_owned(),
            };
            println!(
                "CPU per packet otsensor / tcpdump: {:.2} (process + softirq + NAPI), \
                 {beyond_sender} (machine busy beyond the sender alone)",
                ours.cpu_per_mpkt() / theirs.cpu_per_mpkt(),
            );
        }
        if let Some(p99) = ours.alert_p99_ns {
            println!("otsensor packet → alert latency p99 at {common} pps: {p99} ns");
        }
    }
    for (capturer, found) in &results {
        if found.sender_bound {
            println!(
                "{}: no loss up to the sender's ceiling (a lower bound)",
                capturer.name()
            );
        }
    }
    if let Some(idle) = idle {
        println!(
            "otsensor idle: {idle:.2} CPU-s over {} s = {:.2}% of a core (process user+sys)",
            bench.idle_seconds,
            idle * 100.0 / bench.idle_seconds as f64
        );
    }
    println!("elapsed {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
