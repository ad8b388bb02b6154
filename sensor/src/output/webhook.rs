//! The webhook sink: one HTTP POST per alert with the alert's JSON (the `Alert`
//! record's fields) as body, and an optional `Authorization: Bearer` token. Any status
//! outside 2xx, a timeout or a connection error is a failed delivery, retried by the
//! sink thread with back-off.
//!
//! `https://` URLs are checked against the bundled public (WebPKI) roots, or only
//! against the CA certificates of `outputs.webhook.ca_file` when it is given; a
//! certificate that does not verify fails the delivery. Redirects are not followed
//! (they could send the token elsewhere, or downgrade to `http://`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::ApiToken;
use crate::detect::Alert;
use crate::output::sinks::{Deliver, DeliveryError};

/// Longest time one POST may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Posts alerts to a URL.
pub struct WebhookSink {
    url: String,
    token: Option<ApiToken>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.url)
            .finish()
    }
}

/// `Ok` for an `http://` or `https://` URL with a host.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("is not valid: expected https://HOST[:PORT]/PATH (or http://)")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err("is not valid: expected https://HOST[:PORT]/PATH (no user:password@)");
    }
    Ok(())
}

impl WebhookSink {
    /// A sink for `url`; `ca_file` (PEM) replaces the public roots for `https://`.
    pub fn new(
        url: impl Into<String>,
        token: Option<ApiToken>,
        ca_file: Option<&Path>,
    ) -> Result<WebhookSink, DeliveryError> {
        let url = url.into();
        let roots = match ca_file {
            None => ureq::tls::RootCerts::WebPki,
            Some(path) => {
                let tls_error = |reason: String| DeliveryError::Tls {
                    target: url.clone(),
                    reason: format!("{}: {reason}", path.display()),
                };
                let pem = std::fs::read(path).map_err(|e| tls_error(e.to_string()))?;
                let mut certificates = Vec::new();
                for item in ureq::tls::parse_pem(&pem) {
                    if let ureq::tls::PemItem::Certificate(certificate) =
                        item.map_err(|e| tls_error(e.to_string()))?
                    {
                        certificates.push(certificate.to_owned());
                    }
                }
                if certificates.is_empty() {
                    return Err(tls_error("no PEM certificate in the file".to_owned()));
                }
                ureq::tls::RootCerts::Specific(Arc::new(certificates))
            }
        };
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(roots)
            .build();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(true)
            .max_redirects(0)
            .tls_config(tls)
            .build()
            .into();
        Ok(WebhookSink { url, token, agent })
    }
}

impl Deliver for WebhookSink {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn deliver(&mut self, alert: &Alert) -> Result<(), DeliveryError> {
        let mut request = self.agent.post(&self.url).header(
            "User-Agent",
            concat!("otsensor/", env!("CARGO_PKG_VERSION")),
        );
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {}", token.expose()));
        }
        request
            .send_json(alert)
            .map(|_| ())
            .map_err(|error| DeliveryError::Http {
                target: self.url.clone(),
                reason: error.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    /// A one-request HTTP server: answers `status` and returns the request's headers
    /// and body.
    fn serve_once(listener: &TcpListener, status: &str) -> (String, String) {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut headers = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("line");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().expect("length");
            }
            headers.push_str(&line);
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).expect("body");
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        .expect("answer");
        (headers, String::from_utf8(body).expect("utf8"))
    }

    #[test]
    fn posts_alert_json_with_bearer_token_and_fails_on_error_status() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let mut sink =
            WebhookSink::new(url, Some(ApiToken::new("0123456789abcdef")), None).expect("sink");
        let alert = crate::control::tests_support::sample_alert();
        let server = std::thread::spawn(move || {
            let first = serve_once(&listener, "200 OK");
            let second = serve_once(&listener, "503 Service Unavailable");
            (first, second)
        });
        sink.deliver(&alert).expect("delivered");
        assert!(sink.deliver(&alert).is_err(), "503 must be a failure");
        let ((headers, body), _) = server.join().expect("server");
        assert!(
            headers.contains("authorization: Bearer 0123456789abcdef")
                || headers
                    .to_ascii_lowercase()
                    .contains("authorization: bearer 0123456789abcdef"),
            "{headers}"
        );
        let json: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(json["signature"], "plc_stop");
        assert_eq!(json["signature_id"], 1001);
    }
}
