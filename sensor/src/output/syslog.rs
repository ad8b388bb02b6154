//! The syslog sink: RFC 5424 messages carrying CEF ([`super::cef`]) over UDP
//! (RFC 5426, one message per datagram), TCP (RFC 6587 octet counting) or TLS
//! (RFC 5425, rustls; the server certificate is checked against a CA file).
//!
//! TCP delivery is checked before each write: a connection the server closed (a
//! restarted rsyslog) reads as end-of-file and is replaced, so the message goes to the
//! new connection instead of into a dead socket's buffer. Plain syslog over TCP has no
//! acknowledgements, so a message written just before the server died can vanish in
//! its receive buffer: messages written in the last [`RESEND_WINDOW`] are kept and
//! written again on the next connection when the previous one turns out closed. The
//! result is at-least-once delivery (a SIEM may see a duplicate, never a gap); the
//! CEF `externalId` (the alert id) lets it de-duplicate.
//!
//! **A collector cannot wedge the sink.** Connect, the TLS handshake, every read and
//! every write are bounded by [`IO_TIMEOUT`], and TCP keepalive finds a collector that
//! vanished without closing: a server that accepts the connection and never answers
//! costs one failed (retried) delivery, and shutdown waits at most that long.

use std::collections::VecDeque;
use std::io::{ErrorKind, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::detect::Alert;
use crate::output::cef::syslog_message;
use crate::output::sinks::{Deliver, DeliveryError};

/// How long a connect, the TLS handshake, a read or a write may take before it counts
/// as failed.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle time before the first TCP keepalive probe, and between probes.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Messages written this recently are re-sent if their connection turns out closed.
pub const RESEND_WINDOW: Duration = Duration::from_secs(2);
/// At most this many messages are kept for re-sending.
const RESEND_MAX: usize = 1024;

/// Transport of the syslog sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// TLS over TCP; `ca_file` holds the PEM certificates that may sign the server's.
    Tls {
        ca_file: PathBuf,
    },
}

/// Where syslog goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogTarget {
    pub transport: Transport,
    /// `host:port`.
    pub address: String,
}

impl SyslogTarget {
    /// Parses `udp://host:port`, `tcp://host:port` or `tls://host:port` (TLS needs a
    /// CA file, given separately).
    pub fn parse(url: &str, ca_file: Option<PathBuf>) -> Result<SyslogTarget, String> {
        let (scheme, address) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?}: expected udp://, tcp:// or tls://host:port"))?;
        if address
            .rsplit_once(':')
            .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        {
            return Err(format!("{url:?}: expected host:port after {scheme}://"));
        }
        let transport = match scheme {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls {
                ca_file: ca_file.ok_or_else(|| format!("{url:?}: TLS needs a CA file"))?,
            },
            other => return Err(format!("{url:?}: unknown scheme {other:?}")),
        };
        Ok(SyslogTarget {
            transport,
            address: address.to_owned(),
        })
    }
}

enum Connection {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// Sends alerts to a syslog server.
pub struct SyslogSink {
    target: SyslogTarget,
    hostname: String,
    connection: Option<Connection>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// [`IO_TIMEOUT`] (shorter in tests).
    io_timeout: Duration,
    /// Frames written on the current stream connection recently (see module docs).
    recent: VecDeque<(Instant, String)>,
    /// Frames written again after a reconnect.
    pub resent: u64,
}

impl std::fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSink")
            .field("target", &self.target)
            .finish()
    }
}

fn io_error(target: &SyslogTarget, source: std::io::Error) -> DeliveryError {
    DeliveryError::Io {
        target: target.address.clone(),
        source,
    }
}

/// The machine's host name (for the syslog HOSTNAME field).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

impl SyslogSink {
    /// A sink; it connects on first delivery (and reconnects after failures).
    pub fn new(target: SyslogTarget) -> Result<SyslogSink, DeliveryError> {
        let tls = match &target.transport {
            Transport::Tls { ca_file } => Some(tls_config(&target, ca_file)?),
            _ => None,
        };
        Ok(SyslogSink {
            target,
            hostname: hostname(),
            connection: None,
            tls,
            io_timeout: IO_TIMEOUT,
            recent: VecDeque::new(),
            resent: 0,
        })
    }

    fn connect(&self) -> Result<Connection, DeliveryError> {
        let address = self
            .target
            .address
            .to_socket_addrs()
            .map_err(|e| io_error(&self.target, e))?
            .next()
            .ok_or_else(|| {
                io_error(
                    &self.target,
                    std::io::Error::new(ErrorKind::NotFound, "no address"),
                )
            })?;
        match &self.target.transport {
            Transport::Udp => {
                let bind = if address.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let socket = UdpSocket::bind(bind).map_err(|e| io_error(&self.target, e))?;
                socket
                    .connect(address)
                    .map_err(|e| io_error(&self.target, e))?;
                Ok(Connection::Udp(socket))
            }
            Transport::Tcp | Transport::Tls { .. } => {
                let timeout = self.io_timeout;
                let mut stream = TcpStream::connect_timeout(&address, timeout)
                    .map_err(|e| io_error(&self.target, e))?;
                stream
                    .set_write_timeout(Some(timeout))
                    .map_err(|e| io_error(&self.target, e))?;
                stream
                    .set_read_timeout(Some(timeout))
                    .map_err(|e| io_error(&self.target, e))?;
                let _ = stream.set_nodelay(true);
                let keepalive = socket2::TcpKeepalive::new()
                    .with_time(KEEPALIVE_IDLE)
                    .with_interval(KEEPALIVE_INTERVAL);
                socket2::SockRef::from(&stream)
                    .set_tcp_keepalive(&keepalive)
                    .map_err(|e| io_error(&self.target, e))?;
                match &self.tls {
                    None => Ok(Connection::Tcp(stream)),
                    Some(config) => {
                        let host = self
                            .target
                            .address
                            .rsplit_once(':')
                            .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'))
                            .unwrap_or_default()
                            .to_owned();
                        let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| {
                            DeliveryError::Tls {
                                target: self.target.address.clone(),
                                reason: e.to_string(),
                            }
                        })?;
                        let mut client = rustls::ClientConnection::new(Arc::clone(config), name)
                            .map_err(|e| DeliveryError::Tls {
                                target: self.target.address.clone(),
                                reason: e.to_string(),
                            })?;
                        // The whole handshake, not each read, is bounded: a collector
                        // trickling bytes cannot hold the sink either.
                        let deadline = Instant::now() + timeout;
                        while client.is_handshaking() {
                            if Instant::now() >= deadline {
                                return Err(DeliveryError::Tls {
                                    target: self.target.address.clone(),
                                    reason: "handshake timed out".to_owned(),
                                });
                            }
                            client
                                .complete_io(&mut stream)
                                .map_err(|e| DeliveryError::Tls {
                                    target: self.target.address.clone(),
                                    reason: format!("handshake: {e}"),
                                })?;
                        }
                        Ok(Connection::Tls(Box::new(rustls::StreamOwned::new(
                            client, stream,
                        ))))
                    }
                }
            }
        }
    }
}

/// True when the peer closed the connection (a non-blocking peek reads end-of-file).
fn peer_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let closed = match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => error.kind() != ErrorKind::WouldBlock,
    };
    let _ = stream.set_nonblocking(false);
    closed
}

fn tls_config(
    target: &SyslogTarget,
    ca_file: &std::path::Path,
) -> Result<Arc<rustls::ClientConfig>, DeliveryError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let tls_error = |reason: String| DeliveryError::Tls {
        target: target.address.clone(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| tls_error(format!("{}: {e}", ca_file.display())))?;
    for certificate in certificates {
        let certificate =
            certificate.map_err(|e| tls_error(format!("{}: {e}", ca_file.display())))?;
        roots
            .add(certificate)
            .map_err(|e| tls_error(format!("{}: {e}", ca_file.display())))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_error(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Deliver for SyslogSink {
    fn name(&self) -> &'static str {
        "syslog"
    }

    fn deliver(&mut self, alert: &Alert) -> Result<(), DeliveryError> {
        let message = syslog_message(alert, &self.hostname);
        let stale = match &self.connection {
            Some(Connection::Tcp(stream)) => peer_closed(stream),
            Some(Connection::Tls(stream)) => peer_closed(stream.get_ref()),
            Some(Connection::Udp(_)) => false,
            None => true,
        };
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|(sent, _)| now.duration_since(*sent) > RESEND_WINDOW)
        {
            self.recent.pop_front();
        }
        if stale {
            self.connection = Some(self.connect()?);
            // What went out just before the old connection closed may be lost.
            let mut pending = std::mem::take(&mut self.recent);
            while let Some((sent, frame)) = pending.pop_front() {
                if let Err(error) = self.write(&frame) {
                    pending.push_front((sent, frame));
                    self.recent = pending;
                    self.connection = None;
                    return Err(io_error(&self.target, error));
                }
                self.resent += 1;
                self.recent.push_back((sent, frame));
            }
        }
        match self.write(&message) {
            Ok(()) => {
                if !matches!(self.connection, Some(Connection::Udp(_))) {
                    if self.recent.len() >= RESEND_MAX {
                        self.recent.pop_front();
                    }
                    self.recent.push_back((now, message));
                }
                Ok(())
            }
            Err(error) => {
                self.connection = None;
                Err(io_error(&self.target, error))
            }
        }
    }
}

impl SyslogSink {
    fn write(&mut self, message: &str) -> std::io::Result<()> {
        match self.connection.as_mut() {
            Some(Connection::Udp(socket)) => socket.send(message.as_bytes()).map(|_| ()),
            Some(Connection::Tcp(stream)) => write_framed(stream, message),
            Some(Connection::Tls(stream)) => write_framed(stream.as_mut(), message),
            None => Err(std::io::Error::new(
                ErrorKind::NotConnected,
                "not connected",
            )),
        }
    }
}

/// RFC 6587 §3.4.1 octet counting: `MSG-LEN SP SYSLOG-MSG`.
fn write_framed(out: &mut impl Write, message: &str) -> std::io::Result<()> {
    let frame = format!("{} {message}", message.len());
    out.write_all(frame.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Read};
    use std::net::TcpListener;

    #[test]
    fn targets_parse() {
        assert_eq!(
            SyslogTarget::parse("tcp://127.0.0.1:514", None),
            Ok(SyslogTarget {
                transport: Transport::Tcp,
                address: "127.0.0.1:514".into()
            })
        );
        assert!(SyslogTarget::parse("tls://host:6514", None).is_err());
        assert!(SyslogTarget::parse("http://host:1", None).is_err());
        assert!(SyslogTarget::parse("tcp://host", None).is_err());
    }

    #[test]
    fn tcp_frames_are_octet_counted_and_reconnect_after_close() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        let mut sink = SyslogSink::new(SyslogTarget {
            transport: Transport::Tcp,
            address,
        })
        .expect("sink");
        let alert = crate::control::tests_support::sample_alert();
        sink.deliver(&alert).expect("first delivery");
        let (first, _) = listener.accept().expect("accept");
        let mut reader = std::io::BufReader::new(first);
        let mut length = Vec::new();
        reader.read_until(b' ', &mut length).expect("length");
        let length: usize = String::from_utf8_lossy(&length)
            .trim()
            .parse()
            .expect("number");
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).expect("body");
        let body = String::from_utf8(body).expect("utf8");
        assert!(body.starts_with("<162>1 "), "{body}");
        assert!(body.contains("CEF:0|otsensor|otsensor|"));
        // The server goes away: the next delivery must use a new connection.
        drop(reader);
        std::thread::sleep(Duration::from_millis(50));
        sink.deliver(&alert).expect("second delivery");
        let (second, _) = listener.accept().expect("reconnected");
        drop(second);
    }

    /// A CA certificate (PEM) in a file, for TLS targets.
    fn ca_file(name: &str) -> PathBuf {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
        let path = std::env::temp_dir().join(format!("otsensor-{name}-{}.pem", std::process::id()));
        std::fs::write(&path, ca.pem()).expect("ca file");
        path
    }

    /// A collector that accepts TCP and never answers: the TLS handshake fails within
    /// the timeout instead of wedging the sink thread (and shutdown) for good.
    #[test]
    fn a_stalled_tls_collector_fails_the_delivery_within_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        let held = std::thread::spawn(move || {
            let accepted: Vec<_> = (0..2).filter_map(|_| listener.accept().ok()).collect();
            std::thread::sleep(Duration::from_secs(3));
            drop(accepted);
        });
        let ca = ca_file("stall");
        let mut sink = SyslogSink::new(SyslogTarget {
            transport: Transport::Tls {
                ca_file: ca.clone(),
            },
            address,
        })
        .expect("sink");
        sink.io_timeout = Duration::from_millis(300);
        let alert = crate::control::tests_support::sample_alert();
        for _ in 0..2 {
            let started = Instant::now();
            let result = sink.deliver(&alert);
            let took = started.elapsed();
            assert!(result.is_err(), "a silent collector accepted the message");
            assert!(
                took < Duration::from_secs(2),
                "deliver blocked for {took:?}"
            );
        }
        let _ = std::fs::remove_file(ca);
        held.join().expect("collector");
    }

    #[test]
    fn stream_connections_use_tcp_keepalive() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        let mut sink = SyslogSink::new(SyslogTarget {
            transport: Transport::Tcp,
            address,
        })
        .expect("sink");
        sink.deliver(&crate::control::tests_support::sample_alert())
            .expect("delivery");
        let _peer = listener.accept().expect("accept");
        let Some(Connection::Tcp(stream)) = &sink.connection else {
            panic!("no TCP connection");
        };
        let socket = socket2::SockRef::from(stream);
        assert!(socket.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(
            socket.tcp_keepalive_time().expect("TCP_KEEPIDLE"),
            KEEPALIVE_IDLE
        );
        assert!(stream.read_timeout().expect("timeout").is_some());
    }
}
