//! The metrics listener over HTTP/1.1 (requests parsed with httparse): `GET /metrics`
//! (Prometheus text), `GET /` (the HTML stats page) and `GET /status.json` (what
//! `fj-lb status --json` prints). Each request asks the daemon's loop for what it needs.
//! Read-only: nothing here changes the daemon. I/O edge.
use std::{
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::{mpsc, oneshot},
    time::timeout,
};
use tracing::{info, warn};

use super::{page, status::Status};
use crate::net::serving::Gate;

/// What one request asks the daemon's loop for, and where the answer goes.
pub enum ScrapeRequest {
    /// Prometheus text.
    Metrics(oneshot::Sender<String>),
    /// The status model, for the stats page and /status.json.
    Status(oneshot::Sender<Status>),
}

/// The longest request head read; a longer one is answered 431 and closed.
const MAX_HEAD: usize = 8192;
/// Scrapes served at once; more connections are closed as they arrive.
const MAX_CONNECTIONS: usize = 64;
/// A client gets this long to send its request head, and again to read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request head asks for, as far as this endpoint cares.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    Metrics,
    Page,
    StatusJson,
    NotFound,
    BadMethod,
    Malformed,
    TooLarge,
}

/// Reads `head` once it is complete; `None` while more bytes are needed.
fn ask(head: &[u8]) -> Option<Ask> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => Some(match (req.method, req.path.map(|p| p.split('?').next().unwrap_or(p))) {
            (Some("GET"), Some("/metrics")) => Ask::Metrics,
            (Some("GET"), Some("/" | "/index.html")) => Ask::Page,
            (Some("GET"), Some("/status.json")) => Ask::StatusJson,
            (Some("GET"), _) => Ask::NotFound,
            _ => Ask::BadMethod,
        }),
        Ok(httparse::Status::Partial) if head.len() >= MAX_HEAD => Some(Ask::TooLarge),
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::TooManyHeaders) => Some(Ask::TooLarge),
        Err(_) => Some(Ask::Malformed),
    }
}

/// Asks the loop for its answer to `ask` and renders it: status, content type, body.
async fn answer(ask: Ask, tx: &mpsc::Sender<ScrapeRequest>) -> (&'static str, &'static str, String) {
    let stopping = || ("503 Service Unavailable", "text/plain", "fj-lb is stopping\n".to_string());
    match ask {
        Ask::BadMethod => ("405 Method Not Allowed", "text/plain", "only GET\n".to_string()),
        Ask::NotFound => ("404 Not Found", "text/plain", "here are / (stats page), /status.json and /metrics\n".to_string()),
        Ask::Malformed => ("400 Bad Request", "text/plain", "not an HTTP/1.1 request\n".to_string()),
        Ask::TooLarge => ("431 Request Header Fields Too Large", "text/plain", "request head too large\n".to_string()),
        Ask::Metrics => {
            let (otx, orx) = oneshot::channel();
            if tx.send(ScrapeRequest::Metrics(otx)).await.is_err() {
                return stopping();
            }
            match orx.await {
                Ok(text) => ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", text),
                Err(_) => stopping(),
            }
        }
        Ask::Page | Ask::StatusJson => {
            let (otx, orx) = oneshot::channel();
            if tx.send(ScrapeRequest::Status(otx)).await.is_err() {
                return stopping();
            }
            let Ok(st) = orx.await else { return stopping() };
            if ask == Ask::Page {
                ("200 OK", "text/html; charset=utf-8", page::render(&st, SystemTime::now()))
            } else {
                // The same text `fj-lb status --json` prints.
                let json = serde_json::to_string_pretty(&st).expect("the status model serialises") + "\n";
                ("200 OK", "application/json", json)
            }
        }
    }
}

/// Serves `GET /metrics`, `/` and `/status.json` on `addr`.
pub async fn serve(addr: SocketAddr, tx: mpsc::Sender<ScrapeRequest>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    info!(%addr, "serving Prometheus metrics at /metrics, the stats page at / and /status.json");
    Ok(tokio::spawn(async move {
        let mut gate = Gate::new("metrics", MAX_CONNECTIONS);
        loop {
            let Some((mut stream, permit)) = gate.next(listener.accept()).await else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let mut buf = Vec::with_capacity(1024);
                let mut chunk = [0u8; 1024];
                let ask = loop {
                    if let Some(a) = ask(&buf) {
                        break a;
                    }
                    match timeout(IO_TIMEOUT, stream.read(&mut chunk)).await {
                        Ok(Ok(0) | Err(_)) | Err(_) => return,
                        Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let (status, ctype, body) = answer(ask, &tx).await;
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                match timeout(IO_TIMEOUT, stream.write_all(resp.as_bytes())).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(error = %e, "writing a metrics response failed"),
                    Err(_) => warn!("a scraper did not read its metrics within 10 s; dropped"),
                }
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_by_method_and_path() {
        assert_eq!(ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Some(Ask::Metrics));
        assert_eq!(ask(b"GET / HTTP/1.1\r\n\r\n"), Some(Ask::Page));
        assert_eq!(ask(b"GET /?refresh HTTP/1.1\r\n\r\n"), Some(Ask::Page));
        assert_eq!(ask(b"GET /status.json HTTP/1.1\r\n\r\n"), Some(Ask::StatusJson));
        assert_eq!(ask(b"GET /admin HTTP/1.1\r\n\r\n"), Some(Ask::NotFound));
        assert_eq!(ask(b"POST /metrics HTTP/1.1\r\n\r\n"), Some(Ask::BadMethod));
        assert_eq!(ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), None, "head not complete yet");
        assert_eq!(ask(b"\x16\x03\x01 tls hello\r\n\r\n"), Some(Ask::Malformed));
        let long = [b"GET /metrics HTTP/1.1\r\nX: ".as_slice(), &[b'a'; MAX_HEAD]].concat();
        assert_eq!(ask(&long), Some(Ask::TooLarge));
    }
}
