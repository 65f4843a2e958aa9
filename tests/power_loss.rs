//! Power loss, not only process death (`docs/robustness.md`, machine failures): a crash of
//! the machine loses whatever the kernel had not yet written to the device, so every
//! acknowledged request must have been fsync'd — in the span store's journal *and* in the
//! index WAL — before its answer left the process.
//!
//! The kill -9 tests cannot show that (the page cache survives a killed process). This test
//! records the system calls of a real `clew serve` with `strace` while clients send OTLP
//! requests over HTTP and gRPC, one connection each, and checks on the record, for every
//! answer: after the last byte of its request was read and before the first byte of its
//! answer was written, the store journal (`spans/*.jnl`) and the index WAL
//! (`index/wal.log`) were each written and then `fdatasync`/`fsync`ed, the sync having
//! returned. Then clew is restarted and serves every acknowledged trace.
//!
//! Needs `strace` (`scripts/strace-fetch` installs Debian's); `#[ignore]`d, `scripts/test`
//! runs it. The checker itself runs in a plain `cargo test` on recorded lines, including a
//! record where the answer precedes the sync, which it must flag.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;

use clew_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use common::*;
use prost::Message;

/// The system calls recorded: socket reads and writes, file writes, syncs.
const TRACED: &str = "trace=read,readv,recvfrom,recvmsg,write,writev,sendto,sendmsg,\
                      pwrite64,pwritev,pwritev2,fsync,fdatasync,sync_file_range";

#[test]
#[ignore = "needs strace (scripts/strace-fetch); scripts/test runs it"]
fn every_answer_follows_the_fsync_of_its_spans() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let log = tmp.path().join("strace.log");
    let log_arg = log.to_str().expect("utf-8 path").to_string();
    let strace = [
        "strace", "-f", "-ttt", "-T", "-yy", "-xx", "-s", "65536", "-e", TRACED, "-o", &log_arg,
        "--",
    ];
    let mut clew = Clew::start_wrapped(&strace, &data_dir, &[], Stdio::inherit());
    let http_port = clew.otlp_http.port();
    let grpc_port = clew.otlp_grpc.port();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut traces = Vec::new();
    rt.block_on(async {
        for round in 0..6u64 {
            // HTTP: a fresh connection per request, so each answer has its own socket
            let trace = random_trace_id();
            let body = request(
                "power-http",
                vec![otlp_span(trace, 1, None, "http-op", vec![])],
            )
            .encode_to_vec();
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("client");
            let resp = client
                .post(clew.otlp_http_url())
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await
                .expect("OTLP/HTTP reachable");
            assert_eq!(resp.status().as_u16(), 200, "round {round}");
            traces.push(trace);

            // gRPC: a fresh channel (connection) per request
            let trace = random_trace_id();
            let mut grpc = TraceServiceClient::connect(clew.otlp_grpc_url())
                .await
                .expect("OTLP/gRPC reachable");
            grpc.export(request(
                "power-grpc",
                vec![otlp_span(trace, 1, None, "grpc-op", vec![])],
            ))
            .await
            .expect("export acknowledged");
            traces.push(trace);
        }
    });
    assert!(
        clew.terminate().success(),
        "clew (under strace) exits cleanly"
    );

    let record = std::fs::read_to_string(&log).expect("strace log");
    let calls = parse(&record);
    let answers = check(&calls, http_port, Protocol::Http, &data_dir);
    assert_eq!(
        answers.checked, 6,
        "HTTP answers found in the record: {answers:?}"
    );
    assert!(answers.violations.is_empty(), "{:#?}", answers.violations);
    let answers = check(&calls, grpc_port, Protocol::Grpc, &data_dir);
    assert_eq!(
        answers.checked, 6,
        "gRPC answers found in the record: {answers:?}"
    );
    assert!(answers.violations.is_empty(), "{:#?}", answers.violations);

    // and what was acknowledged is there after a restart
    let clew = Clew::start_in(&data_dir, &[]);
    rt.block_on(async {
        for trace in &traces {
            let (status, body) = clew
                .get(&format!("/api/v1/traces/{}", hex::encode(trace)))
                .await;
            assert_eq!(
                status,
                200,
                "acknowledged trace {} after restart: {body}",
                hex::encode(trace)
            );
        }
    });
}

/// One recorded system call.
#[derive(Debug, Clone)]
struct Call {
    name: String,
    /// What strace printed for the first (fd) argument: a path or `TCP:[local->peer]`.
    fd: String,
    /// The bytes of every buffer argument, concatenated (reads: what was read).
    data: Vec<u8>,
    ret: i64,
    start: f64,
    end: f64,
}

/// Parses `strace -f -ttt -T -yy -xx` output, joining `<unfinished ...>` /
/// `<... resumed>` pairs.
fn parse(record: &str) -> Vec<Call> {
    let mut pending: HashMap<&str, (f64, String)> = HashMap::new();
    let mut calls = Vec::new();
    for line in record.lines() {
        // `PID TIMESTAMP CALL`; strace pads short pids (`4691  1796…`)
        let Some((pid, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Some((ts, rest)) = rest.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(ts) = ts.parse::<f64>() else { continue };
        if rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid, (ts, head.to_string()));
            continue;
        }
        let (start, text) = if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((_, tail)) = resumed.split_once(" resumed>") else {
                continue;
            };
            let Some((start, head)) = pending.remove(pid) else {
                continue;
            };
            (start, format!("{head}{tail}"))
        } else {
            (ts, rest.to_string())
        };
        if let Some(call) = call(start, &text) {
            calls.push(call);
        }
    }
    calls
}

/// `name(fd<what>, args…) = ret <duration>` → a [`Call`].
fn call(start: f64, text: &str) -> Option<Call> {
    let (name, args) = text.split_once('(')?;
    let (args, result) = args.rsplit_once(") = ")?;
    let ret = result.split_whitespace().next()?.parse::<i64>().ok()?;
    let duration = result
        .rsplit_once('<')
        .and_then(|(_, d)| d.strip_suffix('>'))
        .and_then(|d| d.parse::<f64>().ok())
        .unwrap_or(0.0);
    let fd = args.split_once('<').map(|(_, r)| r).and_then(|r| {
        // a socket's text holds "->" itself: `TCP:[local->peer]>`
        if r.contains(":[") && r.find(":[") < r.find('>') {
            r.split_once("]>").map(|(fd, _)| format!("{fd}]"))
        } else {
            r.split_once('>').map(|(fd, _)| fd.to_string())
        }
    });
    // -xx writes paths as `\x..` too
    let fd = unescape(&fd.unwrap_or_default());
    Some(Call {
        name: name.to_string(),
        fd,
        data: quoted_bytes(args),
        ret,
        start,
        end: start + duration,
    })
}

/// `text` with its `\xHH` escapes decoded.
fn unescape(text: &str) -> String {
    String::from_utf8_lossy(&unescape_bytes(text)).into_owned()
}

/// The bytes of `text`, its `\xHH` escapes decoded.
fn unescape_bytes(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let hex = (b == b'\\' && tail.first() == Some(&b'x'))
            .then(|| tail.get(1..3))
            .flatten()
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match hex {
            Some(byte) => {
                out.push(byte);
                rest = &tail[3..];
            }
            None => {
                out.push(b);
                rest = tail;
            }
        }
    }
    out
}

/// The bytes of every `"\x.."` string (strace `-xx`) in `args`.
fn quoted_bytes(args: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = args;
    while let Some((_, after)) = rest.split_once('"') {
        let Some((inner, tail)) = after.split_once('"') else {
            break;
        };
        out.extend(unescape_bytes(inner));
        rest = tail;
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Protocol {
    Http,
    Grpc,
}

fn is_read(c: &Call) -> bool {
    matches!(c.name.as_str(), "read" | "readv" | "recvfrom" | "recvmsg")
}

fn is_write(c: &Call) -> bool {
    matches!(
        c.name.as_str(),
        "write" | "writev" | "sendto" | "sendmsg" | "pwrite64" | "pwritev" | "pwritev2"
    )
}

fn is_sync(c: &Call) -> bool {
    matches!(c.name.as_str(), "fsync" | "fdatasync") && c.ret == 0
}

/// Whether a write on a connection carries the answer: an HTTP/1.1 status line, or an
/// HTTP/2 HEADERS frame on a stream (the server sends those only to answer).
fn is_answer(protocol: Protocol, data: &[u8]) -> bool {
    match protocol {
        Protocol::Http => data.starts_with(b"HTTP/1.1 "),
        Protocol::Grpc => {
            let mut frames = data;
            while frames.len() >= 9 {
                let len = u32::from_be_bytes([0, frames[0], frames[1], frames[2]]) as usize;
                let stream =
                    u32::from_be_bytes([frames[5], frames[6], frames[7], frames[8]]) & 0x7fff_ffff;
                if frames[3] == 0x1 && stream != 0 {
                    return true;
                }
                frames = frames.get(9 + len..).unwrap_or(&[]);
            }
            false
        }
    }
}

/// When the read that completed the first HTTP/2 stream's request ended: the frame with
/// END_STREAM on a stream, in the client's bytes (after the connection preface).
fn request_end(reads: &[&Call]) -> Option<f64> {
    let mut bytes = Vec::new();
    let mut ends = Vec::new(); // (end offset in `bytes`, end time) per read
    for c in reads {
        bytes.extend_from_slice(&c.data);
        ends.push((bytes.len(), c.end));
    }
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut at = if bytes.starts_with(PREFACE) {
        PREFACE.len()
    } else {
        0
    };
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        let (kind, flags) = (bytes[at + 3], bytes[at + 4]);
        let stream =
            u32::from_be_bytes([bytes[at + 5], bytes[at + 6], bytes[at + 7], bytes[at + 8]])
                & 0x7fff_ffff;
        let end = at + 9 + len;
        if (kind == 0x0 || kind == 0x1) && flags & 0x1 != 0 && stream != 0 {
            return ends.iter().find(|(e, _)| *e >= end).map(|&(_, t)| t);
        }
        at = end;
    }
    None
}

#[derive(Debug, Default)]
struct Answers {
    /// Answers found and checked.
    checked: usize,
    violations: Vec<String>,
}

/// For every connection to `port`: its answer came after a write + completed sync of the
/// store journal and of the index WAL, all after its request was read.
fn check(calls: &[Call], port: u16, protocol: Protocol, data_dir: &Path) -> Answers {
    let dir = data_dir.to_string_lossy();
    let journal = |c: &Call| c.fd.starts_with(&*dir) && c.fd.ends_with(".jnl");
    let wal = |c: &Call| c.fd.starts_with(&*dir) && c.fd.ends_with("/index/wal.log");
    let prefix = format!("TCP:[127.0.0.1:{port}->");
    let mut connections: Vec<&str> = calls
        .iter()
        .filter(|c| c.fd.starts_with(&prefix))
        .map(|c| c.fd.as_str())
        .collect();
    connections.sort_unstable();
    connections.dedup();

    let mut answers = Answers::default();
    for conn in connections {
        let on_conn = || calls.iter().filter(move |c| c.fd == conn);
        let Some(answer) = on_conn()
            .filter(|c| is_write(c) && is_answer(protocol, &c.data))
            .min_by(|a, b| a.start.total_cmp(&b.start))
        else {
            continue; // a connection that never got an answer acknowledged nothing
        };
        answers.checked += 1;
        let reads: Vec<&Call> = on_conn()
            .filter(|c| is_read(c) && c.ret > 0 && c.start < answer.start)
            .collect();
        let request_read = match protocol {
            // HTTP/1.1: the client sends nothing but its request before the answer
            Protocol::Http => reads.iter().map(|c| c.end).fold(f64::NAN, f64::max),
            // HTTP/2: the read that brought the request's last frame (END_STREAM), not a
            // later SETTINGS ack, WINDOW_UPDATE or PING
            Protocol::Grpc => request_end(&reads).unwrap_or(f64::NAN),
        };
        if request_read.is_nan() {
            answers
                .violations
                .push(format!("{conn}: answered before anything was read"));
            continue;
        }
        for (what, is_file) in [
            ("store journal", &journal as &dyn Fn(&Call) -> bool),
            ("index WAL", &wal),
        ] {
            let synced = calls.iter().any(|sync| {
                is_sync(sync)
                    && is_file(sync)
                    && sync.start >= request_read
                    && sync.end <= answer.start
                    && calls.iter().any(|w| {
                        is_write(w)
                            && w.fd == sync.fd
                            && w.start >= request_read
                            && w.end <= sync.start
                    })
            });
            if !synced {
                let timeline: Vec<String> = on_conn()
                    .map(|c| {
                        format!(
                            "{:.6} {} = {} {:02x?}",
                            c.start,
                            c.name,
                            c.ret,
                            &c.data[..c.data.len().min(24)]
                        )
                    })
                    .collect();
                answers.violations.push(format!(
                    "{conn}: answered at {:.6} without a write + completed fsync of the {what} \
                     after its request was read (at {request_read:.6}); on the connection: {timeline:#?}",
                    answer.start
                ));
            }
        }
    }
    answers
}

// ---- the checker, on recorded lines (runs in a plain `cargo test`) ----

const DATA: &str = "/tmp/d/data";

/// A request on connection `port`, its spans written and synced in the order `steps`.
fn record(steps: &[&str]) -> String {
    let conn = "3<TCP:[127.0.0.1:4318->127.0.0.1:50000]>";
    let mut t = 10.0;
    let mut out = String::new();
    for step in steps {
        t += 0.001;
        let line = match *step {
            "read" => format!("7     {t:.6} recvfrom({conn}, \"\\x50\\x4f\\x53\\x54\", 4, 0, NULL, NULL) = 4 <0.000010>"),
            "jnl" => format!("8 {t:.6} write(11<{}>, \"\\x01\", 1) = 1 <0.000010>", hex_escaped(&format!("{DATA}/spans/0.jnl"))),
            "jnl-sync" => format!("8 {t:.6} fdatasync(11<{}>) = 0 <0.000100>", hex_escaped(&format!("{DATA}/spans/0.jnl"))),
            "wal" => format!("9 {t:.6} write(12<{DATA}/index/wal.log>, \"\\x01\", 1) = 1 <0.000010>"),
            // split by another thread's call, as strace -f prints it
            "wal-sync" => format!(
                "9 {t:.6} fdatasync(12<{DATA}/index/wal.log> <unfinished ...>\n\
                 8 {:.6} write(2</dev/null>, \"\\x78\", 1) = 1 <0.000001>\n\
                 9 {:.6} <... fdatasync resumed>) = 0 <0.000200>",
                t + 0.0001,
                t + 0.0002
            ),
            "answer" => format!(
                "7 {t:.6} writev({conn}, [{{iov_base=\"\\x48\\x54\\x54\\x50\\x2f\\x31\\x2e\\x31\\x20\\x32\", iov_len=10}}], 1) = 10 <0.000010>"
            ),
            other => panic!("unknown step {other}"),
        };
        out.push_str(&line);
        out.push('\n');
        t += 0.001;
    }
    out
}

/// `text` as `strace -xx` prints it.
fn hex_escaped(text: &str) -> String {
    text.bytes().map(|b| format!("\\x{b:02x}")).collect()
}

fn verdict(steps: &[&str]) -> Answers {
    check(
        &parse(&record(steps)),
        4318,
        Protocol::Http,
        Path::new(DATA),
    )
}

#[test]
fn checker_accepts_answers_after_both_syncs() {
    let a = verdict(&["read", "jnl", "jnl-sync", "wal", "wal-sync", "answer"]);
    assert_eq!(a.checked, 1);
    assert!(a.violations.is_empty(), "{:?}", a.violations);
}

#[test]
fn checker_flags_an_answer_before_the_index_sync() {
    let a = verdict(&["read", "jnl", "jnl-sync", "wal", "answer", "wal-sync"]);
    assert_eq!(a.checked, 1);
    assert_eq!(a.violations.len(), 1, "{:?}", a.violations);
    assert!(a.violations[0].contains("index WAL"), "{:?}", a.violations);
}

#[test]
fn checker_flags_a_sync_of_data_written_before_the_request() {
    // the journal was synced, but its write predates the request: not this request's spans
    let a = verdict(&["jnl", "read", "jnl-sync", "wal", "wal-sync", "answer"]);
    assert_eq!(a.violations.len(), 1, "{:?}", a.violations);
    assert!(
        a.violations[0].contains("store journal"),
        "{:?}",
        a.violations
    );
}

#[test]
fn http2_request_ends_with_its_end_stream_frame_not_a_later_settings_ack() {
    let read = |data: Vec<u8>, end: f64| Call {
        name: "recvfrom".into(),
        fd: String::new(),
        ret: data.len() as i64,
        data,
        start: end - 0.0001,
        end,
    };
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let settings = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    let headers = vec![0, 0, 1, 0x1, 0x4, 0, 0, 0, 1, 0x88];
    let data_end = vec![0, 0, 2, 0x0, 0x1, 0, 0, 0, 1, 7, 7];
    let settings_ack = vec![0, 0, 0, 0x4, 0x1, 0, 0, 0, 0];
    let first = [preface, settings, headers, data_end[..5].to_vec()].concat();
    let reads = [
        read(first, 1.0),
        read(data_end[5..].to_vec(), 2.0),
        read(settings_ack, 3.0),
    ];
    let refs: Vec<&Call> = reads.iter().collect();
    assert_eq!(request_end(&refs), Some(2.0));
}

#[test]
fn checker_recognises_http2_answers_only_by_headers_frames() {
    let settings = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    let window_update = [0, 0, 4, 0x8, 0, 0, 0, 0, 1, 0, 0, 0, 9];
    let headers = [0, 0, 1, 0x1, 0x4, 0, 0, 0, 1, 0x88];
    assert!(!is_answer(Protocol::Grpc, &settings));
    assert!(!is_answer(Protocol::Grpc, &window_update));
    assert!(is_answer(
        Protocol::Grpc,
        &[&settings[..], &headers[..]].concat()
    ));
}
