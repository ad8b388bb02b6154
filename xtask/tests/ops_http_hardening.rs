//! The management port of `otsensor replay --serve` against hostile clients: foreign
//! `Host`/`Origin` (DNS rebinding, cross-site pages), framing, oversized bodies, slow
//! and idle connections, the connection cap, and the API token never printed.

mod ops_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ops_support::*;

/// One request on a new connection (`Connection: close`); the status line's code and
/// the response's headers (lower-case names) and body.
fn raw(address: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn get_with(address: SocketAddr, path: &str, host: &str, extra: &str) -> (u16, String, String) {
    raw(
        address,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"),
    )
}

/// A scenario capture with alerts, and a configuration with its learning period and
/// these `http:` lines.
fn setup(dir: &Path, http: &str) -> (PathBuf, PathBuf) {
    let (capture, truth) = scenario_capture(dir, "combined");
    let path = dir.join("otsensor.yaml");
    let text = format!(
        "learning:\n  duration: {}s\nhttp:\n{http}",
        truth.learning_duration_s
    );
    std::fs::write(&path, text).expect("config");
    (capture, path)
}

/// Seconds until the server closes `stream` (reads end-of-file or an error).
fn seconds_until_closed(mut stream: TcpStream, limit: Duration) -> Option<f64> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed().as_secs_f64()),
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(started.elapsed().as_secs_f64()),
        }
    }
    None
}

#[test]
fn foreign_hosts_origins_and_large_bodies_are_refused_and_answers_forbid_framing() {
    let dir = TempDir::new("http-hosts");
    let (capture, config) = setup(
        dir.path(),
        &format!("  api_token: \"{TOKEN}\"\n  allowed_hosts: [sensor.plant.test]\n"),
    );
    let sensor = Sensor::serve(&[], &[capture], &config);
    sensor.wait_replayed();
    let address = sensor.address;
    let own = address.to_string();

    for path in ["/", "/api/devices", "/api/health", "/metrics", "/nope"] {
        let (status, headers, _) = get_with(address, path, &own, "");
        assert!(status == 200 || path == "/nope", "{path}: {status}");
        assert!(
            headers.contains("content-security-policy:")
                && headers.contains("frame-ancestors 'none'"),
            "{path}: {headers}"
        );
        assert!(headers.contains("x-frame-options: deny"), "{headers}");
        assert!(
            headers.contains("x-content-type-options: nosniff"),
            "{headers}"
        );
        assert!(
            headers.contains("referrer-policy: no-referrer"),
            "{headers}"
        );
    }
    let port = address.port();
    // DNS rebinding: the browser sends the attacker's name as Host.
    let (status, _, body) = get_with(
        address,
        "/api/devices",
        &format!("rebind.example:{port}"),
        "",
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        get_with(address, "/api/devices", &format!("localhost:{port}"), "").0,
        200
    );
    assert_eq!(
        get_with(
            address,
            "/api/devices",
            &format!("SENSOR.plant.test:{port}"),
            ""
        )
        .0,
        200
    );
    // A cross-site page's request carries its Origin.
    let (status, _, _) = get_with(
        address,
        "/api/alerts",
        &own,
        "Origin: http://evil.example\r\n",
    );
    assert_eq!(status, 403);
    let (status, _, _) = get_with(
        address,
        "/api/alerts",
        &own,
        &format!("Origin: http://{own}\r\n"),
    );
    assert_eq!(status, 200);
    // Bodies over http.max_body_bytes are refused before anything reads them.
    let (status, _, body) = raw(
        address,
        &format!(
            "POST /api/baseline/end-learning HTTP/1.1\r\nHost: {own}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 413, "{body}");

    let metrics = get_text(&sensor.url("/metrics")).expect("metrics").1;
    for reason in ["host", "origin", "body"] {
        assert!(
            metrics.contains(&format!(
                "otsensor_http_rejected_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}:\n{metrics}"
        );
    }
}

#[test]
fn slow_idle_and_excess_connections_are_bounded() {
    let dir = TempDir::new("http-slow");
    let (capture, config) = setup(
        dir.path(),
        &format!(
            "  api_token: \"{TOKEN}\"\n  header_timeout: 2s\n  idle_timeout: 3s\n  max_connections: 8\n"
        ),
    );
    let sensor = Sensor::serve(&[], &[capture], &config);
    sensor.wait_replayed();
    let address = sensor.address;

    // Slowloris: headers that never end are cut at header_timeout.
    let mut slow = TcpStream::connect(address).expect("connect");
    slow.write_all(b"GET /api/devices HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1")
        .expect("send");
    let closed = seconds_until_closed(slow, Duration::from_secs(8)).expect("slow client kept");
    assert!((1.8..5.0).contains(&closed), "closed after {closed} s");

    // An idle keep-alive connection after a request is closed too.
    let mut idle = TcpStream::connect(address).expect("connect");
    idle.write_all(format!("GET /api/health HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes())
        .expect("send");
    let closed = seconds_until_closed(idle, Duration::from_secs(8)).expect("idle client kept");
    assert!(closed < 5.0, "closed after {closed} s");

    // The cap: 8 silent connections hold every slot; the 9th waits in the backlog
    // until header_timeout (2 s) frees them, then is answered.
    let silent: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(address).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut ninth = TcpStream::connect(address).expect("connect (backlog)");
    ninth
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .expect("send");
    ninth
        .set_read_timeout(Some(Duration::from_millis(400)))
        .expect("timeout");
    let mut first = [0u8; 1];
    assert!(
        ninth.read(&mut first).is_err(),
        "answered although all 8 connections were taken"
    );
    ninth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut answer = Vec::new();
    let _ = ninth.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let open = answer
        .lines()
        .find_map(|l| l.strip_prefix("otsensor_http_connections_open "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("open connections gauge");
    assert!(open <= 8, "{open} connections open");
    drop(silent);
}

#[test]
fn a_generated_token_is_written_to_a_private_file_and_never_printed() {
    let dir = TempDir::new("http-token");
    let (capture, config) = setup(dir.path(), "  allowed_hosts: []\n");
    let sensor = Sensor::serve(&[], &[capture], &config);
    sensor.wait_replayed();
    let lines = sensor.stderr.lock().expect("stderr").clone();
    let file = lines
        .iter()
        .find_map(|l| {
            l.split_once("this session's token is in ")
                .map(|(_, p)| p.trim())
        })
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no token file announced:\n{}", lines.join("\n")));
    let mode = std::fs::metadata(&file)
        .expect("token file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
    let token = std::fs::read_to_string(&file)
        .expect("token")
        .trim()
        .to_owned();
    assert_eq!(token.len(), 32);
    assert!(
        !lines.iter().any(|l| l.contains(&token)),
        "the token reached stderr:\n{}",
        lines.join("\n")
    );
    let alerts = get_json(&sensor.url("/api/alerts")).expect("alerts");
    let id = alerts[0]["id"].as_u64().expect("an alert");
    let ack = sensor.url(&format!("/api/alerts/{id}/acknowledge"));
    assert_eq!(post(&ack, None).0, 401);
    assert_eq!(post(&ack, Some(&token)).0, 200);
    drop(sensor);
    // The private directory goes with the server (SIGKILL here: the test only checks
    // the file while it ran).
}
