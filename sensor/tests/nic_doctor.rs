//! `otsensor nic-setup` and `otsensor doctor` on a veth pair in a network namespace the
//! test creates (`ip netns exec` gives the commands that namespace's /sys as well).
#![cfg(target_os = "linux")]

use std::process::{Command, Output};

use xtask::testlab;

const QUEUES: u32 = 3;

/// A namespace holding a veth pair with `QUEUES` queues; removed on drop (the shared
/// `xtask::testlab::Lab` does the work).
struct Lab {
    lab: testlab::Lab,
    ns: String,
    ifname: String,
}

impl Lab {
    fn create(tag: &str) -> Lab {
        let mut lab = testlab::Lab::new(tag).expect("lab");
        let ns = lab.namespace("nic").expect("namespace");
        let ifname = lab.ifname("");
        let peer = lab.ifname("p");
        lab.veth((&ns, &ifname), (&ns, &peer), QUEUES)
            .expect("veth pair");
        Lab { lab, ns, ifname }
    }

    fn otsensor(&self, args: &[&str]) -> Output {
        self.lab
            .exec(&self.ns, env!("CARGO_BIN_EXE_otsensor"))
            .args(args)
            .output()
            .expect("run otsensor")
    }

    fn inside(&self, program: &str, args: &[&str]) -> String {
        let output = self
            .lab
            .exec(&self.ns, program)
            .args(args)
            .output()
            .expect("run in namespace");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn promisc(&self) -> bool {
        let flags = self.inside("cat", &[&format!("/sys/class/net/{}/flags", self.ifname)]);
        u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).expect("flags") & 0x100 != 0
    }

    fn feature(&self, name: &str) -> String {
        self.inside("ethtool", &["-k", &self.ifname])
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("{name}: "))
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn allowed(test: &str) -> bool {
    testlab::require_root(test) && testlab::require_tools(test, &["ip", "ethtool"])
}

#[test]
fn nic_setup_changes_once_then_nothing_and_dry_run_changes_nothing() {
    if !allowed("nic_setup_changes_once_then_nothing_and_dry_run_changes_nothing") {
        return;
    }
    let lab = Lab::create("nic");
    assert!(!lab.promisc());
    assert!(lab.feature("rx-vlan-offload").starts_with("on"));

    // Dry run first: says what it would do, changes nothing.
    let dry = lab.otsensor(&[
        "nic-setup",
        "--interface",
        &lab.ifname,
        "--dry-run",
        "--queues",
        "2",
    ]);
    let out = text(&dry);
    assert!(dry.status.success(), "{out}");
    assert!(out.contains("[would change] promiscuous mode"), "{out}");
    assert!(
        out.contains("ethtool -K") && out.contains("rx-vlan-offload off"),
        "{out}"
    );
    assert!(out.contains("ethtool -L"), "{out}");
    assert!(!lab.promisc(), "dry run set promiscuous mode");
    assert!(lab.feature("rx-vlan-offload").starts_with("on"));

    let first = lab.otsensor(&["nic-setup", "--interface", &lab.ifname, "--queues", "2"]);
    let out = text(&first);
    assert!(first.status.success(), "{out}");
    assert!(out.contains("[changed     ] promiscuous mode"), "{out}");
    assert!(
        out.contains("[changed     ] offload rx-vlan-offload"),
        "{out}"
    );
    assert!(out.contains("queues") && out.contains("3 → 2 rx"), "{out}");
    assert!(out.contains("[unsupported ] IRQ affinity"), "{out}");
    assert!(lab.promisc());
    assert!(lab.feature("rx-vlan-offload").starts_with("off"));
    assert!(lab.feature("generic-receive-offload").starts_with("off"));

    let second = lab.otsensor(&["nic-setup", "--interface", &lab.ifname, "--queues", "2"]);
    let out = text(&second);
    assert!(second.status.success(), "{out}");
    assert!(out.contains("nic-setup: 0 changed"), "{out}");
    assert!(!out.contains("[changed"), "{out}");
    let dry = lab.otsensor(&[
        "nic-setup",
        "--interface",
        &lab.ifname,
        "--queues",
        "2",
        "--dry-run",
    ]);
    let out = text(&dry);
    assert!(out.contains("0 would change"), "{out}");

    let missing = lab.otsensor(&["nic-setup", "--interface", "nonexistent0"]);
    assert!(!missing.status.success());
    assert!(text(&missing).contains("does not exist"));
}

#[test]
fn doctor_reports_this_box() {
    if !allowed("doctor_reports_this_box") {
        return;
    }
    let lab = Lab::create("doc");
    let output = lab.otsensor(&["doctor", "--interface", &lab.ifname]);
    let out = text(&output);
    let line = |check: &str| -> String {
        out.lines()
            .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(check)))
            .unwrap_or_else(|| panic!("no {check} line in:\n{out}"))
            .to_owned()
    };
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let kernel = line("kernel ");
    assert!(kernel.trim_end().ends_with(release.trim()), "{kernel}");
    assert!(line("driver ").trim_end().ends_with(" veth"), "{out}");
    assert!(
        line("queues ").contains(&format!("{QUEUES} RX queues")),
        "{out}"
    );
    let nproc = Command::new("nproc").output().expect("nproc");
    let cpus = String::from_utf8_lossy(&nproc.stdout).trim().to_owned();
    assert!(line("CPUs ").contains(&format!("{cpus} CPUs")), "{out}");
    assert!(line("XDP modes ").starts_with("OK"), "{out}");
    // veth has no AF_XDP zero-copy.
    assert!(line("zero-copy ").starts_with("WARN"), "{out}");
    assert!(line("AF_XDP sockets ").starts_with("OK"), "{out}");
    let verdict = out
        .lines()
        .find(|l| l.starts_with("verdict: "))
        .expect("verdict line");
    assert!(verdict.starts_with("verdict: WARN"), "{verdict}");
    assert!(out.contains("what to fix:"), "{out}");
    assert!(output.status.success(), "WARN is not a failure: {out}");
    // Nothing left attached.
    let link = lab.inside("ip", &["link", "show", &lab.ifname]);
    assert!(!link.contains("xdp"), "{link}");

    let missing = lab.otsensor(&["doctor", "--interface", "nonexistent0"]);
    let out = text(&missing);
    assert_eq!(missing.status.code(), Some(1), "{out}");
    assert!(out.contains("verdict: FAIL"), "{out}");
}

#[test]
fn doctor_warns_when_fewer_queues_are_active_than_capture_opens() {
    if !allowed("doctor_warns_when_fewer_queues_are_active_than_capture_opens") {
        return;
    }
    let lab = Lab::create("dq");
    lab.lab
        .ethtool(&lab.ns, &["-L", &lab.ifname, "rx", "1"])
        .expect("ethtool -L");
    let output = lab.otsensor(&["doctor", "--interface", &lab.ifname]);
    let out = text(&output);
    let queues = out
        .lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with("queues ")))
        .unwrap_or_else(|| panic!("no queues line:\n{out}"));
    assert!(queues.starts_with("WARN"), "{queues}");
    assert!(
        queues.contains(&format!("1 RX queues active of {QUEUES} possible")),
        "{queues}"
    );

    // Capture opens the active queue only (binding an inactive one would fail).
    let output = lab
        .lab
        .exec(&lab.ns, "timeout")
        .args(["-s", "INT", "3"])
        .arg(env!("CARGO_BIN_EXE_otsensor"))
        .args(["run", "--interface", &lab.ifname, "--eve", "-"])
        .output()
        .expect("otsensor run");
    let out = text(&output);
    assert!(out.contains("attached to"), "{out}");
    assert!(
        out.contains(", 1 queues, one worker each)"),
        "captures on the one active queue: {out}"
    );
    // `timeout` exits 124 whatever the sensor did: the summary shows a clean stop.
    assert!(
        out.lines().any(|l| l.starts_with("packets ")),
        "stopped cleanly on SIGINT: {out}"
    );
}
