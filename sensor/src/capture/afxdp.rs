//! Live capture from one NIC RX queue through an AF_XDP socket (s2n-quic-xdp's rings
//! and UMEM, wrapped in a small safe API).
//!
//! One [`QueueSocket`](crate::capture::afxdp::QueueSocket) per RX queue: the XDP pre-filter ([`crate::ebpf`]) redirects the
//! frames user space must see to the socket registered at key = queue id in its XSKMAP;
//! [`recv_batch`](crate::capture::afxdp::QueueSocket::recv_batch) hands them to the caller as
//! [`Packet`](crate::capture::Packet)s borrowed from the
//! UMEM and gives each frame back to the kernel (fill ring) right after the callback.
//!
//! Invariants kept here:
//! - **The fill ring is full at bind** (some drivers leak buffers otherwise) and every
//!   received frame goes straight back to it, so the kernel never starves while user
//!   space keeps up.
//! - Frame memory is only read for descriptors the kernel handed over on the RX ring,
//!   and only until the frame is given back: the `Packet` borrow ends with the callback.
//! - Zero-copy when the driver supports it (or as configured), copy mode otherwise; the
//!   mode in use is reported, never guessed.
//!
//! Detach the XDP program (or unregister the socket) before dropping a socket.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use s2n_quic_xdp::if_xdp::{Address, RxTxDescriptor, UmemDescriptor, XdpFlags};
use s2n_quic_xdp::ring::{Completion, Fill, Rx};
use s2n_quic_xdp::socket::Fd;
use s2n_quic_xdp::syscall;
use s2n_quic_xdp::umem::Umem;

use super::{LinkType, Packet};

/// Longest interface name the kernel accepts, including the NUL (IFNAMSIZ).
const IFNAMSIZ: usize = 16;

/// Whether to use zero-copy (the NIC DMAs straight into the UMEM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Zero-copy if the driver supports it, copy mode otherwise.
    Auto,
    /// Zero-copy or fail.
    Required,
    /// Copy mode (works on every driver, including generic-mode XDP).
    Off,
}

/// Busy polling (SO_PREFER_BUSY_POLL): the application drives the NIC queue instead of
/// interrupts; lowest latency and highest rate, at the cost of a core spinning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusyPoll {
    /// SO_BUSY_POLL: microseconds to busy-poll in a receive call.
    pub usecs: u32,
    /// SO_BUSY_POLL_BUDGET: packets the driver handles per busy-poll.
    pub budget: u32,
}

/// Sizes and modes of one socket. Ring sizes are powers of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketSettings {
    /// Bytes per UMEM frame (chunk): a power of two from 2048 to the page size. In copy
    /// mode a frame must fit the chunk minus the headroom and XDP's own 256 bytes, so
    /// 2048 takes standard 1518-byte frames; use 4096 for larger MTUs.
    pub frame_size: u32,
    /// Frames in the UMEM; at least `fill_ring_size`.
    pub frame_count: u32,
    /// Bytes reserved before each frame (for metadata); usually 0.
    pub frame_headroom: u32,
    pub rx_ring_size: u32,
    pub fill_ring_size: u32,
    /// The kernel requires a completion ring for every UMEM, even on a receive-only
    /// socket; it stays empty.
    pub completion_ring_size: u32,
    pub zero_copy: ZeroCopy,
    pub busy_poll: Option<BusyPoll>,
    /// Most frames handed out per `recv_batch` call.
    pub batch_size: u32,
}

impl Default for SocketSettings {
    fn default() -> Self {
        SocketSettings {
            frame_size: 2048,
            frame_count: 4096,
            frame_headroom: 0,
            rx_ring_size: 2048,
            fill_ring_size: 4096,
            completion_ring_size: 64,
            zero_copy: ZeroCopy::Auto,
            busy_poll: None,
            batch_size: 64,
        }
    }
}

/// The mode a socket was bound in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    ZeroCopy,
    Copy,
}

/// Why a socket could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS is off)")]
    NoXdpSockets,
    #[error("AF_XDP sockets need root (CAP_NET_RAW, CAP_NET_ADMIN): {0}")]
    Permission(#[source] io::Error),
    #[error("interface {ifname}: no such interface")]
    NoSuchInterface { ifname: String },
    #[error("AF_XDP setting {field} = {value}: {reason}")]
    Settings {
        field: &'static str,
        value: u32,
        reason: &'static str,
    },
    #[error("AF_XDP socket setup failed at {step}: {source}")]
    Setup {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("interface {ifname} queue {queue}: cannot bind an AF_XDP socket in {mode:?} mode (does the queue exist? `ethtool -l {ifname}`): {source}")]
    Bind {
        ifname: String,
        queue: u32,
        mode: BindMode,
        #[source]
        source: io::Error,
    },
    #[error("AF_XDP socket statistics: {0}")]
    Statistics(#[source] io::Error),
}

/// Counters of one socket: what user space received and what the kernel dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Frames handed to the caller.
    pub received_packets: u64,
    pub received_bytes: u64,
    /// Descriptors pointing outside the UMEM (a kernel bug if ever non-zero); skipped.
    pub bad_descriptors: u64,
    /// XDP_STATISTICS: dropped by the kernel for other reasons (e.g. no fill buffer,
    /// frame larger than a chunk in copy mode).
    pub kernel_rx_dropped: u64,
    /// XDP_STATISTICS: dropped because the RX ring was full (user space too slow).
    pub kernel_rx_ring_full: u64,
    /// XDP_STATISTICS: invalid RX descriptors.
    pub kernel_rx_invalid_descriptors: u64,
    /// XDP_STATISTICS: times the kernel found the fill ring empty.
    pub kernel_fill_ring_empty: u64,
}

impl SocketStats {
    /// Frames the kernel redirected to this socket but could not deliver.
    pub fn kernel_drops(&self) -> u64 {
        self.kernel_rx_dropped
            .saturating_add(self.kernel_rx_ring_full)
            .saturating_add(self.kernel_rx_invalid_descriptors)
    }

    /// Redirected frames not accounted for by receptions and drops: `redirected` (from
    /// the program's per-queue counter) minus received minus kernel drops. Non-zero
    /// after the ring is drained means frames went astray (e.g. a socket registered
    /// under the wrong queue key); export it and log it.
    pub fn unaccounted(&self, redirected: u64) -> i128 {
        i128::from(redirected) - i128::from(self.received_packets) - i128::from(self.kernel_drops())
    }
}

/// One AF_XDP socket bound to one RX queue of one interface.
pub struct QueueSocket {
    // Field order is drop order: rings before the socket they map, UMEM last.
    rx: Rx,
    fill: Fill,
    _completion: Completion,
    fd: Fd,
    umem: Umem,
    /// Frames not in the fill ring (when the UMEM has more frames than the ring).
    spare_frames: Vec<u64>,
    frame_mask: u64,
    ifname: String,
    queue: u32,
    mode: BindMode,
    batch_size: u32,
    busy_poll: bool,
    stats: SocketStats,
    /// The user-space counters as others may read them (published once per batch).
    published: Arc<PublishedStats>,
}

// A socket moves to the worker thread that owns its queue.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<QueueSocket>();
};

impl std::fmt::Debug for QueueSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSocket")
            .field("ifname", &self.ifname)
            .field("queue", &self.queue)
            .field("mode", &self.mode)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn validate(settings: &SocketSettings) -> Result<(), Error> {
    let power_of_two = |field: &'static str, value: u32| {
        if value.is_power_of_two() {
            Ok(())
        } else {
            Err(Error::Settings {
                field,
                value,
                reason: "must be a power of two",
            })
        }
    };
    power_of_two("frame_size", settings.frame_size)?;
    power_of_two("rx_ring_size", settings.rx_ring_size)?;
    power_of_two("fill_ring_size", settings.fill_ring_size)?;
    power_of_two("completion_ring_size", settings.completion_ring_size)?;
    if !(2048..=4096).contains(&settings.frame_size) {
        return Err(Error::Settings {
            field: "frame_size",
            value: settings.frame_size,
            reason: "aligned UMEM chunks are 2048 to 4096 bytes (the page size)",
        });
    }
    if settings.frame_count < settings.fill_ring_size {
        return Err(Error::Settings {
            field: "frame_count",
            value: settings.frame_count,
            reason: "must be at least fill_ring_size, so the fill ring is full at bind",
        });
    }
    // XDP_PACKET_HEADROOM (256) plus a standard frame must fit a chunk.
    if settings.frame_headroom.saturating_add(256 + 1518) > settings.frame_size {
        return Err(Error::Settings {
            field: "frame_headroom",
            value: settings.frame_headroom,
            reason: "leaves less than a 1518-byte frame in the chunk after XDP's 256 bytes",
        });
    }
    if settings.batch_size == 0 {
        return Err(Error::Settings {
            field: "batch_size",
            value: 0,
            reason: "must be at least 1",
        });
    }
    Ok(())
}

fn setup_error(step: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| match source.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Error::Permission(source),
        _ => Error::Setup { step, source },
    }
}

impl QueueSocket {
    /// Opens an AF_XDP socket on `ifname`'s RX queue `queue`, with its UMEM and rings,
    /// the fill ring full, bound in zero-copy or copy mode per `settings.zero_copy`.
    /// Register it with [`crate::ebpf::XdpFilter::register_socket`] afterwards.
    pub fn open(ifname: &str, queue: u32, settings: &SocketSettings) -> Result<QueueSocket, Error> {
        validate(settings)?;
        let ifindex = interface_index(ifname)?;
        match settings.zero_copy {
            ZeroCopy::Off => Self::open_in(ifname, ifindex, queue, settings, BindMode::Copy),
            ZeroCopy::Required => {
                Self::open_in(ifname, ifindex, queue, settings, BindMode::ZeroCopy)
            }
            // A failed bind leaves the socket in an unspecified state: start afresh.
            ZeroCopy::Auto => Self::open_in(ifname, ifindex, queue, settings, BindMode::ZeroCopy)
                .or_else(|_| Self::open_in(ifname, ifindex, queue, settings, BindMode::Copy)),
        }
    }

    fn open_in(
        ifname: &str,
        ifindex: u32,
        queue: u32,
        settings: &SocketSettings,
        mode: BindMode,
    ) -> Result<QueueSocket, Error> {
        let fd = Fd::open().map_err(|source| match source.raw_os_error() {
            Some(libc::EAFNOSUPPORT) => Error::NoXdpSockets,
            _ => setup_error("socket(AF_XDP)")(source),
        })?;
        let mut builder = Umem::builder();
        builder.frame_size = settings.frame_size;
        builder.frame_count = settings.frame_count;
        builder.frame_headroom = settings.frame_headroom;
        let umem = builder.build().map_err(setup_error("UMEM mmap"))?;
        fd.attach_umem(&umem).map_err(setup_error("XDP_UMEM_REG"))?;
        // Each ring constructor sets its size (setsockopt) and then maps it.
        let offsets = syscall::offsets(&fd).map_err(setup_error("XDP_MMAP_OFFSETS"))?;
        let mut fill = Fill::new(fd.clone(), &offsets, settings.fill_ring_size)
            .map_err(setup_error("fill ring mmap"))?;
        let completion = Completion::new(fd.clone(), &offsets, settings.completion_ring_size)
            .map_err(setup_error("completion ring mmap"))?;
        let rx = Rx::new(fd.clone(), &offsets, settings.rx_ring_size)
            .map_err(setup_error("RX ring mmap"))?;

        // Fill the ring completely before bind; the remaining frames wait as spares.
        let fill_count = settings.fill_ring_size as usize;
        fill.init(umem.frames().take(fill_count));
        let mut spare_frames = Vec::with_capacity(settings.frame_count as usize);
        spare_frames.extend(umem.frames().skip(fill_count).map(|frame| frame.address));

        if let Some(busy) = settings.busy_poll {
            set_busy_poll(&fd, busy).map_err(setup_error("SO_BUSY_POLL"))?;
        }

        let mut address = Address {
            ifindex,
            queue_id: queue,
            ..Address::default()
        };
        address.flags = XdpFlags::USE_NEED_WAKEUP
            | match mode {
                BindMode::ZeroCopy => XdpFlags::ZEROCOPY,
                BindMode::Copy => XdpFlags::COPY,
            };
        syscall::bind(&fd, &mut address).map_err(|source| Error::Bind {
            ifname: ifname.to_string(),
            queue,
            mode,
            source,
        })?;

        Ok(QueueSocket {
            rx,
            fill,
            _completion: completion,
            fd,
            umem,
            spare_frames,
            frame_mask: !(u64::from(settings.frame_size) - 1),
            ifname: ifname.to_string(),
            queue,
            mode,
            batch_size: settings.batch_size,
            busy_poll: settings.busy_poll.is_some(),
            stats: SocketStats::default(),
            published: Arc::new(PublishedStats::default()),
        })
    }

    /// The RX queue this socket is bound to (its key in the XSKMAP).
    pub fn queue(&self) -> u32 {
        self.queue
    }

    pub fn interface(&self) -> &str {
        &self.ifname
    }

    /// Zero-copy or copy mode.
    pub fn mode(&self) -> BindMode {
        self.mode
    }

    /// Hands up to `batch_size` received frames to `out`, one call each, then returns
    /// them to the kernel. Returns the number delivered (0: nothing waiting; call
    /// [`QueueSocket::wait`] before trying again). All frames of a batch carry the
    /// same timestamp (CLOCK_REALTIME when the batch was taken).
    pub fn recv_batch(&mut self, out: &mut impl FnMut(Packet<'_>)) -> usize {
        self.refill_spares();
        let available = self.rx.acquire(self.batch_size);
        if available == 0 {
            self.wake_if_needed();
            return 0;
        }
        let take = available.min(self.batch_size);
        let ts_ns = realtime_ns();
        // Room in the fill ring for the frames this batch gives back.
        self.fill.acquire(take);

        let QueueSocket {
            rx,
            fill,
            umem,
            spare_frames,
            frame_mask,
            stats,
            ..
        } = self;
        let umem_len = umem.len() as u64;
        let frame_size = u64::from(umem.frame_size());
        let (rx_head, rx_tail) = rx.data();
        let (fill_head, fill_tail) = fill.data();
        let mut fill_slots = fill_head.iter_mut().chain(fill_tail.iter_mut());
        let mut refilled = 0u32;
        let mut delivered = 0usize;
        for descriptor in rx_head.iter().chain(rx_tail.iter()).take(take as usize) {
            if let Some(data) = frame_bytes(umem, umem_len, frame_size, *descriptor) {
                out(Packet {
                    ts_ns,
                    link: LinkType::Ethernet,
                    data,
                    wire_len: descriptor.len,
                });
                delivered += 1;
                stats.received_packets += 1;
                stats.received_bytes += u64::from(descriptor.len);
            } else {
                stats.bad_descriptors += 1;
            }
            // The frame's chunk goes back to the kernel (aligned mode: chunk start).
            let chunk = descriptor.address & *frame_mask;
            if chunk >= umem_len {
                continue;
            }
            match fill_slots.next() {
                Some(slot) => {
                    *slot = UmemDescriptor { address: chunk };
                    refilled += 1;
                }
                // Capacity was reserved at open: only frames beyond the fill ring's
                // size can land here.
                None => spare_frames.push(chunk),
            }
        }
        rx.release(take);
        fill.release(refilled);
        self.publish_stats();
        self.wake_if_needed();
        delivered
    }

    /// Makes the user-space counters visible to [`SocketStatsHandle`]s: three relaxed
    /// stores per batch, so the thread that owns the socket never shares a lock.
    fn publish_stats(&self) {
        let published = &self.published;
        published
            .received_packets
            .store(self.stats.received_packets, Ordering::Relaxed);
        published
            .received_bytes
            .store(self.stats.received_bytes, Ordering::Relaxed);
        published
            .bad_descriptors
            .store(self.stats.bad_descriptors, Ordering::Relaxed);
    }

    /// A handle that reads this socket's statistics from another thread (the one that
    /// keeps the books while a worker owns the socket).
    pub fn stats_handle(&self) -> SocketStatsHandle {
        SocketStatsHandle {
            fd: self.fd.clone(),
            queue: self.queue,
            published: Arc::clone(&self.published),
        }
    }

    /// Moves spare frames into the fill ring when it has room.
    fn refill_spares(&mut self) {
        if self.spare_frames.is_empty() {
            return;
        }
        let room = self.fill.acquire(self.spare_frames.len() as u32);
        if room == 0 {
            return;
        }
        let (head, tail) = self.fill.data();
        let mut written = 0u32;
        for slot in head.iter_mut().chain(tail.iter_mut()).take(room as usize) {
            match self.spare_frames.pop() {
                Some(address) => {
                    *slot = UmemDescriptor { address };
                    written += 1;
                }
                None => break,
            }
        }
        self.fill.release(written);
    }

    /// With XDP_USE_NEED_WAKEUP the driver may sleep when the fill ring ran dry; a
    /// receive call wakes it (and, with busy polling, drives the queue).
    fn wake_if_needed(&mut self) {
        if self.busy_poll || self.fill.needs_wakeup() {
            let _ = syscall::busy_poll(&self.fd);
        }
    }

    /// Waits up to `timeout` for frames; `Ok(true)` when some are ready.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let mut pollfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `pollfd` is a valid, initialised pollfd for the whole call, and the
        // count (1) matches.
        let rc = unsafe { libc::poll(&mut pollfd, 1, millis) };
        if rc < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(error);
        }
        Ok(rc > 0 && pollfd.revents & libc::POLLIN != 0)
    }

    /// Sleeps in poll(2) until frames arrive on this socket, `waker` is woken, or
    /// `timeout` passes; `Ok(true)` when frames are ready. The idle path of a worker: no
    /// CPU is used while nothing arrives.
    pub fn wait_or_woken(&self, waker: &Waker, timeout: Duration) -> io::Result<bool> {
        let mut fds = [
            libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: waker.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `fds` is an array of two initialised pollfds, alive for the whole
        // call, and its length is passed alongside.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
        if rc < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(error);
        }
        if fds[1].revents & libc::POLLIN != 0 {
            waker.clear();
        }
        Ok(fds[0].revents & libc::POLLIN != 0)
    }

    /// User-space counters plus the kernel's XDP_STATISTICS for this socket.
    pub fn stats(&self) -> Result<SocketStats, Error> {
        kernel_stats(&self.fd, self.stats)
    }
}

fn kernel_stats(fd: &Fd, user: SocketStats) -> Result<SocketStats, Error> {
    let kernel = syscall::statistics(fd).map_err(Error::Statistics)?;
    Ok(SocketStats {
        kernel_rx_dropped: kernel.rx_dropped,
        kernel_rx_ring_full: kernel.rx_ring_full,
        kernel_rx_invalid_descriptors: kernel.rx_invalid_descriptors,
        kernel_fill_ring_empty: kernel.rx_fill_ring_empty_descriptors,
        ..user
    })
}

/// A socket's user-space counters as last published by the thread that reads it.
#[derive(Debug, Default)]
struct PublishedStats {
    received_packets: AtomicU64,
    received_bytes: AtomicU64,
    bad_descriptors: AtomicU64,
}

/// Reads one socket's statistics from a thread that does not own the socket: the
/// kernel's XDP_STATISTICS through a shared descriptor, and the user-space counters
/// the owner published after its last batch.
#[derive(Clone)]
pub struct SocketStatsHandle {
    fd: Fd,
    queue: u32,
    published: Arc<PublishedStats>,
}

impl std::fmt::Debug for SocketStatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketStatsHandle")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl SocketStatsHandle {
    /// The RX queue of the socket.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// User-space counters (as of the owner's last batch) plus XDP_STATISTICS.
    pub fn stats(&self) -> Result<SocketStats, Error> {
        let published = &self.published;
        let user = SocketStats {
            received_packets: published.received_packets.load(Ordering::Relaxed),
            received_bytes: published.received_bytes.load(Ordering::Relaxed),
            bad_descriptors: published.bad_descriptors.load(Ordering::Relaxed),
            ..SocketStats::default()
        };
        kernel_stats(&self.fd, user)
    }
}

/// Wakes a thread parked in [`QueueSocket::wait_or_woken`] (an eventfd): used when a
/// frame is handed to a parked worker, and at shutdown. `wake` is a system call, so
/// callers wake only a thread that said it is parked ([`Waker::park`]).
#[derive(Debug)]
pub struct Waker {
    fd: std::fs::File,
    parked: AtomicBool,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd takes no pointers; the result is checked before use.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns; the File closes it.
        let fd = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        Ok(Waker {
            fd,
            parked: AtomicBool::new(false),
        })
    }

    /// Says that the owner is about to park. The owner must look for work once more
    /// after this and before waiting: a producer that pushed before seeing `parked`
    /// did not wake it.
    pub fn park(&self) {
        self.parked.store(true, Ordering::SeqCst);
    }

    /// The owner is running again.
    pub fn unpark(&self) {
        self.parked.store(false, Ordering::SeqCst);
    }

    /// Wakes the owner if it is parked (one write(2) per park, not per frame).
    pub fn wake_if_parked(&self) {
        if self.parked.swap(false, Ordering::SeqCst) {
            self.wake();
        }
    }

    /// Wakes the owner whether or not it is parked (shutdown).
    pub fn wake(&self) {
        use std::io::Write;
        let _ = (&self.fd).write(&1u64.to_ne_bytes());
    }

    fn clear(&self) {
        use std::io::Read;
        let mut buf = [0u8; 8];
        let _ = (&self.fd).read(&mut buf);
    }
}

/// Pins the calling thread to `cpu` (sched_setaffinity).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: `cpu` was checked to lie inside the set just above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t and its size is passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The CPUs this process may run on (sched_getaffinity), in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t and its size is passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..8 * std::mem::size_of::<libc::cpu_set_t>())
        // SAFETY: every index is inside the set (bounded by its size in bits).
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

impl AsRawFd for QueueSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// The bytes of a received frame, if its descriptor lies inside the UMEM and inside one
/// chunk (the kernel guarantees both; checked so a bad descriptor cannot fault).
fn frame_bytes(
    umem: &Umem,
    umem_len: u64,
    frame_size: u64,
    descriptor: RxTxDescriptor,
) -> Option<&[u8]> {
    let end = descriptor.address.checked_add(u64::from(descriptor.len))?;
    if end > umem_len || u64::from(descriptor.len) > frame_size {
        return None;
    }
    // SAFETY: the kernel handed this descriptor over on the RX ring, so until it is
    // released (after the caller's callback returns) nothing writes to these bytes;
    // the range was checked to lie inside the UMEM mapping just above.
    Some(unsafe { umem.get(descriptor) })
}

/// Keeps a clock reading before the memory loads that follow it. The vDSO clock reads
/// the TSC after an LFENCE (so the reading comes after earlier instructions), but a
/// later load may still execute before that TSC read; an LFENCE after it prevents that
/// (Intel SDM, RDTSC). The analyzer reads the wall clock and then the queue workers'
/// park states (`observe::ParkState`); a worker marks itself awake (SeqCst) before its
/// clock read, which the vDSO's LFENCE keeps after the store.
#[inline]
pub fn clock_before_loads() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: LFENCE takes no operands and accesses no memory; SSE2 is part of x86-64.
    unsafe {
        std::arch::x86_64::_mm_lfence()
    };
}

fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The interface index of `ifname`.
pub fn interface_index(ifname: &str) -> Result<u32, Error> {
    let missing = || Error::NoSuchInterface {
        ifname: ifname.to_string(),
    };
    if ifname.len() >= IFNAMSIZ {
        return Err(missing());
    }
    let name = CString::new(ifname).map_err(|_| missing())?;
    syscall::if_nametoindex(&name).map_err(|_| missing())
}

/// Number of RX queues of `ifname` (ethtool channels, else sysfs, else 1): one socket
/// per queue is needed to see every redirected frame.
pub fn rx_queue_count(ifname: &str) -> Result<u32, Error> {
    interface_index(ifname)?;
    // Sockets can bind only queues the kernel has active (`real_num_rx_queues`, one
    // `queues/rx-N` entry each); ethtool's maximum may be larger (e.g. a veth made with
    // two queues and set to one), and binding beyond the active ones fails.
    let active = active_rx_queues(ifname);
    let max = syscall::max_queues(ifname);
    Ok(if active == 0 {
        max
    } else {
        active.min(max.max(1))
    })
}

/// The most RX queues the driver could have (ethtool's channel maximum).
pub fn max_rx_queues(ifname: &str) -> u32 {
    syscall::max_queues(ifname)
}

/// Receive queues the kernel has active (`/sys/class/net/IF/queues/rx-*`).
pub fn active_rx_queues(ifname: &str) -> u32 {
    let dir = std::path::Path::new("/sys/class/net")
        .join(ifname)
        .join("queues");
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
            .count() as u32
    })
}

fn set_busy_poll(fd: &Fd, busy: BusyPoll) -> io::Result<()> {
    // uapi/asm-generic/socket.h: SO_PREFER_BUSY_POLL 69, SO_BUSY_POLL_BUDGET 70.
    const SO_PREFER_BUSY_POLL: libc::c_int = 69;
    const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
    set_socket_option(fd, SO_PREFER_BUSY_POLL, 1)?;
    set_socket_option(fd, libc::SO_BUSY_POLL, busy.usecs as libc::c_int)?;
    set_socket_option(fd, SO_BUSY_POLL_BUDGET, busy.budget as libc::c_int)
}

fn set_socket_option(fd: &Fd, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_are_valid() {
        assert!(validate(&SocketSettings::default()).is_ok());
    }

    #[test]
    fn settings_are_checked_with_field_names() {
        let bad = SocketSettings {
            rx_ring_size: 1000,
            ..SocketSettings::default()
        };
        assert!(matches!(
            validate(&bad),
            Err(Error::Settings {
                field: "rx_ring_size",
                ..
            })
        ));
        let bad = SocketSettings {
            frame_count: 1024,
            ..SocketSettings::default()
        };
        assert!(matches!(
            validate(&bad),
            Err(Error::Settings {
                field: "frame_count",
                ..
            })
        ));
        let bad = SocketSettings {
            frame_size: 1024,
            ..SocketSettings::default()
        };
        assert!(matches!(
            validate(&bad),
            Err(Error::Settings {
                field: "frame_size",
                ..
            })
        ));
        let bad = SocketSettings {
            frame_headroom: 512,
            ..SocketSettings::default()
        };
        assert!(matches!(
            validate(&bad),
            Err(Error::Settings {
                field: "frame_headroom",
                ..
            })
        ));
    }

    #[test]
    fn unaccounted_is_redirected_minus_received_and_drops() {
        let stats = SocketStats {
            received_packets: 90,
            kernel_rx_ring_full: 6,
            kernel_rx_dropped: 3,
            ..SocketStats::default()
        };
        assert_eq!(stats.unaccounted(100), 1);
        assert_eq!(stats.unaccounted(99), 0);
    }

    #[test]
    fn missing_interface_is_named() {
        let error = interface_index("otsensor-none0").expect_err("no such interface");
        assert!(error.to_string().contains("otsensor-none0"));
        assert!(matches!(
            interface_index("a-name-longer-than-ifnamsiz"),
            Err(Error::NoSuchInterface { .. })
        ));
    }
}
