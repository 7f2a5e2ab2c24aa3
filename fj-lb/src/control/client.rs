//! The CLI's side: one request, one typed answer; or, for a streaming request (`trace`), the
//! answer and then one typed line after another.
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use super::{
    ControlError,
    protocol::{Answer, Request, Response},
};

/// Sends a streaming request: its answer (within `timeout`) goes to `started`, then each line
/// after it to `each`, with no time limit, until `each` says stop (false: returns Ok) or the
/// daemon ends the stream (returns `Ended`). A line saying an error ends it with that error.
pub fn stream<A: Answer, E: Answer>(
    path: &Path,
    req: &Request,
    timeout: Duration,
    started: impl FnOnce(A),
    mut each: impl FnMut(E) -> bool,
) -> Result<(), ControlError> {
    let s = send(path, req, timeout)?;
    let talk = |source| ControlError::Talk { path: path.to_path_buf(), source };
    let mut reader = BufReader::new(&s);
    let mut first = true;
    let mut started = Some(started);
    loop {
        let mut answer = String::new();
        if reader.read_line(&mut answer).map_err(talk)? == 0 {
            return Err(ControlError::Ended);
        }
        if first {
            let a: A = data(&answer)?;
            if let Some(f) = started.take() {
                f(a);
            }
            // The lines after the answer come when packets do.
            s.set_read_timeout(None).map_err(talk)?;
            first = false;
        } else if !each(data(&answer)?) {
            return Ok(());
        }
    }
}

fn data<T: Answer>(answer: &str) -> Result<T, ControlError> {
    let resp: Response<T> = serde_json::from_str(answer).map_err(|e| ControlError::Garbled(format!("{e}: {answer:?}")))?;
    if !resp.ok {
        return Err(ControlError::Refused(resp.error.unwrap_or_else(|| "fj-lb refused the request".into())));
    }
    resp.data.ok_or_else(|| ControlError::Garbled(format!("an answer without data: {answer:?}")))
}

/// Connects to the daemon at `path` and sends `req`; reads from the stream time out after
/// `timeout`.
fn send(path: &Path, req: &Request, timeout: Duration) -> Result<UnixStream, ControlError> {
    let mut s = UnixStream::connect(path).map_err(|source| ControlError::NotRunning { path: path.to_path_buf(), source })?;
    let talk = |source| ControlError::Talk { path: path.to_path_buf(), source };
    s.set_read_timeout(Some(timeout)).map_err(talk)?;
    let mut line = serde_json::to_vec(req).expect("requests serialise");
    line.push(b'\n');
    s.write_all(&line).map_err(talk)?;
    Ok(s)
}

/// Sends one request and waits for its answer (the CLI's side).
pub fn call<T: Answer>(path: &Path, req: &Request, timeout: Duration) -> Result<T, ControlError> {
    let s = send(path, req, timeout)?;
    let talk = |source| ControlError::Talk { path: path.to_path_buf(), source };
    let mut answer = String::new();
    BufReader::new(&s).read_line(&mut answer).map_err(talk)?;
    let resp: Response<T> = serde_json::from_str(&answer).map_err(|e| ControlError::Garbled(format!("{e}: {answer:?}")))?;
    if !resp.ok {
        return Err(ControlError::Refused(resp.error.unwrap_or_else(|| "fj-lb refused the request".into())));
    }
    match resp.data {
        Some(data) => Ok(data),
        // Requests that answer with nothing read `()` from an absent `data`.
        None => serde_json::from_str("null")
            .map_err(|e| ControlError::Garbled(format!("an answer without data: {e}: {answer:?}"))),
    }
}

