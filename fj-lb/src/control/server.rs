//! The daemon's side of the control socket: mode 0600, one task per connection, each request
//! line limited in size, every request handed to the daemon's loop.
use std::{
    os::unix::{fs::PermissionsExt, net::UnixStream as StdUnixStream},
    path::Path,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader as TokioBufReader},
    net::{
        UnixListener,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
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

/// Where the lines after the answer go, for a request that streams (`trace`): the daemon
/// sends one `Response` a line and ends the stream by dropping its sender; the connection
/// drops the receiver when the client goes, which is how the daemon learns of it.
pub type Stream = mpsc::Sender<Response<Reply>>;

/// Lines of a stream waiting for the client: beyond them the daemon waits (and the data
/// path's ring buffer fills and drops records, not packets).
const STREAM_BUFFER: usize = 256;

/// A request, where its answer goes, and for a streaming request where the rest goes.
pub type Pending = (Request, oneshot::Sender<Response<Reply>>, Option<Stream>);

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
                                let (stx, srx) = match req {
                                    Request::Trace { .. } => {
                                        let (stx, srx) = mpsc::channel(STREAM_BUFFER);
                                        (Some(stx), Some(srx))
                                    }
                                    _ => (None, None),
                                };
                                if tx.send((req, rtx, stx)).await.is_err() {
                                    return;
                                }
                                let resp = rrx.await.unwrap_or_else(|_| Response::err("fj-lb is stopping"));
                                if let Some(srx) = srx.filter(|_| resp.ok) {
                                    if write_line(&mut w, &resp).await {
                                        copy_stream(&mut reader, &mut w, srx).await;
                                    }
                                    // A stream is the connection's last answer.
                                    return;
                                }
                                resp
                            }
                            Err(e) => Response::err(format!("bad request: {e}")),
                        }
                    };
                    // After an over-long line the stream cannot be resynchronised: answer, close.
                    if !write_line(&mut w, &resp).await || too_long {
                        return;
                    }
                }
            });
        }
    }))
}

/// Writes one answer line; false if the client did not take it within `WRITE`.
async fn write_line(w: &mut OwnedWriteHalf, resp: &Response<Reply>) -> bool {
    let mut out = serde_json::to_vec(resp).expect("responses serialise");
    out.push(b'\n');
    matches!(timeout(WRITE, w.write_all(&out)).await, Ok(Ok(())))
}

/// Copies a stream's lines to the client until the daemon ends it or the client goes. No idle
/// timeout: a trace may rightly be quiet for hours. The client sends nothing more, so its
/// end of the connection is watched only for closing (EOF, an error, or anything it sends).
async fn copy_stream(reader: &mut TokioBufReader<OwnedReadHalf>, w: &mut OwnedWriteHalf, mut lines: mpsc::Receiver<Response<Reply>>) {
    let mut byte = [0u8; 1];
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(resp) => {
                    if !write_line(w, &resp).await {
                        return;
                    }
                }
                None => return,
            },
            _ = reader.read(&mut byte) => return,
        }
    }
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

    /// A trace's connection is quiet while no packet matches: it must outlive `IDLE`, carry
    /// the lines the daemon sends whenever they come, and tell the daemon when the client goes.
    #[tokio::test(start_paused = true)]
    async fn a_stream_outlives_the_idle_timeout_and_ends_when_its_client_goes() {
        use tokio::io::AsyncBufReadExt as _;

        use crate::control::protocol::TraceStarted;
        use crate::report::trace::TraceEvent;

        let dir = std::env::temp_dir().join(format!("fj-lb-ctl-stream-{}", std::process::id()));
        let path = dir.join("control.sock");
        let (tx, mut rx) = mpsc::channel::<Pending>(4);
        let _server = serve(&path, tx).unwrap();
        let (got_tx, got_rx) = oneshot::channel();
        tokio::spawn(async move {
            let (req, reply, stream) = rx.recv().await.unwrap();
            assert!(matches!(req, Request::Trace { .. }), "{req:?}");
            let _ = reply.send(Response::ok(Reply::TraceStarted(TraceStarted { filter: "every packet".into() })));
            let _ = got_tx.send(stream.expect("a trace request comes with a stream"));
        });
        let client = tokio::net::UnixStream::connect(&path).await.unwrap();
        let (r, mut w) = client.into_split();
        w.write_all(b"{\"cmd\":\"trace\",\"count\":2}\n").await.unwrap();
        let mut lines = TokioBufReader::new(r).lines();
        let first = lines.next_line().await.unwrap().unwrap();
        assert_eq!(first, r#"{"ok":true,"data":{"filter":"every packet"}}"#);
        let stream = got_rx.await.unwrap();
        tokio::time::sleep(IDLE * 3).await;
        let event = TraceEvent {
            src: Some("10.0.0.2:40000".into()),
            dst: Some("10.0.0.100:80".into()),
            protocol: Some("tcp".into()),
            service: Some("web".into()),
            backend: Some("10.0.0.11".parse().unwrap()),
            action: "tx".into(),
            reason: "forwarded".into(),
            via: Some("maglev".into()),
            slot: Some(7),
            len: 74,
        };
        stream.send(Response::ok(Reply::Trace(event.clone()))).await.unwrap();
        let line = lines.next_line().await.unwrap().expect("a line after three idle timeouts");
        let back: Response<TraceEvent> = serde_json::from_str(&line).unwrap();
        assert_eq!(back.data, Some(event));
        assert!(!stream.is_closed(), "the client is still there");
        drop((lines, w));
        timeout(Duration::from_secs(5), stream.closed()).await.expect("the daemon learns that the client went");
        remove_socket(&path);
        let _ = std::fs::remove_dir(&dir);
    }

    #[tokio::test]
    async fn socket_round_trip_bad_requests_and_mode() {
        let dir = std::env::temp_dir().join(format!("fj-lb-ctl-{}", std::process::id()));
        let path = dir.join("control.sock");
        let (tx, mut rx) = mpsc::channel::<Pending>(4);
        let _server = serve(&path, tx).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        tokio::spawn(async move {
            while let Some((req, reply, _)) = rx.recv().await {
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
