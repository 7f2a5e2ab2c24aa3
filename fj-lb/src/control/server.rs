//! The daemon's side of the control socket: mode 0600, one task per connection, each request
//! line limited in size, every request handed to the daemon's loop.
use std::{
    os::unix::{fs::PermissionsExt, net::UnixStream as StdUnixStream},
    path::Path,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader as TokioBufReader},
    net::UnixListener,
    sync::{mpsc, oneshot},
    time::timeout,
};
use tracing::{debug, warn};


use crate::net::serving::Gate;

use super::{
    ControlError,
    protocol::{MAX_REQUEST, Reply, Request, Response},
};

/// Connections served at once; more are closed as they arrive.
const MAX_CONNECTIONS: usize = 64;
/// A connection that sends no complete request line for this long is closed.
const IDLE: Duration = Duration::from_secs(30);
/// An answer the client does not read within this long is dropped with the connection.
const WRITE: Duration = Duration::from_secs(10);

/// A request and where its answer goes.
pub type Pending = (Request, oneshot::Sender<Response<Reply>>);

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
        let mut gate = Gate::new("control", MAX_CONNECTIONS);
        loop {
            let Some((stream, permit)) = gate.next(listener.accept()).await else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let (r, mut w) = stream.into_split();
                let mut reader = TokioBufReader::new(r);
                loop {
                    // The limit is per request line, not per connection: a client may send many.
                    let mut raw = Vec::new();
                    match timeout(IDLE, (&mut reader).take(MAX_REQUEST as u64 + 1).read_until(b'\n', &mut raw)).await {
                        Ok(Ok(0) | Err(_)) | Err(_) => return,
                        Ok(Ok(_)) => {}
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
                    if !matches!(timeout(WRITE, w.write_all(&out)).await, Ok(Ok(()))) || too_long {
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


#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader, Write},
        time::Duration,
    };

    use super::*;
    use crate::control::{call, protocol::ReloadReply};

    #[tokio::test]
    async fn socket_round_trip_bad_requests_and_mode() {
        let dir = std::env::temp_dir().join(format!("fj-lb-ctl-{}", std::process::id()));
        let path = dir.join("control.sock");
        let (tx, mut rx) = mpsc::channel::<Pending>(4);
        let _server = serve(&path, tx).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        tokio::spawn(async move {
            while let Some((req, reply)) = rx.recv().await {
                let _ = reply.send(Response::ok(Reply::Reloaded(ReloadReply { message: format!("{req:?}") })));
            }
        });
        let p = path.clone();
        let r: ReloadReply =
            tokio::task::spawn_blocking(move || call(&p, &Request::Reload {}, Duration::from_secs(5))).await.unwrap().unwrap();
        assert_eq!(r.message, "Reload");
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
        let bad: Response<()> = serde_json::from_str(&bad).unwrap();
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
                ok += serde_json::from_str::<Response<ReloadReply>>(&line).unwrap().ok as usize;
            }
            let long = format!("{{\"cmd\":\"maglev\",\"service\":\"{}\"}}\n", "x".repeat(MAX_REQUEST));
            s.write_all(long.as_bytes()).unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            (ok, serde_json::from_str::<Response<()>>(&line).unwrap())
        })
        .await
        .unwrap();
        assert_eq!(many.0, 2000, "every request on a long-lived connection is answered");
        assert_eq!(many.1.error.as_deref(), Some("request too long"));
        let (tx2, _rx2) = mpsc::channel::<Pending>(1);
        assert!(matches!(serve(&path, tx2), Err(ControlError::InUse(_))), "a second daemon is refused");
        remove_socket(&path);
        let _ = std::fs::remove_dir(&dir);
        let e = call::<()>(&path, &Request::Status {}, Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().starts_with("fj-lb is not running"), "{e}");
    }
}
