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
        answer(stream, status).expect("request")
    }

    /// Reads one request from `stream`, answers `status`.
    fn answer(stream: impl Read + Write, status: &str) -> std::io::Result<(String, String)> {
        let mut reader = BufReader::new(stream);
        let mut headers = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
            headers.push_str(&line);
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        let stream = reader.get_mut();
        write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )?;
        stream.flush()?;
        Ok((headers, String::from_utf8_lossy(&body).into_owned()))
    }

    /// A CA, and a certificate for 127.0.0.1 it signed (PEM CA, DER cert and key).
    fn test_pki() -> (String, rustls::pki_types::CertificateDer<'static>, Vec<u8>) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("cert");
        (ca.pem(), cert.der().clone(), key.serialize_der())
    }

    /// Per connection: the request received, or the handshake's failure.
    type ServerThread = std::thread::JoinHandle<Vec<Result<(String, String), String>>>;

    /// An https server on 127.0.0.1: answers 200 to each request over TLS, and reports
    /// what it received (or the handshake's failure) per connection.
    fn https_server(
        cert: rustls::pki_types::CertificateDer<'static>,
        key: Vec<u8>,
        connections: usize,
    ) -> (String, ServerThread) {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .expect("server config");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("https://{}/hook", listener.local_addr().expect("addr"));
        let server = std::thread::spawn(move || {
            (0..connections)
                .map(|_| {
                    let (tcp, _) = listener.accept().map_err(|e| e.to_string())?;
                    tcp.set_read_timeout(Some(Duration::from_secs(10)))
                        .map_err(|e| e.to_string())?;
                    let tls = rustls::ServerConnection::new(Arc::clone(&config))
                        .map_err(|e| e.to_string())?;
                    answer(rustls::StreamOwned::new(tls, tcp), "200 OK").map_err(|e| e.to_string())
                })
                .collect()
        });
        (url, server)
    }

    #[test]
    fn https_checks_the_certificate_against_the_configured_ca() {
        let (ca_pem, cert, key) = test_pki();
        let (other_ca_pem, _, _) = test_pki();
        let dir = std::env::temp_dir().join(format!("otsensor-webhook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ca_file = dir.join("ca.pem");
        let other_file = dir.join("other-ca.pem");
        std::fs::write(&ca_file, &ca_pem).expect("ca");
        std::fs::write(&other_file, &other_ca_pem).expect("other ca");
        let (url, server) = https_server(cert, key, 3);
        let token = Some(ApiToken::new("0123456789abcdef"));
        let alert = crate::control::tests_support::sample_alert();

        let mut trusted = WebhookSink::new(&url, token.clone(), Some(&ca_file)).expect("sink");
        trusted.deliver(&alert).expect("delivered over https");
        // Signed by a CA we were not told to trust, or checked against the public roots:
        // refused before any byte of the alert or the token is sent.
        let mut wrong_ca = WebhookSink::new(&url, token.clone(), Some(&other_file)).expect("sink");
        assert!(
            wrong_ca.deliver(&alert).is_err(),
            "an unknown CA was accepted"
        );
        let mut public = WebhookSink::new(&url, token, None).expect("sink");
        assert!(
            public.deliver(&alert).is_err(),
            "a private CA passed the WebPKI roots"
        );

        let seen = server.join().expect("server");
        let (headers, body) = seen[0].clone().expect("first connection served");
        assert!(headers
            .to_ascii_lowercase()
            .contains("authorization: bearer 0123456789abcdef"));
        assert!(body.contains("plc_stop"), "{body}");
        assert!(seen[1].is_err() && seen[2].is_err(), "{seen:?}");
        assert!(WebhookSink::new(&url, None, Some(&dir.join("missing.pem"))).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn only_http_and_https_urls_with_a_host_pass() {
        assert!(check_url("https://siem.example/hook").is_ok());
        assert!(check_url("http://10.0.0.1:8080/x").is_ok());
        assert!(check_url("ftp://siem.example/hook").is_err());
        assert!(check_url("https:///hook").is_err());
        assert!(check_url("https://user:pw@siem.example/").is_err());
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
