//! A real `redis-server` for tests, on an ephemeral loopback port, without persistence.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that makes [`RedisServer::start`] panic, instead of skipping,
/// when no `redis-server` can be started (CI sets it).
pub const REQUIRE_REDIS: &str = "TOKENWARD_REQUIRE_REDIS";

/// How long a starting server may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` child process on `127.0.0.1` and a free port, with no persistence (no
/// RDB snapshots, no AOF): its data lives as long as the process. Killed when dropped.
///
/// [`start`](RedisServer::start) returns `None` (with a loud message on stderr) when
/// `redis-server` is not installed, so a test can skip; with `TOKENWARD_REQUIRE_REDIS=1` it
/// panics instead, so CI never skips silently.
///
/// ```no_run
/// # fn main() {
/// let Some(redis) = tokenward_testkit::RedisServer::start() else {
///     return; // not installed, and not required
/// };
/// println!("connect to {}", redis.url());
/// # }
/// ```
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    addr: SocketAddr,
}

impl RedisServer {
    /// Starts a server, or says why not (see the type's documentation).
    pub fn start() -> Option<RedisServer> {
        let mut last = String::new();
        // A free port may be taken between choosing it and the server binding it: try again.
        for _ in 0..5 {
            let port = match free_port() {
                Ok(port) => port,
                Err(e) => {
                    last = format!("no free loopback port: {e}");
                    continue;
                }
            };
            match spawn(port) {
                Ok(server) => return Some(server),
                Err(e) => last = e,
            }
        }
        let message = format!(
            "could not start redis-server ({last}). Install it (Debian: `apt-get install redis-server`)"
        );
        if std::env::var(REQUIRE_REDIS).is_ok_and(|v| v == "1") {
            panic!("{message}; {REQUIRE_REDIS}=1 makes this a failure");
        }
        eprintln!(
            "\n*** SKIPPING a Redis test: {message}; set {REQUIRE_REDIS}=1 to fail instead ***\n"
        );
        None
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills the server: clients see connections refused until [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts a new one on the same port: everything stored is lost, as
    /// when a Redis without persistence restarts. Panics if it cannot start again.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match spawn(self.addr.port()) {
                Ok(mut server) => {
                    self.child = server.child.take();
                    return;
                }
                // The old socket may linger a moment.
                Err(e) if Instant::now() > deadline => panic!("redis-server did not restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn spawn(port: u16) -> Result<RedisServer, String> {
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server could not be run: {e}"))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server exited at start ({status})"));
        }
        // Answered by this child, not by another server that took the port first.
        if process_id(addr) == Some(child.id()) {
            return Ok(RedisServer {
                child: Some(child),
                addr,
            });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("redis-server did not answer PING in time".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `process_id` the server at `addr` reports in `INFO server`.
fn process_id(addr: SocketAddr) -> Option<u32> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    // A bulk string: `$<len>\r\n<len bytes>\r\n`.
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&chunk[..n]);
        if reply.len() > 64 * 1024 {
            return None;
        }
        let text = String::from_utf8_lossy(&reply);
        let Some((header, body)) = text.split_once("\r\n") else {
            continue;
        };
        let len: usize = header.strip_prefix('$')?.parse().ok()?;
        if body.len() >= len {
            return body
                .lines()
                .find_map(|line| line.strip_prefix("process_id:"))
                .and_then(|pid| pid.trim().parse().ok());
        }
    }
}
