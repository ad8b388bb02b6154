//! Live capture from one interface: the XDP pre-filter attached and one AF_XDP socket
//! per RX queue registered under its queue id.
//!
//! [`LiveCapture::take_sockets`](crate::capture::live::LiveCapture::take_sockets) hands
//! the sockets to the threads that own them (one worker per queue, `crate::live`); the
//! capture keeps the filter and a statistics handle per socket, so the per-queue books
//! can be kept from a thread that touches no packet. This module reports its own stats
//! structs ([`QueueAccounting`](crate::capture::live::QueueAccounting), the filter's
//! counters); mapping them onto metrics and observations is the live layer's job.
//!
//! Dropping a [`LiveCapture`](crate::capture::live::LiveCapture) detaches the program.

use std::path::Path;

use super::afxdp::{self, QueueSocket, SocketSettings, SocketStats, SocketStatsHandle};
use crate::ebpf::{AttachReport, XdpFilter, XdpSettings};

/// Why live capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Filter(#[from] crate::ebpf::Error),
    #[error(transparent)]
    Socket(#[from] afxdp::Error),
}

/// One queue's books: redirected = received + kernel drops, or something is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueAccounting {
    pub queue: u32,
    /// Frames the program redirected to this queue's socket.
    pub redirected: u64,
    /// Frames meant for user space that found no socket on this queue.
    pub no_socket: u64,
    /// Frames user space took from the socket.
    pub received: u64,
    /// Their bytes.
    pub received_bytes: u64,
    /// XDP_STATISTICS drops (ring full, no fill buffer, invalid descriptor).
    pub kernel_drops: u64,
    /// redirected - received - kernel_drops.
    pub unaccounted: i128,
}

/// The pre-filter and the sockets of one interface.
pub struct LiveCapture {
    filter: XdpFilter,
    /// The sockets until [`LiveCapture::take_sockets`] hands them out.
    sockets: Vec<QueueSocket>,
    /// One per queue, in queue order, kept for the books.
    handles: Vec<SocketStatsHandle>,
    report: AttachReport,
    ifname: String,
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("ifname", &self.ifname)
            .field("report", &self.report)
            .field("queues", &self.handles.len())
            .finish_non_exhaustive()
    }
}

impl LiveCapture {
    /// Loads and attaches the pre-filter on `ifname`, opens and registers a socket on
    /// every active RX queue.
    pub fn start(
        ifname: &str,
        xdp: &XdpSettings,
        sockets: &SocketSettings,
    ) -> Result<LiveCapture, StartError> {
        let queues = afxdp::rx_queue_count(ifname)?;
        let mut filter = XdpFilter::load(xdp)?;
        // Sockets first: frames redirected before a queue has its socket would only be
        // counted as "no socket" and passed.
        let mut opened = Vec::with_capacity(queues as usize);
        for queue in 0..queues {
            let socket = QueueSocket::open(ifname, queue, sockets)?;
            filter.register_socket(queue, &socket)?;
            opened.push(socket);
        }
        let report = filter.attach(ifname)?;
        Ok(LiveCapture {
            filter,
            handles: opened.iter().map(QueueSocket::stats_handle).collect(),
            sockets: opened,
            report,
            ifname: ifname.to_string(),
        })
    }

    /// The sockets, in queue order, for the threads that will own them (once; later
    /// calls return nothing). Detach before they are dropped.
    pub fn take_sockets(&mut self) -> Vec<QueueSocket> {
        std::mem::take(&mut self.sockets)
    }

    /// The number of RX queues, each with its socket.
    pub fn queue_count(&self) -> usize {
        self.handles.len()
    }

    pub fn interface(&self) -> &str {
        &self.ifname
    }

    /// How the program was attached (mode, fallback, stale program replaced).
    pub fn attach_report(&self) -> AttachReport {
        self.report
    }

    /// The pre-filter: counters, flows, conversations, verdicts, events.
    pub fn filter(&self) -> &XdpFilter {
        &self.filter
    }

    pub fn filter_mut(&mut self) -> &mut XdpFilter {
        &mut self.filter
    }

    /// Per-queue socket statistics, in queue order.
    pub fn socket_stats(&self) -> Result<Vec<SocketStats>, afxdp::Error> {
        self.handles.iter().map(SocketStatsHandle::stats).collect()
    }

    /// Per queue: what the program redirected and what the socket received or the
    /// kernel dropped. Once the rings are drained, any non-zero `unaccounted` means
    /// frames went astray (export it as a metric and log it).
    pub fn queue_accounting(&self) -> Result<Vec<QueueAccounting>, StartError> {
        let kernel = self.filter.queue_counters(self.handles.len() as u32)?;
        self.handles
            .iter()
            .zip(kernel)
            .map(|(handle, counters)| {
                let stats = handle.stats()?;
                Ok(QueueAccounting {
                    queue: handle.queue(),
                    redirected: counters.redirected,
                    no_socket: counters.no_socket,
                    received: stats.received_packets,
                    received_bytes: stats.received_bytes,
                    kernel_drops: stats.kernel_drops(),
                    unaccounted: stats.unaccounted(counters.redirected),
                })
            })
            .collect()
    }

    /// Detaches the program (frames then take the host path); the sockets stay open so
    /// whatever is already in their rings can still be read.
    pub fn detach(&mut self) -> Result<(), crate::ebpf::Error> {
        self.filter.detach()
    }
}

impl Drop for LiveCapture {
    fn drop(&mut self) {
        // The program must stop redirecting before the sockets go away.
        let _ = self.filter.detach();
    }
}

/// The CPU to run queue `queue`'s worker on: `configured[queue % len]` when CPUs are
/// configured, else the CPU that services the queue's interrupt (its IRQ affinity), else
/// round-robin over the CPUs this process may use. `None` when nothing is known.
pub fn queue_cpu(ifname: &str, queue: u32, configured: &[usize]) -> Option<usize> {
    if !configured.is_empty() {
        return configured.get(queue as usize % configured.len()).copied();
    }
    if let Some(cpu) = queue_irq_cpu(Path::new("/proc"), ifname, queue) {
        return Some(cpu);
    }
    let allowed = afxdp::allowed_cpus();
    if allowed.is_empty() {
        return None;
    }
    allowed.get(queue as usize % allowed.len()).copied()
}

/// The first CPU of the affinity of the interrupt named after `ifname` and `queue`
/// (`/proc/interrupts` names such as `enp3s0f0-TxRx-3`, `mlx5_comp3@pci…` are not
/// matched; `IF-…-Q` is what most drivers use).
fn queue_irq_cpu(proc: &Path, ifname: &str, queue: u32) -> Option<usize> {
    let interrupts = std::fs::read_to_string(proc.join("interrupts")).ok()?;
    let irq = interrupts.lines().find_map(|line| {
        let name = line.split_whitespace().last()?;
        let rest = name.strip_prefix(ifname)?.strip_prefix('-')?;
        let number = rest.rsplit('-').next()?;
        if number.parse::<u32>().ok()? != queue {
            return None;
        }
        line.split(':').next()?.trim().parse::<u32>().ok()
    })?;
    let list = std::fs::read_to_string(proc.join(format!("irq/{irq}/smp_affinity_list"))).ok()?;
    let first = list.trim().split([',', '-']).next()?;
    first.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_cpus_are_used_round_robin() {
        assert_eq!(queue_cpu("any", 0, &[3, 5]), Some(3));
        assert_eq!(queue_cpu("any", 1, &[3, 5]), Some(5));
        assert_eq!(queue_cpu("any", 2, &[3, 5]), Some(3));
    }

    #[test]
    fn irq_affinity_is_found_by_interface_and_queue() {
        let dir = std::env::temp_dir().join(format!("ots-irq-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("irq/41")).expect("dir");
        std::fs::create_dir_all(dir.join("irq/42")).expect("dir");
        std::fs::write(
            dir.join("interrupts"),
            "           CPU0       CPU1\n  40:   1   2  PCI-MSI 1-edge  eth1-TxRx-1\n  41:   1   2  PCI-MSI 2-edge  eth0-TxRx-0\n  42:   1   2  PCI-MSI 3-edge  eth0-TxRx-1\n",
        )
        .expect("interrupts");
        std::fs::write(dir.join("irq/41/smp_affinity_list"), "2\n").expect("affinity");
        std::fs::write(dir.join("irq/42/smp_affinity_list"), "6-7\n").expect("affinity");
        assert_eq!(queue_irq_cpu(&dir, "eth0", 0), Some(2));
        assert_eq!(queue_irq_cpu(&dir, "eth0", 1), Some(6));
        assert_eq!(queue_irq_cpu(&dir, "eth0", 2), None);
        assert_eq!(queue_irq_cpu(&dir, "veth9", 0), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
