//! `otsensor doctor --interface IF`: can this box capture on IF, and how well? Checks the
//! kernel (version, BTF, bpf() permitted, AF_XDP sockets), the interface (driver,
//! queues, link), which XDP modes attach (the real program, attached and detached
//! again), zero-copy, memlock, CPUs and hugepages; each line OK, WARN or FAIL, then a
//! verdict and what to fix. Nothing is left behind: the program is detached and the
//! probe sockets closed before the report ends.
//!
//! Run it while otsensor is stopped: the XDP probes need the interface free.

use std::fmt;
use std::path::Path;

use crate::capture::afxdp::{self, QueueSocket, SocketSettings, ZeroCopy};
use crate::ebpf::{AttachMode, AttachedMode, XdpFilter, XdpSettings};

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One line of the report, and what to do about it when it is not OK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub check: &'static str,
    pub detail: String,
    pub fix: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<5} {:<18} {}",
            self.level.label(),
            self.check,
            self.detail
        )
    }
}

/// The whole report.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    /// The worst level found.
    pub fn verdict(&self) -> Level {
        self.findings
            .iter()
            .map(|f| f.level)
            .max()
            .unwrap_or(Level::Ok)
    }

    pub fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.level == level).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        writeln!(
            f,
            "verdict: {} ({} warnings, {} failures)",
            self.verdict().label(),
            self.count(Level::Warn),
            self.count(Level::Fail)
        )?;
        let fixes: Vec<&Finding> = self.findings.iter().filter(|f| f.fix.is_some()).collect();
        if !fixes.is_empty() {
            writeln!(f, "what to fix:")?;
            for finding in fixes {
                if let Some(fix) = &finding.fix {
                    writeln!(
                        f,
                        "  - {} ({}): {fix}",
                        finding.check,
                        finding.level.label()
                    )?;
                }
            }
        }
        Ok(())
    }
}

struct Doctor {
    findings: Vec<Finding>,
}

impl Doctor {
    fn ok(&mut self, check: &'static str, detail: impl Into<String>) {
        self.findings.push(Finding {
            level: Level::Ok,
            check,
            detail: detail.into(),
            fix: None,
        });
    }

    fn flag(
        &mut self,
        level: Level,
        check: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.findings.push(Finding {
            level,
            check,
            detail: detail.into(),
            fix: Some(fix.into()),
        });
    }
}

/// `major.minor` of a kernel release string such as `6.8.0-45-generic`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A value in kB from /proc/meminfo, or a count (HugePages_*).
fn meminfo(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| {
            l.strip_prefix(key)
                .is_some_and(|rest| rest.starts_with(':'))
        })
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The soft memlock limit from /proc/self/limits: `None` means unlimited.
fn memlock_limit() -> Option<Option<u64>> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max locked memory"))?;
    let soft = line
        .trim_start_matches("Max locked memory")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        Some(None)
    } else {
        soft.parse().ok().map(Some)
    }
}

fn driver(interface: &str) -> Option<String> {
    let link = Path::new("/sys/class/net")
        .join(interface)
        .join("device/driver");
    if let Ok(target) = std::fs::read_link(link) {
        if let Some(name) = target.file_name().and_then(|n| n.to_str()) {
            return Some(name.to_owned());
        }
    }
    // Virtual interfaces (veth, bridges) have no device directory; ethtool knows.
    let output = std::process::Command::new("ethtool")
        .args(["-i", interface])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("driver:").map(|d| d.trim().to_owned()))
        .filter(|d| !d.is_empty())
}

/// Tries to attach the pre-filter in `mode` and detaches it again.
fn try_attach(interface: &str, mode: AttachMode) -> Result<AttachedMode, String> {
    let settings = XdpSettings {
        mode,
        ..XdpSettings::default()
    };
    let mut filter = XdpFilter::load(&settings).map_err(|e| e.to_string())?;
    let report = filter.attach(interface).map_err(|e| e.to_string())?;
    filter.detach().map_err(|e| e.to_string())?;
    Ok(report.mode)
}

/// Runs every check on `interface`.
pub fn diagnose(interface: &str) -> Report {
    let mut doctor = Doctor {
        findings: Vec::new(),
    };
    // Read memlock first: loading a BPF object raises it when permitted.
    let memlock = memlock_limit();

    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let version = kernel_version(&release);
    match version {
        Some(v) if v >= (5, 11) => doctor.ok("kernel", release.clone()),
        Some(v) if v >= (5, 4) => doctor.flag(
            Level::Warn,
            "kernel",
            format!("{release}: older than 5.11"),
            "BPF memory is charged to RLIMIT_MEMLOCK before 5.11 and AF_XDP is slower; prefer a 5.15+ kernel",
        ),
        _ => doctor.flag(
            Level::Fail,
            "kernel",
            format!("{release}: older than 5.4 or unreadable"),
            "otsensor needs Linux 5.4 or later (AF_XDP, BPF_PROG_TEST_RUN for XDP); 5.15+ recommended",
        ),
    }

    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        doctor.ok("BTF", "/sys/kernel/btf/vmlinux present");
    } else {
        doctor.flag(
            Level::Warn,
            "BTF",
            "/sys/kernel/btf/vmlinux missing",
            "a kernel built with CONFIG_DEBUG_INFO_BTF=y gives better verifier messages",
        );
    }

    let bpf_permitted = match XdpFilter::load(&XdpSettings::default()) {
        Ok(_) => {
            doctor.ok("bpf()", "XDP program loaded and verified");
            true
        }
        Err(error) => {
            doctor.flag(
                Level::Fail,
                "bpf()",
                error.to_string(),
                "run as root or with CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON (the systemd unit grants them); check kernel.unprivileged_bpf_disabled does not matter for root",
            );
            false
        }
    };

    let exists = Path::new("/sys/class/net").join(interface).exists();
    if !exists {
        doctor.flag(
            Level::Fail,
            "interface",
            format!("{interface}: no such interface"),
            "pass the capture NIC's name (`ip link`)",
        );
    } else {
        let up = crate::nic::interface_flags(interface).is_some_and(|f| f & 1 != 0);
        if up {
            doctor.ok("interface", format!("{interface} up"));
        } else {
            doctor.flag(
                Level::Warn,
                "interface",
                format!("{interface} down"),
                format!("`ip link set dev {interface} up` (or `otsensor nic-setup --interface {interface}`)"),
            );
        }
        match driver(interface) {
            Some(name) => doctor.ok("driver", name),
            None => doctor.flag(
                Level::Warn,
                "driver",
                "unknown",
                "install ethtool (scripts/deps.sh) so the driver can be named",
            ),
        }
    }

    let queues = if exists {
        afxdp::active_rx_queues(interface)
    } else {
        0
    };
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if exists {
        // The capture opens one socket per active queue; inactive ones the driver
        // could offer are capacity left unused.
        let possible = afxdp::max_rx_queues(interface);
        if queues >= 1 && possible > queues {
            doctor.flag(
                Level::Warn,
                "queues",
                format!("{queues} RX queues active of {possible} possible"),
                format!(
                    "`otsensor run` captures on the {queues} active: for more workers, activate more (`otsensor nic-setup --interface {interface} --queues {possible}`)"
                ),
            );
        } else if queues >= 1 {
            doctor.ok(
                "queues",
                format!("{queues} RX queues (one worker and socket each)"),
            );
        } else {
            doctor.flag(
                Level::Fail,
                "queues",
                "no RX queues reported",
                "check `ethtool -l` for the interface",
            );
        }
    }

    if exists && bpf_permitted {
        let driver_mode = try_attach(interface, AttachMode::Driver);
        let generic_mode = try_attach(interface, AttachMode::Generic);
        match (&driver_mode, &generic_mode) {
            (Ok(_), Ok(_)) => doctor.ok("XDP modes", "driver (native) and generic"),
            (Ok(_), Err(_)) => doctor.ok("XDP modes", "driver (native)"),
            (Err(reason), Ok(_)) => doctor.flag(
                Level::Warn,
                "XDP modes",
                format!("generic only (driver mode: {reason})"),
                "generic XDP runs after the kernel built an skb: several times slower; use a NIC whose driver has native XDP (ice, i40e, ixgbe, mlx5, ...) for 10G",
            ),
            (Err(reason), Err(_)) => doctor.flag(
                Level::Fail,
                "XDP modes",
                format!("cannot attach: {reason}"),
                "detach the program already on the interface (`ip link set dev IF xdp off`) or stop the otsensor that holds it",
            ),
        }

        let copy = SocketSettings {
            zero_copy: ZeroCopy::Off,
            ..SocketSettings::default()
        };
        match QueueSocket::open(interface, 0, &copy) {
            Ok(_) => doctor.ok("AF_XDP sockets", "bound in copy mode on queue 0"),
            Err(error @ afxdp::Error::NoXdpSockets) => doctor.flag(
                Level::Fail,
                "AF_XDP sockets",
                error.to_string(),
                "use a kernel built with CONFIG_XDP_SOCKETS=y",
            ),
            Err(error) => doctor.flag(
                Level::Fail,
                "AF_XDP sockets",
                error.to_string(),
                "run as root or with CAP_NET_RAW, CAP_NET_ADMIN and CAP_IPC_LOCK",
            ),
        }
        let zero_copy = SocketSettings {
            zero_copy: ZeroCopy::Required,
            ..SocketSettings::default()
        };
        match QueueSocket::open(interface, 0, &zero_copy) {
            Ok(_) => doctor.ok("zero-copy", "supported"),
            Err(_) => doctor.flag(
                Level::Warn,
                "zero-copy",
                "not supported: copy mode (one copy per packet into the UMEM)",
                "for 10G use a NIC whose driver has AF_XDP zero-copy (ice, i40e, ixgbe, mlx5, igc)",
            ),
        }
    }

    // UMEM per queue at the default settings: frames × frame size.
    let defaults = SocketSettings::default();
    let umem_bytes = u64::from(defaults.frame_count) * u64::from(defaults.frame_size);
    let needed = umem_bytes * u64::from(queues.max(1));
    match memlock {
        Some(None) => doctor.ok("memlock", "unlimited"),
        Some(Some(limit)) if limit >= needed => {
            doctor.ok("memlock", format!("{} KiB", limit / 1024))
        }
        Some(Some(limit)) => doctor.flag(
            Level::Warn,
            "memlock",
            format!(
                "{} KiB; the UMEMs need {} KiB ({queues} queues)",
                limit / 1024,
                needed / 1024
            ),
            "otsensor raises it at start when permitted; otherwise set LimitMEMLOCK=infinity (systemd) or grant CAP_IPC_LOCK",
        ),
        None => doctor.flag(
            Level::Warn,
            "memlock",
            "unreadable",
            "check `ulimit -l`",
        ),
    }

    if queues as usize + 1 > cpus {
        doctor.flag(
            Level::Warn,
            "CPUs",
            format!("{cpus} CPUs for {queues} queues"),
            format!(
                "one worker per queue plus the analyzer wants {} CPUs: use fewer queues (`otsensor nic-setup --queues N`) or more cores",
                queues + 1
            ),
        );
    } else {
        doctor.ok("CPUs", format!("{cpus} CPUs"));
    }

    let meminfo_text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let free = meminfo(&meminfo_text, "HugePages_Free").unwrap_or(0);
    let size_kib = meminfo(&meminfo_text, "Hugepagesize").unwrap_or(0);
    doctor.ok(
        "hugepages",
        format!("{free} free of {size_kib} KiB (not required; UMEMs use normal pages)"),
    );

    Report {
        findings: doctor.findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.8.0-45-generic"), Some((6, 8)));
        assert_eq!(kernel_version("5.15.167.4-microsoft"), Some((5, 15)));
        assert_eq!(kernel_version("garbage"), None);
    }

    #[test]
    fn meminfo_reads_exact_keys() {
        let text =
            "HugePages_Total:       4\nHugePages_Free:        3\nHugepagesize:       2048 kB\n";
        assert_eq!(meminfo(text, "HugePages_Free"), Some(3));
        assert_eq!(meminfo(text, "Hugepagesize"), Some(2048));
        assert_eq!(meminfo(text, "HugePages"), None);
    }

    #[test]
    fn verdict_is_the_worst_finding_and_lists_fixes() {
        let report = Report {
            findings: vec![
                Finding {
                    level: Level::Ok,
                    check: "kernel",
                    detail: "6.8".into(),
                    fix: None,
                },
                Finding {
                    level: Level::Warn,
                    check: "zero-copy",
                    detail: "no".into(),
                    fix: Some("use ice".into()),
                },
            ],
        };
        assert_eq!(report.verdict(), Level::Warn);
        let text = report.to_string();
        assert!(
            text.contains("verdict: WARN (1 warnings, 0 failures)"),
            "{text}"
        );
        assert!(text.contains("  - zero-copy (WARN): use ice"), "{text}");
    }
}
