//! Kafka → store benchmark for one collector (`scripts/bench-kafka` runs it).
//!
//! `produce`: pre-loads a topic with realistic traces (benches/workload.rs: 10–30 spans,
//! 10–20 attributes, one business key per trace) as Avro records, `--traces-per-record`
//! traces per record, keyed by the first trace id, exactly as an agent writes them.
//! `measure`: polls a running `clew serve` that consumes the topic until every record is
//! done (`clew_kafka_records_done_total{outcome="stored"}`: spans durable in store and index)
//! and the group's lag is 0, and reports spans/s.
//!
//! ```text
//! cargo bench --bench kafka_ingest -- produce --bootstrap 127.0.0.1:9092 --topic T --spans 1000000
//! cargo bench --bench kafka_ingest -- measure --api 127.0.0.1:16687 --topic T --records R --spans S
//! ```

mod workload;

use std::time::{Duration, Instant};

use clew_proto::from_otlp::{convert_request, Limits};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

fn arg(argv: &[String], flag: &str) -> Option<String> {
    argv.iter()
        .position(|a| a == flag)
        .and_then(|i| argv.get(i + 1).cloned())
}

fn num(argv: &[String], flag: &str, default: u64) -> u64 {
    arg(argv, flag).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{flag} needs a number"))
    })
}

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.first().map(String::as_str) {
        Some("produce") => produce(&argv).await,
        Some("measure") => measure(&argv).await,
        // `cargo bench` without arguments (e.g. run by `cargo bench --benches`): nothing to do
        _ => eprintln!("usage: kafka_ingest produce|measure … (see scripts/bench-kafka)"),
    }
}

async fn produce(argv: &[String]) {
    let bootstrap = arg(argv, "--bootstrap").expect("--bootstrap host:port");
    let topic = arg(argv, "--topic").expect("--topic");
    let spans_wanted = num(argv, "--spans", 1_000_000);
    let per_record = num(argv, "--traces-per-record", 1) as usize;
    let partitions = num(argv, "--partitions", 4) as i32;

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin client");
    for r in admin
        .create_topics(
            &[NewTopic::new(
                &topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topic")
    {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "none")
        .create()
        .expect("producer");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut w = workload::Workload::new(7);
    let (mut spans, mut records, mut bytes) = (0u64, 0u64, 0u64);
    let mut encode = Duration::ZERO;
    let started = Instant::now();
    let mut pending = Vec::new();
    while spans < spans_wanted {
        let traces: Vec<workload::GenTrace> = (0..per_record)
            .map(|i| {
                w.trace(now - 60_000_000_000 + (records * per_record as u64 + i as u64) * 1_000)
            })
            .collect();
        let key = traces[0].trace_id;
        let req = workload::request(&mut traces.into_iter());
        let t = Instant::now();
        let converted = convert_request(req, &Limits::default(), now);
        let value = clew_proto::avro::encode_batch(&converted.spans);
        encode += t.elapsed();
        spans += converted.spans.len() as u64;
        records += 1;
        bytes += value.len() as u64;
        let p = producer.clone();
        let topic = topic.clone();
        pending.push(tokio::spawn(async move {
            p.send(
                FutureRecord::to(&topic).key(&key[..]).payload(&value),
                Duration::from_secs(60),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("record delivered");
        }));
        if pending.len() >= 2000 {
            for h in pending.drain(..) {
                h.await.unwrap();
            }
        }
    }
    for h in pending {
        h.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "produced records={records} spans={spans} bytes={bytes} ({:.0} B/span avro, {:.2} µs/span convert+encode) in {secs:.1} s",
        bytes as f64 / spans as f64,
        encode.as_secs_f64() * 1e6 / spans as f64
    );
}

async fn scrape(api: &str) -> String {
    match reqwest::get(format!("http://{api}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn series_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn measure(argv: &[String]) {
    let api = arg(argv, "--api").expect("--api host:port");
    let topic = arg(argv, "--topic").expect("--topic");
    let records = num(argv, "--records", 0) as f64;
    let spans = num(argv, "--spans", 0) as f64;
    let timeout = Duration::from_secs(num(argv, "--timeout-secs", 1800));
    let started = Instant::now();
    let mut first: Option<(Instant, f64)> = None;
    let mut samples: Vec<(f64, f64)> = Vec::new();
    loop {
        let text = scrape(&api).await;
        let done = series_sum(
            &text,
            "clew_kafka_records_done_total",
            &[("topic", &topic), ("outcome", "stored")],
        );
        let now = Instant::now();
        if first.is_none() && done > 0.0 {
            first = Some((now, done));
        }
        samples.push((started.elapsed().as_secs_f64(), done));
        if done >= records {
            break;
        }
        assert!(
            started.elapsed() < timeout,
            "only {done} of {records} records stored within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = started.elapsed().as_secs_f64();
    let (t0, d0) = first.expect("progress seen");
    let steady = t0.elapsed().as_secs_f64();
    let spans_per_record = spans / records;
    let steady_rate = (records - d0) * spans_per_record / steady;
    // lag 0 as the collector sees it (statistics interval permitting)
    let lag_deadline = Instant::now() + Duration::from_secs(30);
    let mut lag = f64::NAN;
    while Instant::now() < lag_deadline {
        let text = scrape(&api).await;
        lag = series_sum(&text, "clew_kafka_consumer_lag", &[("topic", &topic)]);
        if text.contains("clew_kafka_consumer_lag") && lag == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = scrape(&api).await;
    let retries = series_sum(&text, "clew_kafka_write_retries_total", &[]);
    println!("| spans | records | wall time from start (incl. group join) | spans/s (whole run) | spans/s (first record stored → last) | lag at end | write retries |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {spans} | {records} | {all:.1} s | {:.0} | {steady_rate:.0} | {lag} | {retries} |",
        spans / all
    );
}
