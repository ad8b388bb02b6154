//! Dropping the capture capabilities once XDP is attached and the AF_XDP sockets are
//! open. From then on the sensor works through file descriptors it already holds (map
//! fds, socket fds, the bpf_link fd), which the kernel checks by ownership, not by
//! capability; what a kernel still insists on is kept, and reported.
//!
//! Capabilities are per thread in Linux (capset(2) changes the calling thread only), so
//! the drop must happen on the thread that goes on to spawn the pipeline and the HTTP
//! server, before it spawns them: threads inherit the reduced sets.

use caps::{CapSet, Capability, CapsHashSet};

/// The capabilities capture needs before and while attaching: loading programs and
/// maps (BPF, PERFMON for the pointer arithmetic the verifier allows only with it),
/// attaching XDP and configuring the link (NET_ADMIN), opening AF_XDP sockets (NET_RAW),
/// pinning UMEM (IPC_LOCK), and the older kernels' spellings of the same (SYS_ADMIN for
/// BPF before 5.8, SYS_RESOURCE to raise RLIMIT_MEMLOCK before 5.11).
pub const CAPTURE_CAPABILITIES: [Capability; 7] = [
    Capability::CAP_BPF,
    Capability::CAP_NET_ADMIN,
    Capability::CAP_NET_RAW,
    Capability::CAP_PERFMON,
    Capability::CAP_IPC_LOCK,
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_SYS_RESOURCE,
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("dropping capabilities: {0}")]
    Caps(#[from] caps::errors::CapsError),
}

/// What [`drop_after_attach`] kept, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retained {
    pub kept: Vec<(Capability, &'static str)>,
}

/// The kernel release as (major, minor), from uname(2) via /proc.
fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Which capture capabilities the running process still needs after the attach on this
/// kernel.
pub fn needed_after_attach() -> Vec<(Capability, &'static str)> {
    let version = kernel_version().unwrap_or((0, 0));
    let unprivileged_bpf_disabled =
        std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
            .map(|text| text.trim() != "0")
            .unwrap_or(true);
    let mut kept = Vec::new();
    // Before 6.5 bpf(2) refused every command, map lookups by fd included, to a caller
    // without CAP_BPF while kernel.unprivileged_bpf_disabled is set (kernel/bpf/syscall.c
    // __sys_bpf; 6.5 moved the check into map and program creation).
    if version < (6, 5) && unprivileged_bpf_disabled {
        kept.push((
            Capability::CAP_BPF,
            "kernel < 6.5 checks CAP_BPF on every bpf(2) call (counters, verdicts, reload)",
        ));
    }
    // Before 5.9 there is no bpf_link for XDP: the program is attached through netlink
    // and detaching it at exit is an RTM_SETLINK, which needs CAP_NET_ADMIN.
    if version < (5, 9) {
        kept.push((
            Capability::CAP_NET_ADMIN,
            "kernel < 5.9 attaches XDP through netlink; detaching at exit needs it",
        ));
    }
    kept
}

/// Removes the capture capabilities the process no longer needs from the calling
/// thread's effective, permitted, inheritable and ambient sets (and so from every thread
/// it spawns afterwards). The bounding set is left alone: shrinking it needs
/// CAP_SETPCAP, and with empty permitted and ambient sets and no_new_privs (the unit
/// sets NoNewPrivileges) nothing can be regained through it.
pub fn drop_after_attach() -> Result<Retained, Error> {
    let kept = needed_after_attach();
    let keep: CapsHashSet = kept.iter().map(|(cap, _)| *cap).collect();
    for cap in CAPTURE_CAPABILITIES {
        if keep.contains(&cap) {
            continue;
        }
        // Ambient first: the kernel clears an ambient capability that is no longer
        // permitted anyway, but dropping it explicitly is clearer.
        if caps::has_cap(None, CapSet::Ambient, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Ambient, cap)?;
        }
        for set in [CapSet::Effective, CapSet::Inheritable, CapSet::Permitted] {
            if caps::has_cap(None, set, cap)? {
                caps::drop(None, set, cap)?;
            }
        }
    }
    Ok(Retained { kept })
}
