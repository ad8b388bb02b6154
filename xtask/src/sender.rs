//! The live benchmark's sender: a capture's frames preloaded in memory and sent on an
//! AF_PACKET socket that bypasses the qdisc layer (PACKET_QDISC_BYPASS), 64 frames per
//! sendmmsg(2), paced per batch. On the development VM it sends well over 1 Mpps from
//! one core, several times what tcpreplay reaches (~250 kpps), so the capturers, not the
//! sender, set the zero-loss rates.
//!
//! The socket is opened inside the sending network namespace (setns on a short-lived
//! thread: a socket stays in the namespace it was created in), so the caller needs no
//! `ip netns exec`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Frames per sendmmsg call.
const BATCH: usize = 64;

/// An AF_PACKET socket bound to one interface, with the frames it sends.
pub struct Sender {
    fd: OwnedFd,
    frames: Vec<Vec<u8>>,
}

/// What one send achieved.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub packets: u64,
    pub elapsed: Duration,
}

impl Sent {
    pub fn pps(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Reads every frame of a pcap file.
pub fn load_frames(pcap: &Path) -> Result<Vec<Vec<u8>>> {
    Ok(load_timed_frames(pcap)?.0)
}

/// Reads every frame of a pcap file and when it was captured, as an offset from the
/// first frame (never negative: a frame stamped before its predecessor goes with it).
pub fn load_timed_frames(pcap: &Path) -> Result<(Vec<Vec<u8>>, Vec<Duration>)> {
    let file = std::fs::File::open(pcap).with_context(|| format!("{}", pcap.display()))?;
    let mut reader = pcap_file::pcap::PcapReader::new(file).context("pcap header")?;
    let mut frames = Vec::new();
    let mut offsets = Vec::new();
    let mut first = None;
    let mut latest = Duration::ZERO;
    while let Some(packet) = reader.next_packet() {
        let packet = packet.context("pcap packet")?;
        let first = *first.get_or_insert(packet.timestamp);
        latest = latest.max(packet.timestamp.saturating_sub(first));
        offsets.push(latest);
        frames.push(packet.data.into_owned());
    }
    Ok((frames, offsets))
}

impl Sender {
    /// Opens the socket on `ifname` inside the network namespace `netns` (a name under
    /// /run/netns). With `bypass_qdisc` frames go straight to the driver (fastest; on a
    /// multi-queue veth the queue then follows the sending CPU, so one flow's frames can
    /// land on several queues); without it the kernel picks the queue by the flow hash,
    /// as a NIC's symmetric RSS would (every frame of a flow, both directions, on one
    /// queue).
    pub fn open(
        netns: &str,
        ifname: &str,
        frames: Vec<Vec<u8>>,
        bypass_qdisc: bool,
    ) -> Result<Sender> {
        let path = format!("/run/netns/{netns}");
        let ifname = ifname.to_owned();
        let fd = std::thread::spawn(move || -> Result<OwnedFd> {
            let ns = std::fs::File::open(&path).with_context(|| path.clone())?;
            // SAFETY: setns takes a descriptor we own and a flag; it changes only this
            // thread's namespace, and the thread ends right after.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error()).context("setns");
            }
            open_socket(&ifname, bypass_qdisc)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
        if frames.is_empty() {
            bail!("no frames to send");
        }
        Ok(Sender { fd, frames })
    }

    /// The frames loaded.
    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// Sends `count` frames (cycling through the loaded ones) at `pps` packets per
    /// second, or as fast as possible with `pps` = 0.
    pub fn send(&self, count: u64, pps: u64) -> Result<Sent> {
        let mut batch_frames: Vec<&[u8]> = Vec::with_capacity(BATCH);
        let started = Instant::now();
        let mut sent = 0u64;
        let mut next = 0usize;
        while sent < count {
            let batch = (count - sent).min(BATCH as u64) as usize;
            if pps > 0 {
                // The batch leaves when the schedule says its first frame is due.
                wait_until(started + Duration::from_secs_f64(sent as f64 / pps as f64));
            }
            batch_frames.clear();
            batch_frames
                .extend((0..batch).map(|k| self.frames[(next + k) % self.frames.len()].as_slice()));
            self.transmit(&batch_frames)?;
            next = (next + batch) % self.frames.len();
            sent += batch as u64;
        }
        Ok(Sent {
            packets: sent,
            elapsed: started.elapsed(),
        })
    }

    /// Sends each loaded frame once, frame `i` at `offsets[i]` after the start: the
    /// capture's own pace (see [`load_timed_frames`]), for tests whose detections are
    /// judged in packet time, which live capture takes from the wall clock.
    pub fn send_as_captured(&self, offsets: &[Duration]) -> Result<Sent> {
        if offsets.len() != self.frames.len() {
            bail!("{} offsets for {} frames", offsets.len(), self.frames.len());
        }
        let started = Instant::now();
        let mut batch_frames: Vec<&[u8]> = Vec::with_capacity(BATCH);
        let mut next = 0usize;
        while next < self.frames.len() {
            wait_until(started + offsets[next]);
            // Every frame already due leaves in this call.
            let now = started.elapsed();
            batch_frames.clear();
            while next < self.frames.len() && batch_frames.len() < BATCH && offsets[next] <= now {
                batch_frames.push(&self.frames[next]);
                next += 1;
            }
            self.transmit(&batch_frames)?;
        }
        Ok(Sent {
            packets: self.frames.len() as u64,
            elapsed: started.elapsed(),
        })
    }

    /// Sends `frames` with sendmmsg(2), retrying while the device queue is full.
    fn transmit(&self, frames: &[&[u8]]) -> Result<()> {
        let mut iovecs: Vec<libc::iovec> = frames
            .iter()
            .map(|frame| libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iov| {
                // SAFETY: msghdr is plain data; all-zero is "no address, no control".
                let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                header.msg_hdr.msg_iov = iov;
                header.msg_hdr.msg_iovlen = 1;
                header
            })
            .collect();
        let mut done = 0usize;
        while done < headers.len() {
            // SAFETY: `headers[done..]` are initialised mmsghdrs whose iovecs point into
            // `frames`, all alive for the call; the count matches.
            let rc = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    headers.as_mut_ptr().add(done),
                    (headers.len() - done) as libc::c_uint,
                    0,
                )
            };
            if rc < 0 {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    // The device queue is full (qdisc bypassed): try again.
                    Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR) => {
                        std::thread::yield_now();
                        continue;
                    }
                    _ => return Err(error).context("sendmmsg"),
                }
            }
            done += rc as usize;
        }
        Ok(())
    }
}

/// Sleeps until shortly before `due`, then spins to it.
fn wait_until(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else {
            std::hint::spin_loop();
        }
    }
}

fn open_socket(ifname: &str, bypass_qdisc: bool) -> Result<OwnedFd> {
    let name = CString::new(ifname).context("interface name")?;
    // SAFETY: `name` is a valid NUL-terminated string for the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {ifname} in the sending namespace");
    }
    // Protocol 0: this socket only sends, it receives nothing.
    // SAFETY: socket takes no pointers; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error()).context("socket(AF_PACKET)");
    }
    // SAFETY: `raw` is a fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let one = libc::c_int::from(bypass_qdisc);
    // SAFETY: `one` is a live c_int and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context("PACKET_QDISC_BYPASS");
    }
    // SAFETY: sockaddr_ll is plain data; all-zero is valid before the fields are set.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_ifindex = ifindex as i32;
    // SAFETY: `address` is a valid sockaddr_ll and its size is passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&address as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context("bind to the interface");
    }
    Ok(fd)
}
