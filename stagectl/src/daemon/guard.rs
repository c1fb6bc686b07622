//! The daemon's front door. tiny_http reads a request head without a size limit or a deadline,
//! and when it answers a request that announced a body it first reads that whole body: a few idle
//! connections announcing a body nobody sends would hold every serving thread, and one endless
//! header line would take all memory. So clients never reach tiny_http directly: the guard
//! accepts TCP connections and relays each to tiny_http over a private (abstract) Unix socket,
//! closing a connection that
//! - sends more than `MAX_HEAD` bytes without ending a request head (the API takes no request
//!   bodies, so this caps heads and bodies alike),
//! - takes longer than `STALL` over a request, from its first byte (a client that stops and
//!   one that trickles a byte at a time alike),
//! - or has been silent in both directions for `IDLE`;
//!
//! and refusing connections beyond `MAX_CONNECTIONS` (503). A refused connection's request head
//! is read first (bounded: `REFUSE_READ` bytes, `REFUSE_WAIT`), then the 503 is written, the
//! sending side shut, and what the client still sends drained until it closes (bounded): closing
//! a socket with unread bytes makes the kernel answer with a reset, which can reach the client
//! before the 503 does. One thread does this for every refused connection, without blocking.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MAX_HEAD: usize = 64 * 1024;
pub const STALL: Duration = Duration::from_secs(10);
pub const IDLE: Duration = Duration::from_secs(120);
pub const MAX_CONNECTIONS: usize = 256;
/// How often a waiting relay looks at its deadlines.
const TICK: Duration = Duration::from_millis(500);
/// A refused connection: how much of its request is read before the 503, how long it may take
/// to send its head, and then to close after the 503.
const REFUSE_READ: usize = 16 * 1024;
const REFUSE_WAIT: Duration = Duration::from_millis(1000);
/// Refused connections being read or drained at once; past that, refused at once (as before).
const REFUSE_PENDING: usize = 1024;
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// The listening TCP socket (TCP_NODELAY, handed on to accepted connections: tiny_http writes
/// responses in 1 KiB pieces, and with Nagle on every piece after the first waits for the
/// client's delayed ACK, ~40 ms) and the private socket tiny_http serves.
pub struct Guard {
    tcp: TcpListener,
    inner: UnixAddr,
}

impl Guard {
    pub fn bind(addr: SocketAddr) -> std::io::Result<(Guard, UnixListener)> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_tcp_nodelay(true)?;
        socket.bind(&addr.into())?;
        socket.listen(128)?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let inner = UnixAddr::from_abstract_name(format!("stagectl-daemon-{}-{nanos}", std::process::id()))?;
        let listener = UnixListener::bind_addr(&inner)?;
        Ok((Guard { tcp: TcpListener::from(socket), inner }, listener))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Accepts and relays connections until the process ends.
    pub fn run(self) {
        let open = Arc::new(AtomicUsize::new(0));
        let refuser = Refuser::start();
        for client in self.tcp.incoming() {
            let Ok(mut client) = client else { continue };
            if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                match &refuser {
                    Some(r) => r.refuse(client),
                    None => {
                        let _ = client.write_all(REFUSED);
                    }
                }
                continue;
            }
            let Ok(server) = UnixStream::connect_addr(&self.inner) else { continue };
            open.fetch_add(1, Ordering::Relaxed);
            let open = open.clone();
            let spawned = std::thread::Builder::new().name("guard".into()).spawn(move || {
                relay(client, server);
                open.fetch_sub(1, Ordering::Relaxed);
            });
            if spawned.is_err() {
                // The closure (and both sockets) were dropped: the client sees the connection close.
                continue;
            }
        }
    }
}

/// The thread that answers refused connections with 503 after reading their request head.
struct Refuser {
    queue: std::sync::mpsc::SyncSender<TcpStream>,
}

/// A refused connection in progress: reading its head, then (after the 503) draining.
struct Refusal {
    stream: TcpStream,
    meter: HeadMeter,
    read: usize,
    answered: bool,
    deadline: Instant,
}

impl Refuser {
    fn start() -> Option<Refuser> {
        let (queue, incoming) = std::sync::mpsc::sync_channel::<TcpStream>(REFUSE_PENDING);
        std::thread::Builder::new().name("guard-refuse".into()).spawn(move || refuse_loop(&incoming)).ok()?;
        Some(Refuser { queue })
    }

    /// Hands `client` to the refusing thread, or (its queue full, or gone) refuses it at once.
    fn refuse(&self, client: TcpStream) {
        if let Err(std::sync::mpsc::TrySendError::Full(mut c) | std::sync::mpsc::TrySendError::Disconnected(mut c)) =
            self.queue.try_send(client)
        {
            let _ = c.write_all(REFUSED);
        }
    }
}

fn refuse_loop(incoming: &std::sync::mpsc::Receiver<TcpStream>) {
    let mut pending: Vec<Refusal> = Vec::new();
    loop {
        let next = if pending.is_empty() {
            incoming.recv().map_err(|_| std::sync::mpsc::RecvTimeoutError::Disconnected)
        } else {
            incoming.recv_timeout(Duration::from_millis(5))
        };
        match next {
            Ok(stream) => {
                if pending.len() >= REFUSE_PENDING || stream.set_nonblocking(true).is_err() {
                    let mut stream = stream;
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.write_all(REFUSED);
                } else {
                    let deadline = Instant::now() + REFUSE_WAIT;
                    pending.push(Refusal { stream, meter: HeadMeter::default(), read: 0, answered: false, deadline });
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) if pending.is_empty() => return,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
        }
        pending.retain_mut(Refusal::step);
    }
}

impl Refusal {
    /// Reads what the client sent; answers once its head is complete (or too long, or late, or
    /// the client stopped sending); then drains until it closes. False when done (dropped).
    fn step(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match (&self.stream).read(&mut buf) {
                Ok(0) => {
                    if !self.answered {
                        let _ = (&self.stream).write_all(REFUSED);
                    }
                    return false;
                }
                Ok(n) => {
                    self.read += n;
                    if !self.answered {
                        let within = self.meter.feed(&buf[..n]);
                        if !within || !self.meter.mid_request() || self.read >= REFUSE_READ {
                            self.answer();
                        }
                    } else if self.read >= 4 * REFUSE_READ {
                        return false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if Instant::now() < self.deadline {
            return true;
        }
        if self.answered {
            return false;
        }
        self.answer();
        true
    }

    fn answer(&mut self) {
        // 81 bytes into an empty send buffer: a non-blocking write takes them whole.
        let _ = (&self.stream).write_all(REFUSED);
        let _ = self.stream.shutdown(Shutdown::Write);
        self.answered = true;
        self.deadline = Instant::now() + REFUSE_WAIT;
    }
}

/// Tracks where the client is in its stream of request heads: bytes since the end of the last
/// head (`\r\n\r\n`), carrying the tail of each chunk so a terminator split across reads counts.
#[derive(Default)]
struct HeadMeter {
    pending: usize,
    tail: [u8; 3],
    tail_len: usize,
    /// The last chunk fed began a new request (its first bytes, after a finished head or none).
    began: bool,
}

impl HeadMeter {
    /// Counts `chunk`; false when the head would exceed `MAX_HEAD`.
    fn feed(&mut self, chunk: &[u8]) -> bool {
        let mut joined = self.tail[..self.tail_len].to_vec();
        joined.extend_from_slice(chunk);
        let was_pending = self.pending > 0;
        match joined.windows(4).rposition(|w| w == b"\r\n\r\n") {
            Some(at) => {
                self.pending = joined.len() - (at + 4);
                self.began = self.pending > 0;
            }
            None => {
                self.pending += chunk.len();
                self.began = !was_pending && self.pending > 0;
            }
        }
        let keep = joined.len().min(3);
        self.tail[..keep].copy_from_slice(&joined[joined.len() - keep..]);
        self.tail_len = keep;
        self.pending <= MAX_HEAD
    }

    fn mid_request(&self) -> bool {
        self.pending > 0
    }
}

fn millis_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// Copies client → tiny_http under the limits above (on this thread) and tiny_http → client (on
/// a second thread) until either side closes or a limit is hit; then closes both.
fn relay(client: TcpStream, server: UnixStream) {
    let start = Instant::now();
    let last_activity = Arc::new(AtomicU64::new(0));
    let (Ok(client_out), Ok(server_in)) = (client.try_clone(), server.try_clone()) else { return };
    let activity = last_activity.clone();
    let back = std::thread::Builder::new().name("guard-back".into()).spawn(move || {
        let (mut from, mut to) = (server_in, client_out);
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
            activity.store(millis_since(start), Ordering::Relaxed);
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
    if back.is_ok() {
        forward(&client, &server, start, &last_activity);
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    if let Ok(handle) = back {
        let _ = handle.join();
    }
}

fn forward(client: &TcpStream, server: &UnixStream, start: Instant, last_activity: &AtomicU64) {
    let (mut from, mut to) = (client, server);
    if from.set_read_timeout(Some(TICK)).is_err() {
        return;
    }
    let mut meter = HeadMeter::default();
    // When the request being read began: a head must be whole within STALL of its first byte,
    // or a client sending one byte every few seconds would never count as stalled.
    let mut request_started = 0u64;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if !meter.feed(&buf[..n]) {
                    let _ = to.flush();
                    let _ = (&*client)
                        .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
                    return;
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
                let now = millis_since(start);
                if meter.began {
                    request_started = now;
                }
                last_activity.store(now, Ordering::Relaxed);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                let now = millis_since(start);
                let stalled = meter.mid_request() && now.saturating_sub(request_started) > STALL.as_millis() as u64;
                let idle = now.saturating_sub(last_activity.load(Ordering::Relaxed)) > IDLE.as_millis() as u64;
                if stalled || idle {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_resets_at_each_head_end_also_when_split_across_reads() {
        let mut m = HeadMeter::default();
        assert!(m.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r"));
        assert!(m.mid_request() && m.began);
        assert!(m.feed(b"\n"));
        assert!(!m.mid_request(), "the terminator split over two reads ends the head");
        assert!(m.feed(b"GET /a HTTP/1.1\r\n\r\nGET /b"));
        assert_eq!(m.pending, 6);
        assert!(m.began, "a chunk that ends one head and starts another begins a request");
        assert!(m.feed(b" HTTP/1.1\r\n"));
        assert!(!m.began, "more of the same head does not begin a request");
    }

    #[test]
    fn the_meter_refuses_a_head_over_the_limit() {
        let mut m = HeadMeter::default();
        let line = vec![b'a'; 1024];
        let mut fed = 0;
        while m.feed(&line) {
            fed += line.len();
            assert!(fed <= MAX_HEAD, "went past the limit");
        }
        assert_eq!(fed, MAX_HEAD);
    }
}
