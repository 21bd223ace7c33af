//! Serving the fake server over TCP: [`RunningServer`].

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::server::{FakeServer, join_url};

/// How long [`RunningServer::shutdown`] waits for open connections before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A [`FakeServer`] listening on `127.0.0.1`. Made by [`FakeServer::listen`].
///
/// Dropping it starts a graceful shutdown in the background; [`shutdown`](Self::shutdown)
/// does the same and waits for it. Requests hanging on a [`Fault::Hang`](crate::Fault::Hang)
/// or sleeping in a [`Fault::Latency`](crate::Fault::Latency) are cut short by the shutdown.
///
/// # Example
///
/// ```
/// use tokenward_testkit::FakeServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let server = FakeServer::builder().client("demo-client", "demo-secret").build();
/// let running = server.listen().await?;
/// assert!(running.token_url().starts_with("http://127.0.0.1:"));
/// assert!(running.token_url().ends_with("/token"));
/// // Point any HTTP client at running.token_url() and running.resource_url() ...
/// running.shutdown().await;
/// # Ok(()) }
/// ```
pub struct RunningServer {
    server: FakeServer,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>{path}`.
    pub fn url(&self, path: &str) -> String {
        join_url(&format!("http://{}", self.addr), path)
    }

    /// The issuer identifier, `http://127.0.0.1:<port>` followed by the
    /// [issuer path](crate::FakeServerBuilder::issuer_path), if any.
    pub fn issuer(&self) -> String {
        format!(
            "http://{}{}",
            self.addr,
            self.server.shared.lock().issuer_path
        )
    }

    /// The token endpoint, `http://127.0.0.1:<port>/token`.
    pub fn token_url(&self) -> String {
        self.url("/token")
    }

    /// The protected resource, `http://127.0.0.1:<port>/resource`.
    pub fn resource_url(&self) -> String {
        self.url("/resource")
    }

    /// The authorization endpoint, `http://127.0.0.1:<port>/authorize`.
    pub fn authorize_url(&self) -> String {
        self.url("/authorize")
    }

    /// The introspection endpoint (RFC 7662), `http://127.0.0.1:<port>/introspect`.
    pub fn introspect_url(&self) -> String {
        self.url("/introspect")
    }

    /// The revocation endpoint (RFC 7009), `http://127.0.0.1:<port>/revoke`.
    pub fn revoke_url(&self) -> String {
        self.url("/revoke")
    }

    /// The server being served (the same state as the [`FakeServer`] `listen` was called on).
    pub fn server(&self) -> &FakeServer {
        &self.server
    }

    /// Stops accepting connections, lets open requests finish (hanging and sleeping faults are
    /// cut short) and waits for that, up to ten seconds.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

pub(crate) async fn listen(server: FakeServer) -> io::Result<RunningServer> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let (shutdown, signal) = watch::channel(false);
    let listener = TestkitListener {
        listener,
        shutdown: signal.clone(),
    };
    let service = server
        .router()
        .into_make_service_with_connect_info::<ConnectionHandle>();
    let mut signal = signal;
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = signal.wait_for(|stop| *stop).await;
        };
        // `serve` only fails if the listener does; ours retries accept errors itself.
        let _ = axum::serve(listener, service)
            .with_graceful_shutdown(stop)
            .await;
    });
    Ok(RunningServer {
        server,
        addr,
        shutdown,
        task: Some(task),
    })
}

/// A TCP listener whose connections can be reset from a handler.
struct TestkitListener {
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
}

impl Listener for TestkitListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let stream = KillableStream {
                        inner: stream,
                        handle: ConnectionHandle {
                            switch: Arc::new(KillSwitch::default()),
                            shutdown: self.shutdown.clone(),
                        },
                        lingering: false,
                    };
                    return (stream, addr);
                }
                // Out of file descriptors and the like: wait a little and try again.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

#[derive(Default)]
struct KillSwitch {
    killed: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// Per-connection control handed to handlers through `ConnectInfo`: reset the connection, or
/// learn that the listener is shutting down.
#[derive(Clone)]
pub(crate) struct ConnectionHandle {
    switch: Arc<KillSwitch>,
    shutdown: watch::Receiver<bool>,
}

impl fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("killed", &self.switch.killed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ConnectionHandle {
    /// Makes every further read and write on the connection fail, and closes it with a TCP
    /// reset.
    pub(crate) fn kill(&self) {
        self.switch.killed.store(true, Ordering::SeqCst);
        let waker = self
            .switch
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Resolves once the listener is shutting down.
    pub(crate) async fn shutdown(&self) {
        let mut signal = self.shutdown.clone();
        let _ = signal.wait_for(|stop| *stop).await;
    }
}

impl Connected<IncomingStream<'_, TestkitListener>> for ConnectionHandle {
    fn connect_info(stream: IncomingStream<'_, TestkitListener>) -> Self {
        stream.io().handle.clone()
    }
}

/// A TCP stream that fails with `ConnectionReset` once its [`ConnectionHandle`] is killed.
struct KillableStream {
    inner: TcpStream,
    handle: ConnectionHandle,
    lingering: bool,
}

impl KillableStream {
    /// `Some(error)` once killed; registers the task to be woken by a kill otherwise.
    fn killed(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let switch = &self.handle.switch;
        if !switch.killed.load(Ordering::SeqCst) {
            *switch.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
            if !switch.killed.load(Ordering::SeqCst) {
                return None;
            }
        }
        if !self.lingering {
            // Dropping the socket now sends a RST instead of a FIN.
            let _ = self.inner.set_zero_linger();
            self.lingering = true;
        }
        Some(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "connection reset by the testkit (Fault::ConnectionReset)",
        ))
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.killed(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(error) = this.killed(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(error) = this.killed(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.killed(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.killed(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
