//! The limits every listener applies, in one place (`docs/robustness.md`, "HTTP/2 floods").
//!
//! The h2 crate already defends against the known HTTP/2 floods (h2 0.4.20 in Cargo.lock:
//! rapid reset, CVE-2023-44487, since 0.4.2 through `max_pending_accept_reset_streams`;
//! CONTINUATION floods since 0.4.4; "MadeYouReset", CVE-2025-8671, since 0.4.12 through
//! `max_local_error_reset_streams`). What it cannot choose for clew is how much one peer may
//! hold: those numbers are here, set explicitly on every server instead of inheriting
//! whatever hyper or tonic default to (tonic's gRPC server allowed unlimited concurrent
//! streams per connection).

use std::time::Duration;

/// Connections served at once per listener; past it the listener stops accepting (the
/// kernel's backlog holds new connections) until one closes. Bounds what a client that
/// opens connections without end can make clew hold: with [`MAX_CONCURRENT_STREAMS`] this
/// caps the streams of one listener at 409,600. Far above what clew's clients need (an
/// SDK or collector keeps one or a few connections); it needs as many file descriptors,
/// so raise `ulimit -n` (`LimitNOFILE=` in systemd) to match.
pub const MAX_CONNECTIONS: usize = 4096;

/// HTTP/2 streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS);
/// more are refused with RST_STREAM(REFUSED_STREAM), which clients retry. nginx uses 128,
/// h2o and Envoy's edge recommendation 100, Go's net/http 250; OTLP exporters keep a few
/// exports in flight per connection (the OpenTelemetry Collector's 10 consumers by default).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;

/// Largest header list (decoded, as HTTP/2 counts it: names + values + 32 per field) a
/// request may carry (SETTINGS_MAX_HEADER_LIST_SIZE); larger ones are refused. hyper's
/// default is 16 KiB, Go's 1 MiB; 64 KiB leaves room for bearer tokens and the cookies a
/// browser sends to the UI, while a CONTINUATION flood is cut off at this size (h2 also
/// refuses more CONTINUATION frames than this size needs).
pub const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// Streams a peer may reset before clew has even accepted them (rapid reset); past it the
/// connection is closed with GOAWAY(ENHANCE_YOUR_CALM). h2's own default, set explicitly.
pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

/// Streams clew may reset because of the peer's protocol errors before the connection is
/// closed with GOAWAY(ENHANCE_YOUR_CALM) ("MadeYouReset"). hyper's default, set explicitly.
pub const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// How often an idle HTTP/2 connection is pinged, and how long the answer may take before
/// the connection is dropped: a vanished peer does not hold its connection for ever.
/// (gRPC clients may ping clew as they like: h2 answers without limit, and a ping flood
/// costs clew one small write each.)
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(60);
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Time a new connection has to send its first request (HTTP/1 request head, or HTTP/2
/// preface and first HEADERS), and an HTTP/1 request to send its head (slowloris). hyper
/// counts an HTTP/1 keep-alive connection's wait for its next request head too, so an
/// HTTP/1 connection idle this long between requests is closed (clients reconnect; their
/// pools notice the close).
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a TLS client has to complete its handshake, counted in the connection's own task
/// (a slow handshake never holds up the accept loop).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection with nothing in flight (no handler running, no response being sent) for
/// this long is closed (HTTP/2: GOAWAY, then [`CLOSE_GRACE`]). Exporters reconnect on
/// their next export. nginx closes idle HTTP/2 connections after 3 min, Go after its
/// `IdleTimeout` (often 2 min).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Time a request has to deliver its whole body, from its head on; after that the body
/// read fails and the request is answered with an error. A stream opened and left idle
/// (or fed a byte at a time) holds its slot at most this long. OTLP exporters give up
/// after 10 s (SDKs) or 5 s (the Collector) by default.
pub const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// After a connection was told to close (GOAWAY, idle or server shutdown), how long its
/// requests in flight may take before it is dropped. A peer that never reads its answers
/// (zero flow-control window) cannot keep a closing connection, or clew's shutdown, waiting.
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);
