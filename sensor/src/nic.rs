//! `otsensor nic-setup`: checks and sets what capture needs on the capture NIC, with the
//! `ip` and `ethtool` commands (what an operator would type, and what the printed
//! report repeats): link up, promiscuous mode, queue count, ring sizes, offloads that
//! change frames before the sensor sees them (GRO, LRO, VLAN stripping) off, symmetric
//! RSS, and IRQ affinity (queue q's interrupts on CPU q mod CPUs, the worker pinning).
//!
//! **Every step reads before it writes**, so a second run changes nothing; with
//! `dry_run` nothing is written and each step says what it would run.

use std::fmt;
use std::path::Path;
use std::process::Command;

/// Why nic-setup could not run at all (single steps report their own failures).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("interface {0:?} does not exist (see `ip link`)")]
    NoInterface(String),
    #[error("cannot run {command}: {source} (install iproute2 and ethtool: scripts/deps.sh)")]
    Tool {
        command: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// What one step found or did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Already as capture needs it.
    Ok,
    /// Changed now.
    Changed,
    /// Dry run: would be changed.
    WouldChange,
    /// The driver cannot do it (reported, not an error).
    Unsupported,
    /// The change was tried and failed.
    Failed,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::WouldChange => "would change",
            Status::Unsupported => "unsupported",
            Status::Failed => "FAILED",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub check: String,
    pub status: Status,
    pub detail: String,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:<12}] {:<28} {}",
            self.status.label(),
            self.check,
            self.detail
        )
    }
}

/// What to set.
#[derive(Clone, Debug)]
pub struct Options {
    pub interface: String,
    /// Receive queues wanted (one per worker); none keeps the current count.
    pub queues: Option<u32>,
    pub dry_run: bool,
}

/// The result of a run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub steps: Vec<Step>,
}

impl Report {
    pub fn count(&self, status: Status) -> usize {
        self.steps.iter().filter(|s| s.status == status).count()
    }
}

/// Offloads that make the frames the sensor sees differ from the wire: merged segments
/// (GRO, LRO, hardware GRO, GRO lists) and removed VLAN tags (802.1Q, 802.1ad stripping).
/// Names as `ethtool -k` prints them.
pub const OFFLOADS_OFF: [&str; 7] = [
    "generic-receive-offload",
    "large-receive-offload",
    "rx-gro-hw",
    "rx-gro-list",
    "rx-udp-gro-forwarding",
    "rx-vlan-offload",
    "rx-vlan-stag-hw-parse",
];

/// A 40-byte Toeplitz key of repeated 0x6d5a makes the hash symmetric (the same
/// for both directions of a flow): Woo and Park, "Scalable TCP Session Monitoring with
/// Symmetric Receive-side Scaling" (2012).
const SYMMETRIC_KEY_WORD: [u8; 2] = [0x6d, 0x5a];

/// `IFF_UP`, `IFF_PROMISC` (uapi/linux/if.h).
const IFF_UP: u32 = 0x1;
const IFF_PROMISC: u32 = 0x100;

/// Runs a command; `Ok(stdout)` on exit 0, `Err(stderr or stdout)` otherwise.
fn run(program: &'static str, args: &[&str]) -> Result<Result<String, String>, Error> {
    let output = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| Error::Tool {
            command: program,
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(Ok(stdout))
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        Ok(Err(if stderr.is_empty() {
            stdout.trim().to_owned()
        } else {
            stderr
        }))
    }
}

/// The interface's flags from sysfs.
pub fn interface_flags(interface: &str) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{interface}/flags")).ok()?;
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

/// The `key: value` lines of one block of ethtool output (e.g. after "Pre-set maximums").
fn ethtool_block(text: &str, heading: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut fields = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with(heading) {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if value.trim().is_empty() && !fields.is_empty() {
            break; // the next heading
        }
        fields.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    fields
}

fn field_number(fields: &[(String, String)], key: &str) -> Option<u32> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// `ethtool -k` output: feature → (on, fixed).
pub fn parse_features(text: &str) -> Vec<(String, bool, bool)> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.trim().split_once(':')?;
            let value = value.trim();
            let on = value.starts_with("on");
            let fixed = value.contains("[fixed]");
            Some((name.to_owned(), on, fixed))
        })
        .collect()
}

struct Setup<'a> {
    options: &'a Options,
    steps: Vec<Step>,
}

impl Setup<'_> {
    fn push(&mut self, check: impl Into<String>, status: Status, detail: impl Into<String>) {
        let step = Step {
            check: check.into(),
            status,
            detail: detail.into(),
        };
        println!("{step}");
        self.steps.push(step);
    }

    /// Applies (or, in a dry run, announces) `command`; records the outcome.
    fn change(
        &mut self,
        check: &str,
        what: &str,
        program: &'static str,
        args: &[&str],
    ) -> Result<(), Error> {
        let shown = format!("{program} {}", args.join(" "));
        if self.options.dry_run {
            self.push(check, Status::WouldChange, format!("{what}: `{shown}`"));
            return Ok(());
        }
        match run(program, args)? {
            Ok(_) => self.push(check, Status::Changed, format!("{what}: `{shown}`")),
            Err(reason) => self.push(
                check,
                Status::Failed,
                format!("{what}: `{shown}` failed: {reason}"),
            ),
        }
        Ok(())
    }

    fn link(&mut self) -> Result<(), Error> {
        let name = self.options.interface.clone();
        let flags = interface_flags(&name).unwrap_or(0);
        if flags & IFF_UP != 0 {
            self.push("link up", Status::Ok, "up");
        } else {
            self.change(
                "link up",
                "down → up",
                "ip",
                &["link", "set", "dev", &name, "up"],
            )?;
        }
        if flags & IFF_PROMISC != 0 {
            self.push("promiscuous mode", Status::Ok, "on");
        } else {
            self.change(
                "promiscuous mode",
                "off → on",
                "ip",
                &["link", "set", "dev", &name, "promisc", "on"],
            )?;
        }
        Ok(())
    }

    fn queues(&mut self) -> Result<(), Error> {
        let name = self.options.interface.clone();
        let text = match run("ethtool", &["-l", &name])? {
            Ok(text) => text,
            Err(reason) => {
                self.push(
                    "queues",
                    Status::Unsupported,
                    format!("`ethtool -l`: {reason}"),
                );
                return Ok(());
            }
        };
        let max = ethtool_block(&text, "Pre-set maximums");
        let current = ethtool_block(&text, "Current hardware settings");
        // Most NICs have combined (RX+TX) channels; veth and some others have RX only.
        let kind = if field_number(&max, "Combined").is_some_and(|n| n > 0) {
            "combined"
        } else {
            "rx"
        };
        let key = if kind == "combined" { "Combined" } else { "RX" };
        let (Some(now), Some(limit)) = (field_number(&current, key), field_number(&max, key))
        else {
            self.push("queues", Status::Unsupported, "no queue counts reported");
            return Ok(());
        };
        match self.options.queues {
            None => self.push(
                "queues",
                Status::Ok,
                format!("{now} {kind} (max {limit}; --queues N sets them, one per worker)"),
            ),
            Some(wanted) if wanted == now => {
                self.push("queues", Status::Ok, format!("{now} {kind}"))
            }
            Some(wanted) if wanted > limit || wanted == 0 => self.push(
                "queues",
                Status::Failed,
                format!("--queues {wanted}: the NIC allows 1 to {limit} {kind} queues"),
            ),
            Some(wanted) => {
                let count = wanted.to_string();
                self.change(
                    "queues",
                    &format!("{now} → {wanted} {kind}"),
                    "ethtool",
                    &["-L", &name, kind, &count],
                )?;
            }
        }
        Ok(())
    }

    fn rings(&mut self) -> Result<(), Error> {
        let name = self.options.interface.clone();
        let text = match run("ethtool", &["-g", &name])? {
            Ok(text) => text,
            Err(reason) => {
                self.push(
                    "RX ring size",
                    Status::Unsupported,
                    format!("`ethtool -g`: {reason}"),
                );
                return Ok(());
            }
        };
        let max = field_number(&ethtool_block(&text, "Pre-set maximums"), "RX");
        let now = field_number(&ethtool_block(&text, "Current hardware settings"), "RX");
        match (now, max) {
            (Some(now), Some(max)) if now >= max => {
                self.push("RX ring size", Status::Ok, format!("{now} (the maximum)"))
            }
            // Deeper rings absorb bursts while a worker is busy: set the maximum.
            (Some(now), Some(max)) => {
                let value = max.to_string();
                self.change(
                    "RX ring size",
                    &format!("{now} → {max}"),
                    "ethtool",
                    &["-G", &name, "rx", &value],
                )?;
            }
            _ => self.push(
                "RX ring size",
                Status::Unsupported,
                "no ring sizes reported",
            ),
        }
        Ok(())
    }

    fn offloads(&mut self) -> Result<(), Error> {
        let name = self.options.interface.clone();
        let text = match run("ethtool", &["-k", &name])? {
            Ok(text) => text,
            Err(reason) => {
                self.push(
                    "offloads",
                    Status::Unsupported,
                    format!("`ethtool -k`: {reason}"),
                );
                return Ok(());
            }
        };
        let features = parse_features(&text);
        for wanted in OFFLOADS_OFF {
            let check = format!("offload {wanted}");
            match features.iter().find(|(n, _, _)| n == wanted) {
                None => self.push(check, Status::Ok, "not present"),
                Some((_, false, _)) => self.push(check, Status::Ok, "off"),
                Some((_, true, true)) => self.push(
                    check,
                    Status::Unsupported,
                    "on and fixed by the driver: frames may differ from the wire",
                ),
                Some((_, true, false)) => {
                    self.change(&check, "on → off", "ethtool", &["-K", &name, wanted, "off"])?
                }
            }
        }
        Ok(())
    }

    fn rss(&mut self) -> Result<(), Error> {
        let name = self.options.interface.clone();
        let text = match run("ethtool", &["-x", &name])? {
            Ok(text) => text,
            Err(reason) => {
                self.push(
                    "symmetric RSS",
                    Status::Unsupported,
                    format!(
                        "`ethtool -x`: {reason} (the driver has no RSS key; otsensor hands \
                         frames to their flow's worker in software, counted in \
                         otsensor_handoff_frames_total)"
                    ),
                );
                return Ok(());
            }
        };
        let key = rss_key(&text);
        let hfunc_toeplitz = text
            .lines()
            .any(|l| l.trim().eq_ignore_ascii_case("toeplitz: on"));
        match key {
            Some(key) if !key.is_empty() => {
                let symmetric = symmetric_key(key.len());
                if key == symmetric && hfunc_toeplitz {
                    self.push("symmetric RSS", Status::Ok, "toeplitz with a symmetric key");
                } else {
                    let hex = symmetric
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":");
                    self.change(
                        "symmetric RSS",
                        "toeplitz with a symmetric key",
                        "ethtool",
                        &["-X", &name, "hkey", &hex, "hfunc", "toeplitz"],
                    )?;
                }
            }
            _ => self.push(
                "symmetric RSS",
                Status::Unsupported,
                "the driver reports no RSS hash key",
            ),
        }
        // Hash on addresses and ports, so both directions pick the same queue.
        for flow_type in ["tcp4", "udp4", "tcp6", "udp6"] {
            let check = format!("rx-flow-hash {flow_type}");
            match run("ethtool", &["-n", &name, "rx-flow-hash", flow_type])? {
                Err(reason) => self.push(check, Status::Unsupported, reason),
                Ok(text) => {
                    let ports = text.contains("L4 bytes 0 & 1") && text.contains("L4 bytes 2 & 3");
                    let addresses = text.contains("IP SA") && text.contains("IP DA");
                    if ports && addresses {
                        self.push(check, Status::Ok, "addresses and ports");
                    } else {
                        self.change(
                            &check,
                            "hash on addresses and ports",
                            "ethtool",
                            &["-N", &name, "rx-flow-hash", flow_type, "sdfn"],
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    fn irq_affinity(&mut self) -> Result<(), Error> {
        let irqs = queue_irqs(&self.options.interface);
        if irqs.is_empty() {
            self.push(
                "IRQ affinity",
                Status::Unsupported,
                "no IRQs for this interface (a virtual interface such as veth has none)",
            );
            return Ok(());
        }
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        for (queue, irq) in irqs.iter().enumerate() {
            let cpu = (queue % cpus).to_string();
            let path = format!("/proc/irq/{irq}/smp_affinity_list");
            let now = std::fs::read_to_string(&path).unwrap_or_default();
            let check = format!("IRQ {irq} (queue {queue})");
            if now.trim() == cpu {
                self.push(check, Status::Ok, format!("CPU {cpu}"));
            } else if self.options.dry_run {
                self.push(
                    check,
                    Status::WouldChange,
                    format!("CPU {} → {cpu}: write {path}", now.trim()),
                );
            } else {
                match std::fs::write(&path, &cpu) {
                    Ok(()) => self.push(
                        check,
                        Status::Changed,
                        format!("CPU {} → {cpu}", now.trim()),
                    ),
                    Err(error) => {
                        self.push(check, Status::Failed, format!("write {path}: {error}"))
                    }
                }
            }
        }
        Ok(())
    }
}

/// The hash key from `ethtool -x` output (the line(s) after "RSS hash key:").
fn rss_key(text: &str) -> Option<Vec<u8>> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("RSS hash key"));
    lines.next()?;
    let mut key = Vec::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() || line.contains(' ') || !line.contains(':') && line.len() > 2 {
            break;
        }
        for byte in line.split(':') {
            key.push(u8::from_str_radix(byte, 16).ok()?);
        }
    }
    Some(key)
}

fn symmetric_key(len: usize) -> Vec<u8> {
    SYMMETRIC_KEY_WORD
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// The IRQs of the interface's queues, in queue order: MSI vectors named after the
/// interface in /proc/interrupts (e.g. `eth0-TxRx-3`), else the device's MSI list.
pub fn queue_irqs(interface: &str) -> Vec<u32> {
    let text = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    let mut named: Vec<u32> = text
        .lines()
        .filter(|line| {
            line.split_whitespace()
                .last()
                .is_some_and(|name| name.starts_with(&format!("{interface}-")))
        })
        .filter_map(|line| line.split(':').next()?.trim().parse().ok())
        .collect();
    if named.is_empty() {
        let dir = Path::new("/sys/class/net")
            .join(interface)
            .join("device/msi_irqs");
        if let Ok(entries) = std::fs::read_dir(dir) {
            named = entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            named.sort_unstable();
        }
    }
    named
}

/// Runs every step on `options.interface` and prints each as it goes.
pub fn setup(options: &Options) -> Result<Report, Error> {
    if !Path::new("/sys/class/net")
        .join(&options.interface)
        .exists()
    {
        return Err(Error::NoInterface(options.interface.clone()));
    }
    let mut setup = Setup {
        options,
        steps: Vec::new(),
    };
    setup.link()?;
    setup.queues()?;
    setup.rings()?;
    setup.offloads()?;
    setup.rss()?;
    setup.irq_affinity()?;
    Ok(Report { steps: setup.steps })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANNELS: &str = "Channel parameters for eth0:\nPre-set maximums:\nRX:\t\tn/a\nTX:\t\tn/a\nOther:\t\t1\nCombined:\t8\nCurrent hardware settings:\nRX:\t\tn/a\nTX:\t\tn/a\nOther:\t\t1\nCombined:\t4\n";

    #[test]
    fn channel_blocks_are_read_separately() {
        let max = ethtool_block(CHANNELS, "Pre-set maximums");
        let now = ethtool_block(CHANNELS, "Current hardware settings");
        assert_eq!(field_number(&max, "Combined"), Some(8));
        assert_eq!(field_number(&now, "Combined"), Some(4));
        assert_eq!(field_number(&now, "RX"), None);
    }

    #[test]
    fn features_and_rss_key_parse() {
        let features = parse_features(
            "Features for eth0:\ngeneric-receive-offload: on\nlarge-receive-offload: off [fixed]\nrx-vlan-offload: on [fixed]\n",
        );
        assert!(features.contains(&("generic-receive-offload".into(), true, false)));
        assert!(features.contains(&("large-receive-offload".into(), false, true)));
        assert!(features.contains(&("rx-vlan-offload".into(), true, true)));
        let key = rss_key(
            "RX flow hash indirection table for eth0 with 4 RX ring(s):\n    0:      0     1     2     3\nRSS hash key:\n6d:5a:6d:5a\nRSS hash function:\n    toeplitz: on\n",
        );
        assert_eq!(key, Some(vec![0x6d, 0x5a, 0x6d, 0x5a]));
        assert_eq!(symmetric_key(4), vec![0x6d, 0x5a, 0x6d, 0x5a]);
    }
}
