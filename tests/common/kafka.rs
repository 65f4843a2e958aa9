//! The real Kafka broker of `scripts/kafka-start`, as the Kafka tests use it.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// `KAFKA_BOOTSTRAP` (`host:port`), set by `eval "$(scripts/kafka-start)"`.
pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").expect(
        "KAFKA_BOOTSTRAP not set: run `eval \"$(scripts/kafka-start)\"` (scripts/test does)",
    )
}

/// Creates `name` with `partitions` partitions (replication 1).
pub async fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin client");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .expect("create topics");
    for r in results {
        r.unwrap_or_else(|(topic, e)| panic!("create topic {topic}: {e}"));
    }
}

/// Runs `scripts/kafka-stop` or `scripts/kafka-start --restart`, bounded in time.
pub fn broker(script: &str, args: &[&str]) {
    let path = format!("{}/scripts/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = std::process::Command::new(&path)
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{path} {args:?} failed: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{path} {args:?} did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
