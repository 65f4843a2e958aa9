//! Connections to HBase's Thrift1 server: a small pool of blocking clients, and the one
//! place where Thrift errors are sorted into retryable and permanent ones.
//!
//! Thrift1 is a blocking, one-request-at-a-time protocol (binary protocol over a buffered
//! socket, the server's default), so concurrency comes from holding several connections.
//! A connection that saw any transport or protocol error is dropped, never reused: its
//! stream may be half-read.
//!
//! With `transport = "http"` (the Thrift server's HTTP mode, the only one HBase serves over
//! TLS) the same binary protocol rides in HTTP POST bodies: the write half buffers a
//! request and `flush` posts it; the response body becomes what the read half reads. The
//! requests go through one `reqwest` client per pool (keep-alive connections, rustls) on a
//! small runtime of its own, so the blocking callers never need one.

use std::io::{self, Cursor, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hbase_thrift::hbase::{AlreadyExists, HbaseSyncClient, IOError, IllegalArgument};
use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport, TIoChannel, TTcpChannel};

use super::config::{HbaseStoreConfig, HbaseTransport};
use crate::{Error, Result};

/// The read half of either transport.
pub type ReadTransport = Box<dyn Read + Send>;
/// The write half of either transport.
pub type WriteTransport = Box<dyn Write + Send>;

/// One blocking Thrift1 client, over a socket or HTTP.
pub type Client =
    HbaseSyncClient<TBinaryInputProtocol<ReadTransport>, TBinaryOutputProtocol<WriteTransport>>;

/// Socket buffers of a client. Thrift's default is 4 KiB each way, which sends a
/// batch's `mutateRows` (megabytes) as a thousand separate `write`s and TCP segments.
const WRITE_BUFFER: usize = 256 * 1024;
const READ_BUFFER: usize = 64 * 1024;

/// Opens one client to `addr` with connect, read and write timeouts.
pub fn connect(addr: &str, timeout: Duration) -> Result<Client> {
    let target = addr
        .to_socket_addrs()
        .map_err(|e| Error::unavailable("failed to resolve hbase thrift address", e))?
        .next()
        .ok_or_else(|| Error::Config(format!("hbase thrift address {addr} resolves to nothing")))?;
    let stream = TcpStream::connect_timeout(&target, timeout)
        .map_err(|e| Error::unavailable("failed to connect to hbase thrift server", e))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|e| Error::unavailable("failed to configure hbase thrift socket", e))?;
    let (input, output) = TTcpChannel::with_stream(stream)
        .split()
        .map_err(|e| Error::unavailable("failed to split hbase thrift socket", e))?;
    Ok(client(
        Box::new(TBufferedReadTransport::with_capacity(READ_BUFFER, input)),
        Box::new(TBufferedWriteTransport::with_capacity(WRITE_BUFFER, output)),
    ))
}

fn client(input: ReadTransport, output: WriteTransport) -> Client {
    HbaseSyncClient::new(
        TBinaryInputProtocol::new(input, true),
        TBinaryOutputProtocol::new(output, true),
    )
}

/// What every HTTP client of a pool shares: the `reqwest` client (its keep-alive
/// connections) and the runtime its requests run on.
struct Http {
    client: reqwest::Client,
    runtime: Runtime,
    timeout: Duration,
}

/// A runtime that may be dropped anywhere, also inside another runtime's task.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Http {
    fn new(config: &HbaseStoreConfig, timeout: Duration) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(config.pool_size.max(1))
            .danger_accept_invalid_certs(config.insecure_skip_verify);
        if let Some(path) = &config.ca_cert_path {
            let pem = std::fs::read(path).map_err(|e| {
                Error::Config(format!(
                    "failed to read store.ca_cert_path {}: {e}",
                    path.display()
                ))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Error::Config(format!(
                    "store.ca_cert_path {} is not a PEM certificate: {e}",
                    path.display()
                ))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder
            .build()
            .map_err(|e| Error::Config(format!("failed to build the hbase http client: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("clew-hbase-http")
            .enable_all()
            .build()
            .map_err(|e| Error::unavailable("failed to start the hbase http runtime", e))?;
        Ok(Http {
            client,
            runtime: Runtime(Some(runtime)),
            timeout,
        })
    }

    /// POSTs one Thrift request and returns the response body, or the failure sorted into
    /// retryable or permanent.
    fn post(&self, url: &str, body: Vec<u8>) -> std::result::Result<Vec<u8>, HttpFailure> {
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-thrift")
            .header(reqwest::header::ACCEPT, "application/x-thrift")
            .body(body);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let rt = self
            .runtime
            .0
            .as_ref()
            .expect("runtime lives as long as Http");
        // Spawned and waited for on a channel rather than `block_on`: callers run in
        // `spawn_blocking`, but `open` may run anywhere.
        rt.spawn(async move {
            let answer = async {
                let resp = request.send().await?;
                let status = resp.status();
                let bytes = resp.bytes().await?;
                Ok::<_, reqwest::Error>((status, bytes))
            }
            .await;
            let _ = tx.send(answer);
        });
        let answer = rx
            .recv_timeout(self.timeout + Duration::from_secs(1))
            .map_err(|_| HttpFailure::Retryable("no answer before the timeout".into()))?;
        match answer {
            Ok((status, bytes)) if status.is_success() => Ok(bytes.to_vec()),
            Ok((status, bytes)) => {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                let message = format!("hbase thrift http server answered {status}: {text}");
                // 5xx (and 408/429) are the server's or a proxy's passing trouble; any
                // other status is a URL, path or permission that will not change.
                if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
                    Err(HttpFailure::Retryable(message))
                } else {
                    Err(HttpFailure::Permanent(message))
                }
            }
            Err(e) => {
                let message = error_chain(&e);
                // rustls says "invalid peer certificate: ..." for an untrusted, expired or
                // misnamed certificate: retrying cannot fix it, the configuration can.
                if message.contains("invalid peer certificate") || e.is_builder() {
                    Err(HttpFailure::Permanent(format!(
                        "{message} (check store.ca_cert_path and the url's host name)"
                    )))
                } else {
                    Err(HttpFailure::Retryable(message))
                }
            }
        }
    }
}

/// A request's error with the messages of its sources, which say what really failed.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

#[derive(Debug, Clone)]
enum HttpFailure {
    Retryable(String),
    Permanent(String),
}

/// State shared by the two halves of one HTTP client: the last response body, which the
/// read half reads, and the last failure, which [`Pool::with_client`] sorts.
#[derive(Default)]
struct Exchange {
    response: Cursor<Vec<u8>>,
    failure: Option<HttpFailure>,
}

struct HttpWrite {
    http: Arc<Http>,
    url: String,
    request: Vec<u8>,
    exchange: Arc<Mutex<Exchange>>,
}

impl Write for HttpWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.request.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let body = std::mem::take(&mut self.request);
        let answer = self.http.post(&self.url, body);
        let mut exchange = self.exchange.lock().unwrap_or_else(PoisonError::into_inner);
        match answer {
            Ok(bytes) => {
                exchange.response = Cursor::new(bytes);
                exchange.failure = None;
                Ok(())
            }
            Err(failure) => {
                exchange.response = Cursor::new(Vec::new());
                let message = match &failure {
                    HttpFailure::Retryable(m) | HttpFailure::Permanent(m) => m.clone(),
                };
                exchange.failure = Some(failure);
                Err(io::Error::other(message))
            }
        }
    }
}

struct HttpRead {
    exchange: Arc<Mutex<Exchange>>,
}

impl Read for HttpRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.exchange
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .response
            .read(buf)
    }
}

/// A pooled client, with the shared state of its HTTP exchange (HTTP transport only).
struct Pooled {
    client: Client,
    exchange: Option<Arc<Mutex<Exchange>>>,
}

/// Up to `size` idle clients, spread over the configured Thrift servers round-robin.
pub struct Pool {
    addrs: Vec<String>,
    timeout: Duration,
    size: usize,
    next_addr: AtomicUsize,
    idle: Mutex<Vec<Pooled>>,
    /// Set for `transport = "http"`.
    http: Option<Arc<Http>>,
}

impl Pool {
    /// A pool for `config`'s servers and transport (opens no connection yet).
    pub fn new(config: &HbaseStoreConfig) -> Result<Self> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let http = match config.transport {
            HbaseTransport::Socket => None,
            HbaseTransport::Http => Some(Arc::new(Http::new(config, timeout)?)),
        };
        Ok(Pool {
            addrs: config.thrift_addrs.clone(),
            timeout,
            size: config.pool_size.max(1),
            next_addr: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            http,
        })
    }

    fn open(&self) -> Result<Pooled> {
        let at = self.next_addr.fetch_add(1, Ordering::Relaxed) % self.addrs.len();
        let addr = &self.addrs[at];
        let Some(http) = &self.http else {
            return Ok(Pooled {
                client: connect(addr, self.timeout)?,
                exchange: None,
            });
        };
        let exchange = Arc::new(Mutex::new(Exchange::default()));
        let output = HttpWrite {
            http: http.clone(),
            url: addr.clone(),
            request: Vec::with_capacity(64 * 1024),
            exchange: exchange.clone(),
        };
        let input = HttpRead {
            exchange: exchange.clone(),
        };
        Ok(Pooled {
            client: client(Box::new(input), Box::new(output)),
            exchange: Some(exchange),
        })
    }

    /// Runs `f` on a pooled (or new) client. The client goes back to the pool only if `f`
    /// succeeded or failed with an answer from HBase (the stream is then still in sync).
    pub fn with_client<T>(
        &self,
        context: &'static str,
        f: impl FnOnce(&mut Client) -> thrift::Result<T>,
    ) -> Result<T> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut pooled = match pooled {
            Some(pooled) => pooled,
            None => self.open()?,
        };
        let result = f(&mut pooled.client);
        let reusable = match &result {
            Ok(_) => true,
            Err(e) => matches!(e, thrift::Error::User(_)),
        };
        let failure = match (&result, &pooled.exchange) {
            (Err(_), Some(exchange)) => exchange
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .failure
                .take(),
            _ => None,
        };
        if reusable {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < self.size {
                idle.push(pooled);
            }
        }
        match failure {
            // The HTTP layer failed for good (an untrusted certificate, a 4xx): the Thrift
            // error it surfaced as would read as a passing network error.
            Some(HttpFailure::Permanent(message)) => Err(Error::Config(format!(
                "{context}: hbase thrift http: {message}"
            ))),
            _ => result.map_err(|e| classify(context, e)),
        }
    }
}

/// Sorts a Thrift error: the network, timeouts and HBase's own `IOError` (region moving,
/// server busy, master initializing) may pass on retry; an illegal argument or a protocol
/// the server does not speak will not.
pub fn classify(context: &'static str, err: thrift::Error) -> Error {
    match err {
        thrift::Error::Transport(e) => Error::unavailable(context, e),
        thrift::Error::Protocol(e) => Error::unavailable(context, e),
        thrift::Error::Application(e) => Error::InvalidRequest(format!(
            "{context}: hbase thrift server refused the call: {e}"
        )),
        thrift::Error::User(e) => {
            if let Some(io) = e.downcast_ref::<IOError>() {
                Error::unavailable(context, io.message.as_deref().unwrap_or("hbase io error"))
            } else if let Some(arg) = e.downcast_ref::<IllegalArgument>() {
                Error::InvalidRequest(format!(
                    "{context}: hbase rejected the request: {}",
                    arg.message.as_deref().unwrap_or("illegal argument")
                ))
            } else if let Some(exists) = e.downcast_ref::<AlreadyExists>() {
                Error::InvalidRequest(format!(
                    "{context}: already exists: {}",
                    exists.message.as_deref().unwrap_or("")
                ))
            } else {
                Error::InvalidRequest(format!("{context}: {e}"))
            }
        }
    }
}

/// Whether `err` is HBase saying the table already exists (a racing creator won).
pub fn is_already_exists(err: &thrift::Error) -> bool {
    matches!(err, thrift::Error::User(e) if e.downcast_ref::<AlreadyExists>().is_some())
}
