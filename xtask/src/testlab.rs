//! The test lab shared by kernel tests (`sensor/tests`, `xtask/tests`) and xtask
//! commands (`live-bench`): network namespaces, veth pairs between them, processes
//! started inside, and `tcpreplay` from the far end; plus the rule for tests whose
//! tools or privileges are missing.
//!
//! **Cleanup.** A [`Lab`] owns everything it creates — namespaces (deleting one
//! destroys the veth end inside it, and with it the pair), child processes, scratch
//! files — and removes them in `Drop`, so a failing assertion (a panic unwinding
//! through the test) still leaves the machine as it found it. [`Lab::leftovers`] lets a
//! test check that.
//!
//! **Skips.** A test that cannot run here (not root, a tool missing) calls [`skip`]:
//! under `CI=true` that fails the test; otherwise it prints a line starting with
//! `SKIPPED:` and, when `OTSENSOR_SKIP_LOG` names a file, appends the same line to it
//! (`scripts/test.sh` counts them: libtest hides a passing test's output).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use anyhow::{bail, Context, Result};

/// True when running in CI (`CI=true`), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Records that `test` did not run because of `reason`: panics under `CI=true`,
/// otherwise prints (and logs) `SKIPPED: test: reason`.
pub fn skip(test: &str, reason: &str) {
    let line = format!("SKIPPED: {test}: {reason}");
    assert!(
        !in_ci(),
        "{line} — CI=true forbids skipping (scripts/deps.sh installs the tools; kernel tests run as root)"
    );
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("OTSENSOR_SKIP_LOG") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// Where `program` is installed (PATH, then the sbin directories), if it is.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("Uid:"))
        .and_then(|line| line.split_whitespace().nth(2))
        .is_some_and(|uid| uid == "0")
}

/// True when every program in `tools` is installed; otherwise [`skip`]s `test`
/// (which fails it under `CI=true`) and returns false.
pub fn require_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| find_program(tool).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    skip(
        test,
        &format!(
            "missing {} (scripts/deps.sh installs them)",
            missing.join(", ")
        ),
    );
    false
}

/// True when this process is root; otherwise [`skip`]s `test` and returns false.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    skip(
        test,
        "needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)",
    );
    false
}

/// Root and the lab's own tools (`ip`, `nsenter`, `ethtool`, `tcpreplay`) plus `extra`.
pub fn require_lab(test: &str, extra: &[&str]) -> bool {
    let mut tools = vec!["ip", "nsenter", "ethtool", "tcpreplay"];
    tools.extend_from_slice(extra);
    require_root(test) && require_tools(test, &tools)
}

/// Runs a program to completion; its stdout, or an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The usual shape: two namespaces joined by a veth pair, the sender's end in `tx_ns`,
/// the capturing end in `rx_ns`.
#[derive(Clone, Debug)]
pub struct Pair {
    pub tx_ns: String,
    pub rx_ns: String,
    pub tx_if: String,
    pub rx_if: String,
}

/// Namespaces, processes and files of one test or benchmark run; all removed on drop.
#[derive(Debug)]
pub struct Lab {
    tag: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Lab {
    /// An empty lab; `tag` (a few letters) goes into every name it makes, with the pid,
    /// so parallel tests and runs do not collide.
    pub fn new(tag: &str) -> Result<Lab> {
        let dir = std::env::temp_dir().join(format!("ots-lab-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("scratch directory {}", dir.display()))?;
        Ok(Lab {
            tag: tag.to_owned(),
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
        })
    }

    /// A scratch directory removed with the lab.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An interface name unique to this lab (at most 15 bytes, the kernel's limit).
    pub fn ifname(&self, role: &str) -> String {
        let mut name = format!("ot{}{role}{}", self.tag, std::process::id());
        name.truncate(15);
        name
    }

    /// Creates a network namespace, deleted with the lab.
    pub fn namespace(&mut self, role: &str) -> Result<String> {
        let name = format!("ots-{}-{role}-{}", self.tag, std::process::id());
        let _ = run("ip", &["netns", "del", &name]); // a leftover of a killed run
        run("ip", &["netns", "add", &name])?;
        self.namespaces.push(name.clone());
        Ok(name)
    }

    /// A veth pair with `queues` RX/TX queues per end, `left` in namespace `left_ns` and
    /// `right` in `right_ns` (the same namespace is fine). Links stay down.
    pub fn veth(
        &mut self,
        (left_ns, left): (&str, &str),
        (right_ns, right): (&str, &str),
        queues: u32,
    ) -> Result<()> {
        let q = queues.to_string();
        #[rustfmt::skip]
        run("ip", &["-n", left_ns, "link", "add", left, "numtxqueues", &q, "numrxqueues", &q,
                    "type", "veth", "peer", "name", right, "numtxqueues", &q, "numrxqueues", &q,
                    "netns", right_ns])?;
        Ok(())
    }

    /// Brings a link up (and `lo`, so local servers inside the namespace work).
    pub fn up(&self, ns: &str, ifname: &str) -> Result<()> {
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        run("ip", &["-n", ns, "link", "set", ifname, "up"])?;
        Ok(())
    }

    /// Turns IPv6 off on a link: the kernel's own ND/MLD frames would spoil exact counts.
    pub fn no_ipv6(&self, ns: &str, ifname: &str) -> Result<()> {
        let sysctl = format!("net.ipv6.conf.{ifname}.disable_ipv6=1");
        run("ip", &["netns", "exec", ns, "sysctl", "-qw", &sysctl])?;
        Ok(())
    }

    /// `ethtool ARGS` inside a namespace.
    pub fn ethtool(&self, ns: &str, args: &[&str]) -> Result<String> {
        let mut all = vec!["netns", "exec", ns, "ethtool"];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Two namespaces and a veth pair of `queues` queues between them, up, without
    /// IPv6, and every frame eligible for veth's native XDP path: veth runs XDP in NAPI
    /// only for frames eligible for GRO (drivers/net/veth.c,
    /// veth_skb_is_eligible_for_gro), which with the sender's TSO off they all are.
    /// VLAN tags stay in the frame bytes (no TX VLAN offload).
    pub fn pair(&mut self, queues: u32) -> Result<Pair> {
        let pair = Pair {
            tx_ns: self.namespace("tx")?,
            rx_ns: self.namespace("rx")?,
            tx_if: self.ifname("a"),
            rx_if: self.ifname("b"),
        };
        self.veth(
            (&pair.tx_ns, &pair.tx_if),
            (&pair.rx_ns, &pair.rx_if),
            queues,
        )?;
        for (ns, ifname) in [(&pair.tx_ns, &pair.tx_if), (&pair.rx_ns, &pair.rx_if)] {
            self.no_ipv6(ns, ifname)?;
            self.up(ns, ifname)?;
        }
        self.ethtool(
            &pair.tx_ns,
            &["-K", &pair.tx_if, "tso", "off", "txvlan", "off"],
        )?;
        Ok(pair)
    }

    /// Keeps 802.1Q tags in the received frame bytes where the kernel lets veth turn
    /// RX VLAN offload off (best effort: tests that send tags check what arrives).
    pub fn keep_rx_vlan_tags(&self, pair: &Pair) {
        let _ = self.ethtool(&pair.rx_ns, &["-K", &pair.rx_if, "rxvlan", "off"]);
    }

    /// `ip netns exec NS PROGRAM` (the namespace's /sys too); add arguments and run.
    pub fn exec(&self, ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns]).arg(program);
        command
    }

    /// `nsenter --net=… PROGRAM`: only the network namespace, the host's /sys.
    pub fn nsenter(&self, ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net=/run/netns/{ns}")).arg(program);
        command
    }

    /// Keeps a child process so that it is killed (and reaped) with the lab.
    pub fn adopt(&mut self, child: Child) -> usize {
        self.children.push(child);
        self.children.len() - 1
    }

    /// The adopted children, e.g. to signal or wait for one.
    pub fn children(&mut self) -> &mut Vec<Child> {
        &mut self.children
    }

    /// Kills and reaps every adopted child now.
    pub fn kill_children(&mut self) {
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `pcap` out of `ifname` in namespace `ns` with tcpreplay, pinned to CPU 0:
    /// a packet socket picks the veth queue by the sending CPU, which would scatter one
    /// flow over queues (a real NIC's RSS keeps them on one). `extra` goes before `-i`
    /// (e.g. `--pps 20000`, `--topspeed`).
    pub fn tcpreplay(&self, ns: &str, ifname: &str, pcap: &Path, extra: &[&str]) -> Result<Output> {
        let output = self
            .exec(ns, "taskset")
            .args(["-c", "0", "tcpreplay"])
            .args(extra)
            .args(["-i", ifname])
            .arg(pcap)
            .output()
            .context("running tcpreplay")?;
        if !output.status.success() {
            bail!(
                "tcpreplay: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(output)
    }

    /// The names of this lab's namespaces that still exist (for a test's final check
    /// after dropping the lab, pass the names it had).
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Which of `namespaces` exist on this machine (empty after a clean drop).
    pub fn leftovers(namespaces: &[String]) -> Vec<String> {
        let listed = run("ip", &["netns", "list"]).unwrap_or_default();
        namespaces
            .iter()
            .filter(|ns| {
                listed
                    .lines()
                    .any(|line| line.split_whitespace().next() == Some(ns.as_str()))
            })
            .cloned()
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.kill_children();
        for ns in self.namespaces.drain(..).rev() {
            let _ = run("ip", &["netns", "del", &ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The SHA-256 of a file as `sha256sum` prints it (an outside check of the digest the
/// sensor computed itself).
pub fn sha256_of(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("sha256sum")?;
    if !out.status.success() {
        bail!("sha256sum {}: {:?}", path.display(), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// The number of packets tshark reads from a capture; an error when tshark fails or
/// complains about anything but running as root.
pub fn tshark_packet_count(path: &Path) -> Result<usize> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .context("tshark")?;
    let stderr: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|line| !line.contains("This could be dangerous"))
        .collect();
    if !out.status.success() || !stderr.trim().is_empty() {
        bail!("tshark -r {}: {:?} {stderr}", path.display(), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_the_kernel_limit() {
        let lab = Lab::new("pkg").expect("lab");
        assert!(lab.ifname("a").len() <= 15);
        assert!(lab.ifname("a").starts_with("otpkga"));
        assert_ne!(lab.ifname("a"), lab.ifname("b"));
    }

    #[test]
    fn finds_installed_programs_only() {
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-otsensor").is_none());
    }
}
