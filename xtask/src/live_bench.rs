//! `cargo xtask live-bench`: the highest send rate with zero loss for `otsensor run`
//! (XDP + AF_XDP) and, in the same run on the same traffic, for `tcpdump -w /dev/null`
//! (AF_PACKET), on a veth pair between two network namespaces.
//!
//! For each capturer the sender replays the generated mix at increasing packet rates
//! (doubling from `--start-pps`, then bisecting between the last clean and the first
//! lossy rate), and a trial is clean when the capturer lost nothing:
//! - otsensor: frames the XDP program never saw (sent − the program's verdicts), frames
//!   redirected to a queue with no socket, the sockets' kernel drops (XDP_STATISTICS) and
//!   unaccounted frames, all from its `--summary-json`;
//! - tcpdump: "dropped by kernel" from its exit statistics plus frames it never
//!   captured (sent − captured).
//!
//! Needs root, `ip`, `nsenter`, `tcpreplay` and `tcpdump`. A guard deletes the
//! namespaces (and with them the veth pair) and kills the capturers on every exit path.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::testlab::{self, run};

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
}

/// One trial: a capturer, a requested rate, what the sender achieved, what was lost.
#[derive(Debug, Clone, Copy)]
pub struct Trial {
    pub requested_pps: u64,
    pub achieved_pps: f64,
    pub sent: u64,
    pub lost: u64,
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
        let mut command = Command::new("nsenter");
        command.arg(format!("--net=/run/netns/{}", self.pair.rx_ns));
        let ready_marker = match capturer {
            Capturer::Otsensor => {
                let _ = std::fs::remove_file(self.summary());
                command
                    .arg(&bench.otsensor)
                    .args(["run", "--interface", &self.pair.rx_if, "--workers"])
                    .arg(bench.workers.to_string())
                    .arg("--summary-json")
                    .arg(self.summary());
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
        // tcpdump prints "listening" just before its first poll; give both a moment.
        std::thread::sleep(Duration::from_millis(300));
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
        Ok(lines.try_iter().collect())
    }

    /// Replays the mix once at `pps` (0: top speed); returns (packets sent, achieved pps).
    fn send(&self, pps: u64) -> Result<(u64, f64)> {
        let pcap = self.pcap().to_string_lossy().into_owned();
        let rate = if pps == 0 {
            "--topspeed".to_owned()
        } else {
            format!("--pps={pps}")
        };
        #[rustfmt::skip]
        let out = run("ip", &["netns", "exec", &self.pair.tx_ns, "tcpreplay", &rate, "-i",
                              &self.pair.tx_if, &pcap])?;
        let number_after = |label: &str| -> Option<f64> {
            let line = out.lines().find(|l| l.trim_start().starts_with(label))?;
            let rest = line.split_once(label)?.1.trim();
            rest.split_whitespace().next()?.parse().ok()
        };
        let sent = number_after("Successful packets:").context("tcpreplay: no packet count")?;
        // "Rated: 7413436.3 Bps, 59.30 Mbps, 16271.26 pps"
        let achieved = out
            .lines()
            .find(|l| l.trim_start().starts_with("Rated:"))
            .and_then(|l| l.split(',').nth(2))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0.0);
        Ok((sent as u64, achieved))
    }

    fn trial(&mut self, capturer: Capturer, bench: &LiveBench, pps: u64) -> Result<Trial> {
        let lines = self.start(capturer, bench)?;
        let sent = self.send(pps);
        // Let the capturer read what is queued before it is told to stop: otsensor
        // drains its rings on SIGINT anyway; tcpdump leaves unread whatever sits in a
        // TPACKET_V3 block that its 1 s block timeout has not yet handed over.
        std::thread::sleep(match capturer {
            Capturer::Otsensor => Duration::from_millis(500),
            Capturer::Tcpdump => Duration::from_millis(2000),
        });
        let stderr = self.stop(lines)?;
        let (sent, achieved_pps) = sent?;
        let lost = match capturer {
            Capturer::Otsensor => otsensor_loss(&self.summary(), sent)?,
            Capturer::Tcpdump => tcpdump_loss(&stderr, sent)?,
        };
        Ok(Trial {
            requested_pps: pps,
            achieved_pps,
            sent,
            lost,
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
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
fn otsensor_loss(summary: &Path, sent: u64) -> Result<u64> {
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
    Ok(lost)
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
        let saturated = trial.achieved_pps < 0.8 * pps as f64;
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
    for tool in ["ip", "nsenter", "tcpreplay", "tcpdump", "ethtool"] {
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
    eprintln!(
        "live-bench: {} packets, {} flows, {} devices; veth pair with {} queues",
        truth.packets, truth.flows, truth.devices, bench.queues
    );
    let mut results = Vec::new();
    for capturer in [Capturer::Otsensor, Capturer::Tcpdump] {
        results.push((capturer, search(&mut lab, capturer, bench)?));
    }
    drop(lab);
    println!("| capturer | highest zero-loss rate (sent) | trials |");
    println!("|---|---|---|");
    for (capturer, found) in &results {
        let best = found.best.map_or("none".to_owned(), |t| {
            format!("{:.0} pps (asked {})", t.achieved_pps, t.requested_pps)
        });
        println!("| {} | {best} | {} |", capturer.name(), found.trials.len());
    }
    let rate = |i: usize| {
        results
            .get(i)
            .and_then(|r| r.1.best)
            .map_or(0.0, |t| t.achieved_pps)
    };
    if rate(1) > 0.0 {
        println!("\nratio otsensor / tcpdump: {:.2}", rate(0) / rate(1));
    }
    for (capturer, found) in &results {
        if found.sender_bound {
            println!(
                "{}: no loss up to the sender's ceiling (a lower bound)",
                capturer.name()
            );
        }
    }
    println!("elapsed {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
