//! The control socket: one JSON request per line, one JSON response per line. The daemon's
//! main loop owns all state; connections hand their requests to it and wait for the answer.
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream as StdUnixStream},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader as TokioBufReader},
    net::UnixListener,
    sync::{mpsc, oneshot},
};
use tracing::{debug, warn};

/// Longest request line accepted; anything longer is refused unread.
const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Drain { service: String, backend: String },
    Enable { service: String, backend: String },
    Weight { service: String, backend: String, weight: u32 },
    Reload {},
    Status {},
    Flows { service: Option<String>, backend: Option<String>, limit: Option<usize> },
    Maglev { service: String },
    Stats {},
    Lookup { src: String, dst: String, protocol: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Response {
    pub fn ok(data: serde_json::Value) -> Self {
        Self { ok: true, error: None, data }
    }
    pub fn err(e: impl ToString) -> Self {
        Self { ok: false, error: Some(e.to_string()), data: serde_json::Value::Null }
    }
}

pub type Pending = (Request, oneshot::Sender<Response>);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("another fj-lb is already running: its control socket {0} answers")]
    InUse(PathBuf),
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fj-lb is not running (nothing answers on {path}: {source})")]
    NotRunning {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to fj-lb on {path}: {source}")]
    Talk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fj-lb answered something unreadable: {0}")]
    Garbled(String),
}

/// Binds the socket (mode 0600) and serves it; requests go to `tx`.
pub fn serve(path: &Path, tx: mpsc::Sender<Pending>) -> Result<tokio::task::JoinHandle<()>, ControlError> {
    let io = |source| ControlError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    if path.exists() {
        if StdUnixStream::connect(path).is_ok() {
            return Err(ControlError::InUse(path.to_path_buf()));
        }
        // Left behind by a daemon that was killed: nobody listens on it.
        std::fs::remove_file(path).map_err(io)?;
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut reader = TokioBufReader::new(r);
                loop {
                    // The limit is per request line, not per connection: a client may send many.
                    let mut raw = Vec::new();
                    match (&mut reader).take(MAX_REQUEST as u64 + 1).read_until(b'\n', &mut raw).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let too_long = raw.len() > MAX_REQUEST;
                    let resp = if too_long {
                        Response::err("request too long")
                    } else {
                        match std::str::from_utf8(&raw).map_err(|e| e.to_string()).and_then(|l| {
                            serde_json::from_str::<Request>(l.trim_end()).map_err(|e| e.to_string())
                        }) {
                            Ok(req) => {
                                debug!(?req, "control request");
                                let (rtx, rrx) = oneshot::channel();
                                if tx.send((req, rtx)).await.is_err() {
                                    return;
                                }
                                rrx.await.unwrap_or_else(|_| Response::err("fj-lb is stopping"))
                            }
                            Err(e) => Response::err(format!("bad request: {e}")),
                        }
                    };
                    let mut out = serde_json::to_vec(&resp).expect("responses serialise");
                    out.push(b'\n');
                    // After an over-long line the stream cannot be resynchronised: answer, close.
                    if w.write_all(&out).await.is_err() || too_long {
                        return;
                    }
                }
            });
        }
    }))
}

pub fn remove_socket(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound {
            warn!(path = %path.display(), error = %e, "removing the control socket failed");
        }
}

/// Sends one request and waits for its answer (the CLI's side).
pub fn call(path: &Path, req: &Request, timeout: Duration) -> Result<Response, ControlError> {
    let mut s = StdUnixStream::connect(path).map_err(|source| ControlError::NotRunning { path: path.to_path_buf(), source })?;
    let talk = |source| ControlError::Talk { path: path.to_path_buf(), source };
    s.set_read_timeout(Some(timeout)).map_err(talk)?;
    let mut line = serde_json::to_vec(req).expect("requests serialise");
    line.push(b'\n');
    s.write_all(&line).map_err(talk)?;
    let mut answer = String::new();
    BufReader::new(&s).read_line(&mut answer).map_err(talk)?;
    serde_json::from_str(&answer).map_err(|e| ControlError::Garbled(format!("{e}: {answer:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_stable_names() {
        let r: Request = serde_json::from_str(r#"{"cmd":"weight","service":"web","backend":"10.0.0.11","weight":5}"#).unwrap();
        assert_eq!(r, Request::Weight { service: "web".into(), backend: "10.0.0.11".into(), weight: 5 });
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"weight","service":"web"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"format_disk"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reload","extra":1}"#).is_err());
    }

    #[tokio::test]
    async fn socket_round_trip_bad_requests_and_mode() {
        let dir = std::env::temp_dir().join(format!("fj-lb-ctl-{}", std::process::id()));
        let path = dir.join("control.sock");
        let (tx, mut rx) = mpsc::channel::<Pending>(4);
        let _server = serve(&path, tx).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        tokio::spawn(async move {
            while let Some((req, reply)) = rx.recv().await {
                let _ = reply.send(Response::ok(serde_json::json!({ "echo": format!("{req:?}") })));
            }
        });
        let p = path.clone();
        let r = tokio::task::spawn_blocking(move || call(&p, &Request::Reload {}, Duration::from_secs(5))).await.unwrap().unwrap();
        assert!(r.ok);
        assert_eq!(r.data["echo"], "Reload");
        let p = path.clone();
        let bad = tokio::task::spawn_blocking(move || {
            let mut s = StdUnixStream::connect(&p).unwrap();
            s.write_all(b"{not json\n").unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            line
        })
        .await
        .unwrap();
        let bad: Response = serde_json::from_str(&bad).unwrap();
        assert!(!bad.ok && bad.error.unwrap().starts_with("bad request"));
        let p = path.clone();
        let many = tokio::task::spawn_blocking(move || {
            // 2,000 requests of ~60 bytes on one connection: well past the per-line limit in all.
            let mut s = StdUnixStream::connect(&p).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut ok = 0;
            for i in 0..2000 {
                writeln!(s, r#"{{"cmd":"maglev","service":"service-number-{i:05}"}}"#).unwrap();
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                ok += serde_json::from_str::<Response>(&line).unwrap().ok as usize;
            }
            let long = format!("{{\"cmd\":\"maglev\",\"service\":\"{}\"}}\n", "x".repeat(MAX_REQUEST));
            s.write_all(long.as_bytes()).unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            (ok, serde_json::from_str::<Response>(&line).unwrap())
        })
        .await
        .unwrap();
        assert_eq!(many.0, 2000, "every request on a long-lived connection is answered");
        assert_eq!(many.1.error.as_deref(), Some("request too long"));
        let (tx2, _rx2) = mpsc::channel::<Pending>(1);
        assert!(matches!(serve(&path, tx2), Err(ControlError::InUse(_))), "a second daemon is refused");
        remove_socket(&path);
        let _ = std::fs::remove_dir(&dir);
        let e = call(&path, &Request::Status {}, Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().starts_with("fj-lb is not running"), "{e}");
    }
}
