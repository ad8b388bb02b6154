//! `otsensor replay`'s progress line: bytes and packets read, rate, ETA and alerts so
//! far, redrawn on stderr five times a second while a long capture replays. Only on a
//! terminal and without `--quiet`: piped or logged output stays exactly as before.
//!
//! It reads the run's `Metrics` (the reader's packet and byte counters, folded once per
//! batch, and the alert counter) from its own thread, so the pipeline does nothing for
//! it. The position in the files is estimated from the captured bytes plus the record
//! headers (16 bytes a packet in pcap; pcapng's blocks are a little larger, so the ETA
//! errs on the long side there).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use otsensor::metrics::Metrics;
use prometheus::core::Collector;

/// Per-record overhead of a classic pcap file (the record header).
const RECORD_HEADER: u64 = 16;

/// The running progress line; [`Progress::finish`] stops it and clears the line.
pub struct Progress {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts the line when stderr is a terminal and `quiet` is not set.
    pub fn start(files: &[PathBuf], metrics: Arc<Metrics>, quiet: bool) -> Option<Progress> {
        if quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        let total: u64 = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let thread = std::thread::Builder::new()
            .name("otsensor-progress".into())
            .spawn(move || {
                let started = Instant::now();
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    let line = render(&Reading {
                        packets: metrics.reader_packets.get(),
                        bytes: metrics.reader_bytes.get(),
                        alerts: alerts(&metrics),
                        total_file_bytes: total,
                        elapsed: started.elapsed(),
                    });
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r\x1b[2K{line}");
                    let _ = err.flush();
                }
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K");
                let _ = err.flush();
            })
            .ok()?;
        Some(Progress {
            done,
            thread: Some(thread),
        })
    }

    /// Stops the line and clears it, before the summary is printed.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

fn alerts(metrics: &Metrics) -> u64 {
    metrics
        .alerts
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// One look at the counters.
#[derive(Debug, Clone, Copy)]
struct Reading {
    packets: u64,
    bytes: u64,
    alerts: u64,
    total_file_bytes: u64,
    elapsed: Duration,
}

fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The line: `replay  42.0% 1.2 GiB of 2.9 GiB  8.1 M packets  410.2 k pkt/s  ETA 5m12s  alerts 3`.
fn render(r: &Reading) -> String {
    let secs = r.elapsed.as_secs_f64().max(1e-3);
    let position = r.bytes + r.packets * RECORD_HEADER;
    let rate = r.packets as f64 / secs;
    let mut line = String::from("replay ");
    if r.total_file_bytes > 0 {
        let fraction = (position as f64 / r.total_file_bytes as f64).min(1.0);
        line.push_str(&format!(
            " {:5.1}% {} of {}",
            fraction * 100.0,
            human_bytes(position.min(r.total_file_bytes) as f64),
            human_bytes(r.total_file_bytes as f64)
        ));
        let eta = if fraction > 0.0 {
            human_duration(Duration::from_secs_f64(secs * (1.0 - fraction) / fraction))
        } else {
            "?".to_owned()
        };
        line.push_str(&format!(
            "  {} packets  {} pkt/s  ETA {eta}",
            si(r.packets as f64),
            si(rate)
        ));
    } else {
        line.push_str(&format!(
            " {} read  {} packets  {} pkt/s",
            human_bytes(position as f64),
            si(r.packets as f64),
            si(rate)
        ));
    }
    line.push_str(&format!("  alerts {}", r.alerts));
    line
}

fn si(value: f64) -> String {
    if value >= 1e9 {
        format!("{:.2} G", value / 1e9)
    } else if value >= 1e6 {
        format!("{:.2} M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1} k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halfway_through_a_file_the_eta_equals_the_time_so_far() {
        let line = render(&Reading {
            packets: 1_000_000,
            bytes: 84_000_000,
            alerts: 3,
            // (84 MB + 16 MB of record headers) is half the file.
            total_file_bytes: 200_000_000,
            elapsed: Duration::from_secs(10),
        });
        assert!(line.contains(" 50.0%"), "{line}");
        assert!(line.contains("1.00 M packets"), "{line}");
        assert!(line.contains("100.0 k pkt/s"), "{line}");
        assert!(line.contains("ETA 10s"), "{line}");
        assert!(line.ends_with("alerts 3"), "{line}");
    }

    #[test]
    fn no_size_known_shows_what_was_read() {
        let line = render(&Reading {
            packets: 10,
            bytes: 1000,
            alerts: 0,
            total_file_bytes: 0,
            elapsed: Duration::from_secs(1),
        });
        assert!(line.contains("1.1 KiB read"), "{line}");
        assert!(!line.contains("ETA"), "{line}");
    }
}
