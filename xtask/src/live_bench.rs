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
}

/// One trial: a capturer, a requested rate, what the sender achieved, what was lost.
#[derive(Debug, Clone, Copy)]
pub struct Trial {
    pub requested_pps: u64,
    pub achieved_pps: f64,
    pub sent: u64,
    pub lost: u64,
    /// The capturer process's user+system CPU seconds from start of send to stop.
    pub process_cpu_s: f64,
    /// The machine's softirq CPU seconds over the send (and 100 ms after it).
    pub softirq_cpu_s: f64,
    /// otsensor only: packet → alert latency p99 of the run, if it raised alerts.
    pub alert_p99_ns: Option<u64>,
}

impl Trial {
    /// CPU seconds per million packets sent, process and softirq together.
    pub fn cpu_per_mpkt(&self) -> f64 {
        (self.process_cpu_s + self.softirq_cpu_s) * 1e6 / self.sent.max(1) as f64
    }
}

/// Clock ticks per second of /proc's CPU times (USER_HZ; 100 on Linux).
const USER_HZ: f64 = 100.0;

/// User+system CPU seconds of process `pid` (all its threads), from /proc/PID/stat.
fn process_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces: fields are counted after its closing ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, utime 14, stime 15 (proc(5)), so indices 11 and 12.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / USER_HZ
}

/// Softirq CPU seconds of the whole machine so far (the `cpu` line of /proc/stat).
fn softirq_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .find(|l| l.starts_with("cpu "))
        .and_then(|l| l.split_whitespace().nth(7))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |ticks| ticks / USER_HZ)
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
    fn create(queues: u32) -> Result<Lab> {
        // The guard exists before the first namespace, so a failing step still cleans up.
        let mut lab = testlab::Lab::new("lb")?;
        let pair = lab.pair(queues)?;
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

    /// Sends the mix once at `pps` (0: top speed); returns (packets sent, achieved pps).
    fn send(&self, pps: u64) -> Result<(u64, f64)> {
        let sender = self.sender.as_ref().context("the sender is not open")?;
        let sent = sender.send(sender_count(sender), pps)?;
        Ok((sent.packets, sent.pps()))
    }

    fn trial(&mut self, capturer: Capturer, bench: &LiveBench, pps: u64) -> Result<Trial> {
        let lines = self.start(capturer, bench)?;
        let pid = self.capturer.as_ref().map_or(0, Child::id);
        let (cpu_before, softirq_before) = (process_cpu_s(pid), softirq_cpu_s());
        let sent = self.send(pps);
        std::thread::sleep(Duration::from_millis(100));
        let softirq = softirq_cpu_s() - softirq_before;
        // Let the capturer read what is queued before it is told to stop: otsensor
        // drains its rings on SIGINT anyway; tcpdump leaves unread whatever sits in a
        // TPACKET_V3 block that its 1 s block timeout has not yet handed over.
        std::thread::sleep(match capturer {
            Capturer::Otsensor => Duration::from_millis(400),
            Capturer::Tcpdump => Duration::from_millis(1900),
        });
        let process = process_cpu_s(pid) - cpu_before;
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
            process_cpu_s: process,
            softirq_cpu_s: softirq,
            alert_p99_ns,
        })
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

/// Packets per trial: the whole mix once.
fn sender_count(sender: &crate::sender::Sender) -> u64 {
    sender.frame_count() as u64
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
fn search(lab: &mut Lab, capturer: Capturer, bench: &LiveBench) -> Result<Found> {
    let mut trials = Vec::new();
    let mut sender_bound = false;
    let mut best: Option<Trial> = None;
    let mut first_lossy: Option<u64> = None;
    let mut pps = bench.start_pps.max(1);
    while pps <= bench.max_pps {
        let trial = lab.trial(capturer, bench, pps)?;
        report_trial(capturer, &trial);
        trials.push(trial);
        if trial.lost > 0 {
            first_lossy = Some(pps);
            break;
        }
        // The sender saturated: asking for more only repeats this trial.
        let saturated = trial.achieved_pps < 0.9 * pps as f64;
        best = Some(trial);
        if saturated {
            sender_bound = true;
            break;
        }
        pps *= 2;
    }
    if let Some(mut high) = first_lossy {
        let mut low = best.map_or(0, |t| t.requested_pps);
        for _ in 0..bench.refine {
            let mid = (low + high) / 2;
            if mid <= low || mid >= high {
                break;
            }
            let trial = lab.trial(capturer, bench, mid)?;
            report_trial(capturer, &trial);
            trials.push(trial);
            if trial.lost == 0 {
                low = mid;
                best = Some(trial);
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
    let mut lab = Lab::create(bench.queues)?;
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
    let (ceiling_sent, ceiling_pps) = lab.send(0)?;
    eprintln!("  sender alone: {ceiling_sent} frames at {ceiling_pps:.0} pps");
    let mut results = Vec::new();
    for capturer in [Capturer::Otsensor, Capturer::Tcpdump] {
        results.push((capturer, search(&mut lab, capturer, bench)?));
    }
    let rate = |i: usize| {
        results
            .get(i)
            .and_then(|r: &(Capturer, Found)| r.1.best)
            .map_or(0.0, |t| t.achieved_pps)
    };
    let common = if bench.cpu_pps > 0 {
        bench.cpu_pps
    } else {
        (rate(0).min(rate(1)) as u64 / 1000 * 1000).max(1000)
    };
    let mut at_common = Vec::new();
    for capturer in [Capturer::Otsensor, Capturer::Tcpdump] {
        let trial = lab.trial(capturer, bench, common)?;
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
        let best = found.best.map_or("none".to_owned(), |t| {
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
        "\nat {common} pps: | capturer | lost | process CPU s | softirq CPU s | CPU s per Mpkt |"
    );
    println!("|---|---|---|---|---|");
    for (capturer, trial) in &at_common {
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.3} |",
            capturer.name(),
            trial.lost,
            trial.process_cpu_s,
            trial.softirq_cpu_s,
            trial.cpu_per_mpkt()
        );
    }
    if let [(_, ours), (_, theirs)] = at_common.as_slice() {
        if theirs.cpu_per_mpkt() > 0.0 {
            println!(
                "CPU per packet otsensor / tcpdump: {:.2}",
                ours.cpu_per_mpkt() / theirs.cpu_per_mpkt()
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
