//! The CLI's side: one request, one typed answer.
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

/// Sends one request and waits for its answer (the CLI's side).
pub fn call<T: Answer>(path: &Path, req: &Request, timeout: Duration) -> Result<T, ControlError> {
    let mut s = UnixStream::connect(path).map_err(|source| ControlError::NotRunning { path: path.to_path_buf(), source })?;
    let talk = |source| ControlError::Talk { path: path.to_path_buf(), source };
    s.set_read_timeout(Some(timeout)).map_err(talk)?;
    let mut line = serde_json::to_vec(req).expect("requests serialise");
    line.push(b'\n');
    s.write_all(&line).map_err(talk)?;
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

