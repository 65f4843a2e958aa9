//! Connections to HBase's Thrift1 server: a small pool of blocking clients, and the one
//! place where Thrift errors are sorted into retryable and permanent ones.
//!
//! Thrift1 is a blocking, one-request-at-a-time protocol (binary protocol over a buffered
//! socket, the server's default), so concurrency comes from holding several connections.
//! A connection that saw any transport or protocol error is dropped, never reused: its
//! stream may be half-read.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hbase_thrift::hbase::{AlreadyExists, HbaseSyncClient, IOError, IllegalArgument};
use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use thrift::transport::{
    ReadHalf, TBufferedReadTransport, TBufferedWriteTransport, TIoChannel, TTcpChannel, WriteHalf,
};

use crate::{Error, Result};

/// One blocking Thrift1 client.
pub type Client = HbaseSyncClient<
    TBinaryInputProtocol<TBufferedReadTransport<ReadHalf<TTcpChannel>>>,
    TBinaryOutputProtocol<TBufferedWriteTransport<WriteHalf<TTcpChannel>>>,
>;

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
    Ok(HbaseSyncClient::new(
        TBinaryInputProtocol::new(
            TBufferedReadTransport::with_capacity(READ_BUFFER, input),
            true,
        ),
        TBinaryOutputProtocol::new(
            TBufferedWriteTransport::with_capacity(WRITE_BUFFER, output),
            true,
        ),
    ))
}

/// Up to `size` idle clients, spread over the configured Thrift servers round-robin.
pub struct Pool {
    addrs: Vec<String>,
    timeout: Duration,
    size: usize,
    next_addr: AtomicUsize,
    idle: Mutex<Vec<Client>>,
}

impl Pool {
    pub fn new(addrs: Vec<String>, size: usize, timeout: Duration) -> Self {
        Pool {
            addrs,
            timeout,
            size: size.max(1),
            next_addr: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
        }
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
        let mut client = match pooled {
            Some(client) => client,
            None => {
                let at = self.next_addr.fetch_add(1, Ordering::Relaxed) % self.addrs.len();
                connect(&self.addrs[at], self.timeout)?
            }
        };
        let result = f(&mut client);
        let reusable = match &result {
            Ok(_) => true,
            Err(e) => matches!(e, thrift::Error::User(_)),
        };
        if reusable {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < self.size {
                idle.push(client);
            }
        }
        result.map_err(|e| classify(context, e))
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
