//! One check against one address: a TCP connect, or an HTTP GET whose status line must carry
//! the expected code (parsed with httparse, not by hand).
use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::model::{
    config::HealthCheck,
    health::{CheckFailure, CheckOutcome},
};

/// The longest response head read before giving up on finding a status line.
const MAX_HEAD: usize = 4096;

fn describe(e: &std::io::Error) -> CheckFailure {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => CheckFailure::Refused,
        std::io::ErrorKind::ConnectionReset => CheckFailure::Reset,
        _ => CheckFailure::Io(e.to_string()),
    }
}

/// The status code of a response head, once its status line is complete; `None` while more
/// bytes are needed.
fn status_code(head: &[u8]) -> Option<Result<u16, CheckFailure>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(head) {
        // httparse fills the code in as soon as the status line is complete, even when the
        // headers are not: that is all a check needs.
        Ok(_) | Err(httparse::Error::TooManyHeaders) if resp.code.is_some() => resp.code.map(Ok),
        Ok(_) => None,
        Err(_) => Some(Err(CheckFailure::NotHttp)),
    }
}

/// Runs one check against `addr`.
pub async fn probe(check: &HealthCheck, addr: SocketAddr, timeout: Duration) -> CheckOutcome {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| describe(&e))?;
        let HealthCheck::Http { path, expect_status } = check else {
            return Ok(());
        };
        let host = match addr.ip() {
            IpAddr::V4(v) => v.to_string(),
            IpAddr::V6(v) => format!("[{v}]"),
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: fj-lb-health\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| describe(&e))?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        let status = loop {
            if let Some(code) = status_code(&buf) {
                break code?;
            }
            let n = s.read(&mut chunk).await.map_err(|e| describe(&e))?;
            if n == 0 || buf.len() >= MAX_HEAD {
                return Err(CheckFailure::NotHttp);
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        if status == *expect_status { Ok(()) } else { Err(CheckFailure::HttpStatus(status)) }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(CheckFailure::Timeout { ms: timeout.as_millis() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_is_enough_and_garbage_is_not_http() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(Ok(200)));
        assert_eq!(status_code(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"), Some(Ok(503)));
        assert_eq!(status_code(b"HTTP/1.1 20"), None, "incomplete: read more");
        assert_eq!(status_code(b""), None);
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), Some(Err(CheckFailure::NotHttp)));
    }

    #[tokio::test]
    async fn probes_report_refused_timeout_and_status() {
        use tokio::net::TcpListener;
        // A port nobody listens on: bind then drop to find one.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let r = probe(&HealthCheck::Tcp, free, Duration::from_millis(500)).await;
        assert_eq!(r, Err(CheckFailure::Refused));

        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
            }
            // Third connection: accept and say nothing.
            let (_s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        let http = HealthCheck::Http { path: "/healthz".into(), expect_status: 200 };
        assert_eq!(probe(&http, addr, Duration::from_millis(500)).await, Ok(()));
        assert_eq!(probe(&http, addr, Duration::from_millis(500)).await, Err(CheckFailure::HttpStatus(503)));
        assert_eq!(probe(&http, addr, Duration::from_millis(200)).await, Err(CheckFailure::Timeout { ms: 200 }));
    }
}
