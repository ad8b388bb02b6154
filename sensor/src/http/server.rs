//! The listener: our own accept loop over hyper, because the management port is exposed
//! and every resource a client can hold must be bounded.
//!
//! - **Connections**: at most `max_connections` at once (a semaphore taken before
//!   `accept`; beyond it, new connections wait in the kernel's backlog and cost no file
//!   descriptor here).
//! - **Time**: request headers must arrive within `header_timeout`; a connection that
//!   moves no byte for `idle_timeout` is closed (idle keep-alive, slow bodies); a
//!   request's answer takes at most `request_timeout` (503 after).
//! - **Size**: a request body over `max_body_bytes` is refused (413).
//! - **Who**: the `Host` (and `Origin`, when a browser sends one) must name this sensor
//!   ([`HostGuard`]): a web page cannot read the API through DNS rebinding.
//! - Every answer carries security headers (no framing, no sniffing, no referrer).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::ApiError;
pub use crate::config::HttpLimits;
use crate::metrics::Metrics;

/// Which `Host` and `Origin` values name this sensor: IP literals of the listen address
/// (any IP literal when it listens on all addresses: a browser sends an IP literal only
/// when the user typed it, so it cannot be a rebinding), `localhost`, and the
/// configured names.
#[derive(Clone, Debug)]
pub struct HostGuard {
    listen: IpAddr,
    names: Vec<String>,
}

impl HostGuard {
    pub fn new(listen: SocketAddr, allowed_hosts: &[String]) -> HostGuard {
        let mut names: Vec<String> = allowed_hosts
            .iter()
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .collect();
        names.push("localhost".to_owned());
        HostGuard {
            listen: listen.ip(),
            names,
        }
    }

    /// `authority` is `host`, `host:port`, `[v6]` or `[v6]:port`.
    pub fn allows_authority(&self, authority: &str) -> bool {
        let host = match authority.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((v6, after)) if after.is_empty() || after.starts_with(':') => v6,
                _ => return false,
            },
            None => match authority.rsplit_once(':') {
                Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
                Some(_) => return false,
                None => authority,
            },
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.listen.is_unspecified() || ip == self.listen || ip.is_loopback();
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        !host.is_empty() && self.names.contains(&host)
    }

    /// `origin` is `scheme://authority` (browsers send no path).
    pub fn allows_origin(&self, origin: &str) -> bool {
        match origin.split_once("://") {
            Some(("http" | "https", authority)) => self.allows_authority(authority),
            _ => false,
        }
    }
}

/// Shared by the middleware.
#[derive(Clone)]
pub(super) struct Guard {
    pub hosts: HostGuard,
    pub limits: HttpLimits,
    pub metrics: Arc<Metrics>,
}

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Host/Origin allow-list, body limit, request timeout and security headers.
pub(super) async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let mut response = check_and_run(&guard, request, next).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn check_and_run(guard: &Guard, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    if !host.is_some_and(|h| guard.hosts.allows_authority(h)) {
        guard
            .metrics
            .http_rejected
            .with_label_values(&["host"])
            .inc();
        return ApiError::Forbidden("this Host is not one of http.allowed_hosts".to_owned())
            .into_response();
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        if !origin.to_str().is_ok_and(|o| guard.hosts.allows_origin(o)) {
            guard
                .metrics
                .http_rejected
                .with_label_values(&["origin"])
                .inc();
            return ApiError::Forbidden("cross-origin requests are refused".to_owned())
                .into_response();
        }
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let max = guard.limits.max_body_bytes;
    if declared.is_some_and(|length| length > max as u64) {
        guard
            .metrics
            .http_rejected
            .with_label_values(&["body"])
            .inc();
        return ApiError::TooLarge(max).into_response();
    }
    // A body without a length (chunked) fails when it grows past the limit.
    let request = request.map(|body| Body::new(http_body_util::Limited::new(body, max)));
    match tokio::time::timeout(guard.limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            guard
                .metrics
                .http_rejected
                .with_label_values(&["timeout"])
                .inc();
            ApiError::Unavailable.into_response()
        }
    }
}

/// Accepts until `shutdown` resolves, then lets open connections finish (up to the
/// request timeout).
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of descriptors or a connection reset before accept: wait a little
                // instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        metrics.http_connections.inc();
        metrics.http_connections_open.inc();
        let io = TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout));
        let service = TowerToHyperService::new(app.clone());
        let header_timeout = limits.header_timeout;
        let open = metrics.http_connections_open.clone();
        let mut closing = closing_rx.clone();
        // Finished connections are reaped as we go, so the set stays bounded.
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(64 * 1024);
            let connection = builder.serve_connection(io, service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = closed(&mut closing) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            open.dec();
        });
    }
    let _ = closing_tx.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.request_timeout, drain)
        .await
        .is_err()
    {
        connections.abort_all();
    }
}

/// Resolves once the server is closing (or gone).
async fn closed(closing: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *closing.borrow_and_update() {
            return;
        }
        if closing.changed().await.is_err() {
            return;
        }
    }
}

/// A stream that fails with `TimedOut` when no byte moved either way for `idle`.
struct IdleTimeout<S> {
    inner: S,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> IdleTimeout<S> {
    fn new(inner: S, idle: Duration) -> IdleTimeout<S> {
        IdleTimeout {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn touch(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle")
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    self.touch();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_guard_allows_the_listen_address_localhost_and_configured_names() {
        let guard = HostGuard::new(
            "10.1.2.3:9750".parse().expect("addr"),
            &["Sensor.Plant.Example".to_owned()],
        );
        for ok in [
            "10.1.2.3:9750",
            "10.1.2.3",
            "localhost:9750",
            "LOCALHOST",
            "127.0.0.1:9750",
            "[::1]:9750",
            "sensor.plant.example:9750",
            "sensor.plant.example.",
        ] {
            assert!(guard.allows_authority(ok), "{ok}");
        }
        for refused in [
            "evil.example:9750",
            "10.1.2.4:9750",
            "",
            "10.1.2.3:97x0",
            "[::1",
            "sensor.plant.example.evil.example",
        ] {
            assert!(!guard.allows_authority(refused), "{refused}");
        }
        assert!(guard.allows_origin("http://10.1.2.3:9750"));
        assert!(!guard.allows_origin("http://evil.example:9750"));
        assert!(!guard.allows_origin("null"));
        let any = HostGuard::new("0.0.0.0:9750".parse().expect("addr"), &[]);
        assert!(any.allows_authority("192.0.2.7:9750"));
        assert!(!any.allows_authority("rebind.example:9750"));
    }
}
