//! The one HTTP/1.1 client of the harness, enough to ask nginx who answered (and the daemon for
//! its metrics); responses are read with `httparse`. Call it from inside the client namespace
//! (see [`crate::in_netns`]); a connection, once open, can be used from any thread.
use std::{
    io::{Read, Write},
    net::{SocketAddr, SocketAddrV4, TcpStream},
    os::fd::FromRawFd,
    time::{Duration, Instant},
};

/// What a request gets: `(status, body)`, or what went wrong.
pub type Answer = Result<(u16, String), String>;

/// Opens a TCP connection to `addr`, from `local_port` if given (SO_REUSEADDR), within `timeout`.
pub fn connect(addr: SocketAddrV4, timeout: Duration, local_port: Option<u16>) -> Result<TcpStream, String> {
    let Some(port) = local_port else {
        let s = TcpStream::connect_timeout(&SocketAddr::V4(addr), timeout).map_err(|e| format!("connect {addr}: {e}"))?;
        set_timeouts(&s, timeout)?;
        return Ok(s);
    };
    let err = |what: &str| format!("{what} (to {addr} from port {port}): {}", std::io::Error::last_os_error());
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(err("socket"));
    }
    // From here on the stream owns the fd and closes it on every error path.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    if unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, (&one as *const libc::c_int).cast(), size_of::<libc::c_int>() as u32)
    } != 0
    {
        return Err(err("SO_REUSEADDR"));
    }
    let sin = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
        sin_zero: [0; 8],
    };
    let local = sin(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, port));
    if unsafe { libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), size_of::<libc::sockaddr_in>() as u32) } != 0 {
        return Err(err("bind"));
    }
    let remote = sin(addr);
    if unsafe { libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), size_of::<libc::sockaddr_in>() as u32) } != 0
        && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINPROGRESS)
    {
        return Err(err("connect"));
    }
    let mut pfd = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    match unsafe { libc::poll(&mut pfd, 1, ms) } {
        0 => return Err(format!("connect to {addr} from port {port}: timed out after {timeout:?}")),
        n if n < 0 => return Err(err("poll")),
        _ => {}
    }
    if let Some(e) = stream.take_error().map_err(|e| format!("SO_ERROR: {e}"))? {
        return Err(format!("connect to {addr} from port {port}: {e}"));
    }
    stream.set_nonblocking(false).map_err(|e| format!("set_nonblocking: {e}"))?;
    set_timeouts(&stream, timeout)?;
    Ok(stream)
}

fn set_timeouts(s: &TcpStream, timeout: Duration) -> Result<(), String> {
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())
}

/// `GET path` over a fresh connection (`Connection: close`): `(status, body)`.
pub fn get(addr: SocketAddrV4, path: &str, timeout: Duration) -> Answer {
    get_from(addr, path, timeout, None)
}

/// Like [`get`], from local port `local_port` if given.
pub fn get_from(addr: SocketAddrV4, path: &str, timeout: Duration, local_port: Option<u16>) -> Answer {
    request(addr, path, timeout, local_port).map(|r| (r.status, r.body))
}

/// A whole answer: HTTP/1.`minor_version`, the status and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub minor_version: u8,
    pub status: u16,
    pub body: String,
}

/// `GET path` over a fresh connection (`Connection: close`), read to the end: the body is
/// everything after the head.
pub fn request(addr: SocketAddrV4, path: &str, timeout: Duration, local_port: Option<u16>) -> Result<Response, String> {
    let deadline = Instant::now() + timeout;
    let s = connect(addr, timeout, local_port)?;
    exchange(s, SocketAddr::V4(addr), path, deadline, timeout)
}

/// `GET path` over a fresh connection to an IPv4 or IPv6 address: `(status, body)`.
pub fn get_at(addr: SocketAddr, path: &str, timeout: Duration) -> Answer {
    let deadline = Instant::now() + timeout;
    let s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    set_timeouts(&s, timeout)?;
    exchange(s, addr, path, deadline, timeout).map(|r| (r.status, r.body))
}

/// Sends `GET path` (`Connection: close`) on `s` and reads the answer to its end.
fn exchange(mut s: TcpStream, addr: SocketAddr, path: &str, deadline: Instant, timeout: Duration) -> Result<Response, String> {
    let host = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if Instant::now() >= deadline {
            return Err(format!("GET {path} from {addr}: no complete answer within {timeout:?}"));
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("GET {path} from {addr}: reading: {e} (got {} bytes)", raw.len())),
        }
    }
    let malformed = |why: &str| format!("GET {path} from {addr}: malformed answer ({why}) {:?}", String::from_utf8_lossy(&raw));
    let head = parse_head(&raw).map_err(|e| malformed(&e))?.ok_or_else(|| malformed("incomplete head"))?;
    Ok(Response {
        minor_version: head.minor_version,
        status: head.status,
        body: String::from_utf8_lossy(&raw[head.len..]).into_owned(),
    })
}

/// A response head, as [`httparse`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    minor_version: u8,
    status: u16,
    /// Bytes up to and including the blank line.
    len: usize,
    content_length: Option<usize>,
}

/// Parses a response head: `Ok(None)` until it is complete, `Err` if it is malformed.
fn parse_head(raw: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let len = match r.parse(raw).map_err(|e| e.to_string())? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let content_length = match r.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length")) {
        Some(h) => Some(
            std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| format!("Content-Length {:?}", String::from_utf8_lossy(h.value)))?,
        ),
        None => None,
    };
    Ok(Some(Head {
        minor_version: r.version.ok_or("no version")?,
        status: r.code.ok_or("no status")?,
        len,
        content_length,
    }))
}

/// One TCP connection carrying several requests (HTTP/1.1 keep-alive). Responses must carry
/// Content-Length, as nginx's do for fixed answers.
#[derive(Debug)]
pub struct KeepAliveConn {
    stream: TcpStream,
    addr: SocketAddrV4,
    buf: Vec<u8>,
    timeout: Duration,
}

impl KeepAliveConn {
    pub fn connect(addr: SocketAddrV4, timeout: Duration, local_port: Option<u16>) -> Result<KeepAliveConn, String> {
        Ok(KeepAliveConn { stream: connect(addr, timeout, local_port)?, addr, buf: Vec::new(), timeout })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("a connected socket has a local address")
    }

    /// The connection's socket (for socket options a test reads, such as TCP_REPAIR's).
    pub fn socket(&self) -> &TcpStream {
        &self.stream
    }

    /// `GET path` on this connection: `(status, body)`.
    pub fn request(&mut self, path: &str) -> Answer {
        let addr = self.addr;
        let local = self.local_addr();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\n\r\n", addr.ip());
        self.stream
            .write_all(req.as_bytes())
            .map_err(|e| format!("sending on {local} -> {addr}: {e}"))?;
        let deadline = Instant::now() + self.timeout;
        let mut chunk = [0u8; 4096];
        loop {
            let parsed = parse_head(&self.buf)
                .map_err(|e| format!("GET {path} on {local} -> {addr}: malformed answer ({e}) {:?}", String::from_utf8_lossy(&self.buf)))?;
            if let Some(head) = parsed {
                let len = head.content_length.ok_or_else(|| format!("answer on {local} -> {addr} has no Content-Length"))?;
                if self.buf.len() >= head.len + len {
                    let body = String::from_utf8_lossy(&self.buf[head.len..head.len + len]).into_owned();
                    self.buf.drain(..head.len + len);
                    return Ok((head.status, body));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("GET {path} on {local} -> {addr}: no complete answer within {:?}", self.timeout));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(format!("GET {path} on {local} -> {addr}: connection closed by peer")),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("GET {path} on {local} -> {addr}: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Head, parse_head};

    #[test]
    fn parses_a_response_head() {
        let raw = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 3\r\n\r\nb1\nextra";
        assert_eq!(parse_head(raw), Ok(Some(Head { minor_version: 1, status: 200, len: 53, content_length: Some(3) })));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-"), Ok(None));
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }
}
