//! clew-net: how every clew port is served. The collector's receivers (OTLP gRPC and HTTP,
//! Zipkin, Jaeger remote sampling) and the query crate's listeners (API + UI, Jaeger remote
//! storage gRPC) all hand their axum router (tonic services through
//! `tonic::service::Routes`) to [`serve`], so one accept loop and one set of
//! [`limits`] stand between a client and clew:
//!
//! ```text
//!  TcpListener ─▶ accept (≤ MAX_CONNECTIONS at once; at the cap, stop accepting)
//!                   └─▶ one task per connection: [TLS handshake ≤ TLS_HANDSHAKE_TIMEOUT] ─▶ hyper-util auto (HTTP/1.1 + h2c, or h2 only for gRPC)
//!                         ├─ HTTP/2 limits: streams, header list, reset streams, pings
//!                         ├─ each request: body complete within REQUEST_BODY_TIMEOUT
//!                         └─ first request within FIRST_REQUEST_TIMEOUT, idle ≤ IDLE_TIMEOUT,
//!                            then GOAWAY and at most CLOSE_GRACE for what is in flight
//!  shutdown ─▶ stop accepting ─▶ every connection GOAWAY + CLOSE_GRACE ─▶ return
//! ```
//!
//! A slow or hostile connection only ever costs its own task: the accept loop never waits
//! on one.

pub mod limits;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;
use tracing::{debug, warn};

use limits::*;
pub use tls::{Tls, TlsError, TlsFiles};

/// What a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 and HTTP/2 (prior knowledge, `h2c`), told apart by the first bytes.
    Http,
    /// HTTP/2 only, as gRPC is.
    Grpc,
}

/// The TLS every listener of this process serves with, once [`use_tls_for_every_listener`]
/// has set it (`clew serve` does, from `[tls]`).
static EVERY_LISTENER_TLS: OnceLock<Arc<Tls>> = OnceLock::new();

/// Makes every listener started by [`serve`] from now on speak TLS with `tls`. TLS is a
/// property of the process (`[tls]` applies to every port), so the binary sets it once
/// here instead of handing it through each receiver; a second call is refused.
pub fn use_tls_for_every_listener(tls: Arc<Tls>) -> Result<(), Arc<Tls>> {
    EVERY_LISTENER_TLS.set(tls)
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, tells every
/// connection to close (GOAWAY for HTTP/2), gives what is in flight up to
/// [`CLOSE_GRACE`] and returns. `what` names the listener in logs. Over TLS once
/// [`use_tls_for_every_listener`] was called.
pub async fn serve(
    what: &'static str,
    listener: TcpListener,
    protocol: Protocol,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let tls = EVERY_LISTENER_TLS.get();
    serve_with(what, listener, protocol, tls, app, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (every connection's handshake in its own task,
/// within [`TLS_HANDSHAKE_TIMEOUT`]; a client that does not speak TLS is disconnected).
pub async fn serve_with(
    what: &'static str,
    listener: TcpListener,
    protocol: Protocol,
    tls: Option<&Arc<Tls>>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let tls = tls.cloned();
    let builder = Arc::new(connection_builder(protocol));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
        };
        let (tcp, peer) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(what, error).await;
                    continue;
                }
            },
        };
        let (app, builder, stop) = (app.clone(), builder.clone(), stop_rx.clone());
        // the TLS configuration in force when the connection arrived (a reload changes it)
        let acceptor = tls.as_ref().map(|tls| tls.acceptor(protocol));
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            match acceptor {
                None => connection(what, tcp, app, &builder, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => connection(what, tls, app, &builder, stop).await,
                        Ok(Err(error)) => {
                            debug!(listener = what, %peer, %error, "TLS handshake failed")
                        }
                        Err(_) => debug!(listener = what, %peer, "TLS handshake timed out"),
                    }
                }
            }
            debug!(listener = what, %peer, "connection closed");
            drop(slot);
        });
    }
    // Close the listening socket first: new clients are refused, not left waiting.
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until its task ends.
    let _ = slots.acquire_many(MAX_CONNECTIONS as u32).await;
    Ok(())
}

/// Errors of `accept` that concern one connection are skipped; others (out of file
/// descriptors) are logged and retried after a pause, never a busy loop or an exit.
async fn accept_failed(what: &'static str, error: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    warn!(listener = what, %error, "failed to accept a connection; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// hyper's connection settings with clew's [`limits`].
fn connection_builder(protocol: Protocol) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if protocol == Protocol::Grpc {
        builder = builder.http2_only();
    }
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(FIRST_REQUEST_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESET_STREAMS)
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    builder
}

/// Serves one connection until it ends, is idle too long, or the server stops.
async fn connection<I>(
    what: &'static str,
    io: I,
    app: Router,
    builder: &auto::Builder<TokioExecutor>,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let service = Tracked {
        app,
        activity: activity.clone(),
    };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let why = tokio::select! {
        ended = conn.as_mut() => {
            if let Err(error) = ended {
                debug!(listener = what, %error, "connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => "shutting down",
        _ = activity.idle() => "idle",
    };
    debug!(listener = what, why, "closing connection");
    conn.as_mut().graceful_shutdown();
    if tokio::time::timeout(CLOSE_GRACE, conn).await.is_err() {
        debug!(
            listener = what,
            "connection dropped: requests in flight past the grace period"
        );
    }
}

/// Requests of one connection: how many started, how many are in flight (handler running
/// or response body not yet sent).
#[derive(Default)]
struct Activity {
    started: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn start(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Resolves when no request arrived within [`FIRST_REQUEST_TIMEOUT`] of the start, or
    /// later when a whole [`IDLE_TIMEOUT`] passed without a new request and nothing is in
    /// flight at its end.
    async fn idle(&self) {
        let mut period = FIRST_REQUEST_TIMEOUT;
        loop {
            let seen = self.started.load(Ordering::Relaxed);
            tokio::time::sleep(period).await;
            if self.in_flight.load(Ordering::Relaxed) == 0
                && self.started.load(Ordering::Relaxed) == seen
            {
                return;
            }
            period = IDLE_TIMEOUT;
        }
    }
}

/// One request in flight, until dropped with its response body.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The app behind hyper: requests get a body deadline, responses carry their [`InFlight`].
#[derive(Clone)]
struct Tracked {
    app: Router,
    activity: Arc<Activity>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<Guarded>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.start();
        let request = request.map(|body| Deadline {
            body,
            timer: Box::pin(tokio::time::sleep(REQUEST_BODY_TIMEOUT)),
        });
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.oneshot(request).await?;
            Ok(response.map(|body| Guarded {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A request body that fails once [`REQUEST_BODY_TIMEOUT`] has passed without its end.
struct Deadline {
    body: Incoming,
    timer: Pin<Box<tokio::time::Sleep>>,
}

/// What a handler reading a [`Deadline`] body gets when the time is up.
#[derive(Debug)]
pub struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body was not complete within {} s",
            REQUEST_BODY_TIMEOUT.as_secs()
        )
    }
}

impl std::error::Error for BodyTimedOut {}

impl Body for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response body that keeps its request counted as in flight until it is sent.
struct Guarded {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
