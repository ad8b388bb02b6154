//! Live capture from one interface as a [`PacketSource`](crate::capture::PacketSource): the XDP pre-filter attached,
//! one AF_XDP socket per RX queue registered under its queue id, frames handed out one
//! at a time in round-robin over the queues, until a stop flag is raised.
//!
//! This lets `otsensor run` feed the same pipeline as replay. Dropping a
//! [`LiveCapture`](crate::capture::live::LiveCapture) detaches the program before the sockets close.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::afxdp::{self, QueueSocket, SocketSettings, SocketStats};
use super::{Error, Packet, PacketSource};
use crate::ebpf::{AttachReport, XdpFilter, XdpSettings};

/// How long an idle source sleeps in poll(2) before it looks at the stop flag again.
const IDLE_WAIT: Duration = Duration::from_millis(100);

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
    /// XDP_STATISTICS drops (ring full, no fill buffer, invalid descriptor).
    pub kernel_drops: u64,
    /// redirected - received - kernel_drops.
    pub unaccounted: i128,
}

/// The pre-filter and the sockets of one interface.
pub struct LiveCapture {
    // Field order is drop order, but `Drop` detaches explicitly first anyway.
    filter: XdpFilter,
    sockets: Vec<QueueSocket>,
    report: AttachReport,
    ifname: String,
    stop: Arc<AtomicBool>,
    /// The socket that lent the last packet (released on the next call).
    lent_by: Option<usize>,
    next_socket: usize,
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("ifname", &self.ifname)
            .field("report", &self.report)
            .field("sockets", &self.sockets.len())
            .finish_non_exhaustive()
    }
}

impl LiveCapture {
    /// Loads and attaches the pre-filter on `ifname`, opens and registers a socket on
    /// every RX queue. `stop` ends the source (set it from SIGINT/SIGTERM handling).
    pub fn start(
        ifname: &str,
        xdp: &XdpSettings,
        sockets: &SocketSettings,
        stop: Arc<AtomicBool>,
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
            sockets: opened,
            report,
            ifname: ifname.to_string(),
            stop,
            lent_by: None,
            next_socket: 0,
        })
    }

    /// How the program was attached (mode, fallback, stale program replaced).
    pub fn attach_report(&self) -> AttachReport {
        self.report
    }

    /// The pre-filter: counters, flows, conversations, verdicts.
    pub fn filter(&self) -> &XdpFilter {
        &self.filter
    }

    pub fn filter_mut(&mut self) -> &mut XdpFilter {
        &mut self.filter
    }

    /// The sockets, in queue order.
    pub fn sockets(&self) -> &[QueueSocket] {
        &self.sockets
    }

    /// Per-queue socket statistics, in queue order.
    pub fn socket_stats(&self) -> Result<Vec<SocketStats>, afxdp::Error> {
        self.sockets.iter().map(QueueSocket::stats).collect()
    }

    /// Per queue: what the program redirected and what the socket received or the
    /// kernel dropped. Once the rings are drained, any non-zero `unaccounted` means
    /// frames went astray (export it as a metric and log it).
    pub fn queue_accounting(&self) -> Result<Vec<QueueAccounting>, StartError> {
        let kernel = self.filter.queue_counters(self.sockets.len() as u32)?;
        self.sockets
            .iter()
            .zip(kernel)
            .map(|(socket, counters)| {
                let stats = socket.stats()?;
                Ok(QueueAccounting {
                    queue: socket.queue(),
                    redirected: counters.redirected,
                    no_socket: counters.no_socket,
                    received: stats.received_packets,
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

    fn live_error(&self, source: std::io::Error) -> Error {
        Error::Live {
            interface: self.ifname.clone(),
            source,
        }
    }
}

impl PacketSource for LiveCapture {
    fn idle(&mut self) -> bool {
        !self.sockets.iter_mut().any(|socket| socket.has_frame())
    }

    fn next_packet(&mut self) -> Result<Option<Packet<'_>>, Error> {
        if let Some(index) = self.lent_by.take() {
            if let Some(socket) = self.sockets.get_mut(index) {
                socket.release_lent();
            }
        }
        let count = self.sockets.len();
        if count == 0 {
            return Ok(None);
        }
        loop {
            let ready = (0..count)
                .map(|k| (self.next_socket + k) % count)
                .find(|&index| {
                    self.sockets
                        .get_mut(index)
                        .is_some_and(QueueSocket::has_frame)
                });
            if let Some(index) = ready {
                self.next_socket = (index + 1) % count;
                self.lent_by = Some(index);
                return Ok(self
                    .sockets
                    .get_mut(index)
                    .and_then(QueueSocket::next_frame));
            }
            // Drain before stopping: only an empty set of rings ends the source.
            if self.stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            afxdp::wait_any(&self.sockets, IDLE_WAIT).map_err(|e| self.live_error(e))?;
        }
    }
}

impl Drop for LiveCapture {
    fn drop(&mut self) {
        // The program must stop redirecting before the sockets go away.
        let _ = self.filter.detach();
    }
}
