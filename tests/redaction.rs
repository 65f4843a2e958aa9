//! Redaction through a real `clew serve` (issue 12, part 1): spans carrying a card number
//! in `db.statement`, a password attribute, a bearer token in the authorization header, a
//! `?token=` in `url.full` and a card number in an exception message go in over OTLP
//! gRPC and OTLP HTTP (and a card number and a password over Zipkin); the API shows them masked, searching for the originals finds
//! nothing, and no file of the data directory (store, index, index WAL) holds the
//! original bytes — while a canary value sent beside them is found there, so the scan
//! can see what was written. A `hash` rule keeps equal values searchable as equal, and a
//! Luhn-valid order number that is a business key is left alone.

mod common;

use std::path::Path;
use std::time::Duration;

use clew_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use clew_proto::otlp::trace::v1::span::Event;
use clew_proto::otlp::trace::v1::Status;
use common::{kv, otlp_span, random_trace_id, request, span_named, trace_ids, unique, Clew};
use prost::Message;
use serde_json::Value;

/// A random Luhn-valid 16-digit Visa number (random digits: no run that LZ4 could turn
/// into a back-reference and hide from the byte scan).
fn card_number() -> String {
    let mut digits: Vec<u32> = vec![4];
    digits.extend((0..14).map(|_| rand::random::<u32>() % 10));
    // the check digit: every second digit from the right of the payload is doubled
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 0 { double(d) } else { d })
        .sum();
    digits.push((10 - sum % 10) % 10);
    let number: String = digits
        .iter()
        .map(|d| char::from_digit(*d, 10).unwrap())
        .collect();
    assert!(luhn(&number), "{number}");
    number
}

fn double(d: u32) -> u32 {
    if d * 2 > 9 {
        d * 2 - 9
    } else {
        d * 2
    }
}

fn luhn(number: &str) -> bool {
    let sum: u32 = number
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| if i % 2 == 1 { double(d) } else { d })
        .sum();
    sum % 10 == 0
}

/// A random value of `n` letters and digits.
fn random_text(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    (0..n)
        .map(|_| ALPHABET[rand::random::<u32>() as usize % ALPHABET.len()] as char)
        .collect()
}

/// Every file under `dir` (path, used bytes): journals are preallocated, and their zero
/// tail holds nothing.
fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(mut bytes) = std::fs::read(&path) {
                let used = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
                bytes.truncate(used);
                files.push((path.display().to_string(), bytes));
            }
        }
    }
    files
}

/// The files that contain `needle`.
fn containing<'a>(files: &'a [(String, Vec<u8>)], needle: &str) -> Vec<&'a str> {
    files
        .iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .map(|(path, _)| path.as_str())
        .collect()
}

/// What one trace carries.
struct Secrets {
    card: String,
    card_in_exception: String,
    password: String,
    bearer: String,
    url_token: String,
    email: String,
    order_id: String,
    canary: String,
}

impl Secrets {
    fn new(email: &str) -> Secrets {
        let order_id = card_number();
        Secrets {
            card: card_number(),
            card_in_exception: card_number(),
            password: format!("pw-{}", random_text(16)),
            bearer: random_text(32),
            url_token: random_text(24),
            email: email.to_string(),
            order_id,
            canary: format!("canary-{}", random_text(20)),
        }
    }

    /// The values that must never reach the disk.
    fn originals(&self) -> Vec<String> {
        vec![
            self.card.clone(),
            self.card_in_exception.clone(),
            self.password.clone(),
            self.bearer.clone(),
            self.url_token.clone(),
            self.email.clone(),
        ]
    }

    fn request(
        &self,
        service: &str,
        trace: [u8; 16],
    ) -> clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest {
        let mut root = otlp_span(
            trace,
            1,
            None,
            "POST /checkout",
            vec![
                kv(
                    "http.request.header.authorization",
                    &format!("Bearer {}", self.bearer),
                ),
                kv(
                    "url.full",
                    &format!("https://shop.example/cb?order=7&token={}", self.url_token),
                ),
                kv("user.password", &self.password),
                kv("user.email", &self.email),
                kv("order_id", &self.order_id),
                kv("note", &self.canary),
            ],
        );
        root.status = Some(Status {
            code: 2,
            message: "payment failed".into(),
        });
        let mut db = otlp_span(
            trace,
            2,
            Some(1),
            "SELECT cards",
            vec![kv(
                "db.statement",
                &format!("SELECT * FROM cards WHERE pan = '{}'", self.card),
            )],
        );
        db.events.push(Event {
            name: "exception".into(),
            time_unix_nano: db.start_time_unix_nano,
            attributes: vec![
                kv("exception.type", "CardDeclined"),
                kv(
                    "exception.message",
                    &format!("card {} declined", self.card_in_exception),
                ),
            ],
            ..Default::default()
        });
        request(service, vec![root, db])
    }
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

// multi-threaded: `terminate` blocks this thread while the clients' connections close
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_disk_and_hashed_values_stay_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("clew.toml");
    std::fs::write(
        &config,
        "[redaction]\nhash_key = \"e2e-test-key-0123456789\"\n[[redaction.rules]]\nname = \"email\"\nattribute = \"user.email\"\naction = \"hash\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut clew = Clew::start_in(&data, &["--config", config.to_str().unwrap()]);
    let service = unique("redact");
    let email = format!("{}@example.com", random_text(12));

    // one trace over gRPC, one over HTTP protobuf; the same customer in both
    let (grpc_trace, http_trace) = (random_trace_id(), random_trace_id());
    let grpc = Secrets::new(&email);
    let http = Secrets::new(&email);
    let mut client = TraceServiceClient::connect(clew.otlp_grpc_url())
        .await
        .unwrap();
    let answer = client
        .export(grpc.request(&service, grpc_trace))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.partial_success.is_none_or(|p| p.rejected_spans == 0));
    let resp = reqwest::Client::new()
        .post(clew.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .body(http.request(&service, http_trace).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp); // its connection would hold graceful shutdown up
                // and one Zipkin v2 JSON span, whose tags become attributes
    let zipkin_trace = random_trace_id();
    let zipkin_card = card_number();
    let zipkin_password = format!("pw-{}", random_text(16));
    let zipkin_span = serde_json::json!([{
        "traceId": hex::encode(zipkin_trace),
        "id": "00000000000000a1",
        "name": "charge",
        "kind": "CLIENT",
        "timestamp": common::now_unix_nano() / 1000 - 1000,
        "duration": 500,
        "localEndpoint": { "serviceName": service },
        "tags": {
            "db.statement": format!("UPDATE cards SET used = 1 WHERE pan = '{zipkin_card}'"),
            "db.password": zipkin_password,
        },
        "annotations": [{ "timestamp": common::now_unix_nano() / 1000 - 900, "value": format!("declined card {zipkin_card}") }]
    }]);
    let resp = reqwest::Client::new()
        .post(format!("{}", clew.zipkin_url()))
        .json(&zipkin_span)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    drop(resp);

    // no file holds an original: just acknowledged (index WAL, store journal), later
    // while running, and once shut down (store tables, index segments)
    let scan = |when: &str| {
        let files = read_all(&data);
        for s in [&grpc, &http] {
            assert!(
                !containing(&files, &s.canary).is_empty(),
                "{when}: the canary is in no file, so the scan proves nothing"
            );
            for original in s.originals() {
                let found = containing(&files, &original);
                assert!(found.is_empty(), "{when}: {original:?} found in {found:?}");
            }
        }
        for original in [&zipkin_card, &zipkin_password] {
            let found = containing(&files, original);
            assert!(
                found.is_empty(),
                "{when}: {original:?} (zipkin) found in {found:?}"
            );
        }
    };
    scan("just acknowledged");

    let mut hashes = Vec::new();
    for (trace, s) in [(grpc_trace, &grpc), (http_trace, &http)] {
        let (status, t) = clew
            .get(&format!("/api/v1/traces/{}", hex::encode(trace)))
            .await;
        assert_eq!(status, 200, "{t}");
        let root = span_named(&t, "POST /checkout");
        assert_eq!(attr(root, "http.request.header.authorization"), "****");
        assert_eq!(
            attr(root, "url.full"),
            "https://shop.example/cb?order=7&token=****"
        );
        assert_eq!(attr(root, "user.password"), "****");
        assert_eq!(
            attr(root, "order_id"),
            s.order_id.as_str(),
            "business key kept"
        );
        assert_eq!(attr(root, "note"), s.canary.as_str());
        let hash = attr(root, "user.email").as_str().unwrap().to_string();
        assert!(hash.starts_with("hmac:") && hash.len() == 37, "{hash}");
        hashes.push(hash);
        assert_eq!(
            attr(root, "clew.redacted"),
            "email,password,authorization_header,url_secret"
        );
        let db = span_named(&t, "SELECT cards");
        let last4 = &s.card[12..];
        assert_eq!(
            attr(db, "db.statement"),
            format!("SELECT * FROM cards WHERE pan = '****{last4}'").as_str()
        );
        assert_eq!(
            db["events"][0]["attributes"]["exception.message"],
            format!("card ****{} declined", &s.card_in_exception[12..])
        );
        assert_eq!(attr(db, "clew.redacted"), "card_number");
        let text = t.to_string();
        for original in s.originals() {
            assert!(!text.contains(&original), "{original} in {text}");
        }
    }
    let (status, t) = clew
        .get(&format!("/api/v1/traces/{}", hex::encode(zipkin_trace)))
        .await;
    assert_eq!(status, 200, "{t}");
    let charge = span_named(&t, "charge");
    let last4 = &zipkin_card[12..];
    assert_eq!(
        attr(charge, "db.statement"),
        format!("UPDATE cards SET used = 1 WHERE pan = '****{last4}'").as_str()
    );
    assert_eq!(attr(charge, "db.password"), "****");
    assert_eq!(
        charge["events"][0]["name"],
        format!("declined card ****{last4}")
    );
    assert!(!t.to_string().contains(&zipkin_card) && !t.to_string().contains(&zipkin_password));

    // equal values hash equal: one search by the hash finds both traces
    assert_eq!(hashes[0], hashes[1]);
    let by_hash = clew
        .wait_for(
            &format!(
                "/api/v1/search?service={service}&attr=user.email:{}&limit=10",
                hashes[0]
            ),
            Duration::from_secs(10),
            |b| trace_ids(b).len() == 2,
        )
        .await;
    assert_eq!(trace_ids(&by_hash).len(), 2);
    // the business key is searchable as sent
    let by_key = clew
        .wait_for(
            &format!("/api/v1/keys/order_id/{}", grpc.order_id),
            Duration::from_secs(10),
            |b| trace_ids(b).len() == 1,
        )
        .await;
    assert_eq!(trace_ids(&by_key), vec![hex::encode(grpc_trace)]);
    // searching for the originals finds nothing
    for query in [
        format!("attr=user.email:{}", email.replace('@', "%40")),
        format!("attr=user.password:{}", grpc.password),
        format!("q={}", grpc.card_in_exception),
    ] {
        let (status, body) = clew
            .get(&format!(
                "/api/v1/search?service={service}&{query}&limit=10"
            ))
            .await;
        assert_eq!(status, 200, "{query}: {body}");
        assert!(trace_ids(&body).is_empty(), "{query}: {body}");
    }
    let metrics = clew.metrics(None).await;
    for rule in [
        "email",
        "password",
        "card_number",
        "url_secret",
        "authorization_header",
    ] {
        let series = format!("clew_redactions_total{{rule=\"{rule}\"}} ");
        let counted = metrics
            .lines()
            .any(|l| l.starts_with(&series) && !l.ends_with(" 0"));
        assert!(counted, "no clew_redactions_total for {rule} in {metrics}");
    }

    scan("running");
    drop(client); // an open gRPC connection holds graceful shutdown up
    assert!(clew.terminate().success());
    scan("after shutdown");
}
