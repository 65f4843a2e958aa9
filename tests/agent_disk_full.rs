//! `clew agent`'s spool on a full disk (`docs/robustness.md`, machine failures): with Kafka
//! unreachable the agent spools, the spool's filesystem fills up, and the agent answers
//! retryable errors (503 + `Retry-After`) — it neither acknowledges what it could not write
//! nor stays broken: once space is back it spools again, `/healthz` stays truthful, and a
//! restarted agent finds every acknowledged record in its spool, with no torn frame left by
//! the failed writes.
//!
//! Needs a real small filesystem (a tmpfs mounted for the test: root, or CAP_SYS_ADMIN), no
//! Kafka: the broker address points at a closed port. `#[ignore]`d; `scripts/test` runs it.

mod common;

use std::time::Duration;

use common::agent::Agent;
use common::small_fs::SmallFs;
use common::*;

/// One trace of 20 spans with ~2 KiB of attribute each (~40 KiB on the spool).
fn heavy_request() -> Vec<u8> {
    blob_request("agent-disk-full", random_trace_id(), 20, 32)
}

async fn post(agent: &Agent, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(agent.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("agent reachable")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "mounts a tmpfs (root); run by scripts/test"]
async fn a_full_spool_disk_refuses_retryably_and_resumes_when_space_is_back() {
    let fs = SmallFs::mount("3m");
    let spool = fs.path().join("spool");
    // something else takes most of the filesystem, and is removed later
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![0u8; 2 << 20]).expect("filler");
    let config = fs.path().join("agent.toml");
    // the spool's own limit is far above the filesystem: the disk fills first
    std::fs::write(
        &config,
        "[kafka]\ndelivery_timeout_ms = 500\n\n[spool]\nmax_bytes = 1073741824\n",
    )
    .unwrap();
    let closed = free_port().to_string();
    let brokers = format!("127.0.0.1:{closed}");
    let config_arg = config.to_string_lossy().into_owned();
    let args = [
        "--kafka-brokers",
        brokers.as_str(),
        "--kafka-topic",
        "agent-disk-full",
        "--config",
        config_arg.as_str(),
    ];
    let mut agent = Agent::start(&spool, &args);

    let mut acked = 0u64;
    let mut refused = 0u64;
    for _ in 0..200 {
        let resp = post(&agent, heavy_request()).await;
        match resp.status().as_u16() {
            200 => acked += 1,
            503 => {
                assert!(
                    resp.headers().contains_key("retry-after"),
                    "a full disk is a retryable answer"
                );
                let body = resp.text().await.unwrap();
                assert!(
                    body.contains("spool") && body.contains("No space left on device"),
                    "the answer says what happened: {body}"
                );
                refused += 1;
                break;
            }
            other => panic!("unexpected answer {other}: {}", resp.text().await.unwrap()),
        }
    }
    assert!(acked > 0 && refused > 0, "acked {acked}, refused {refused}");
    assert!(
        agent.metric("clew_agent_spool_errors_total", &[]).await >= 1.0,
        "the failed append is counted"
    );
    let health = reqwest::get(format!("http://{}/healthz", agent.metrics))
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        200,
        "the agent is not broken: it resumes on its own"
    );

    // space is back: the same agent spools again
    std::fs::remove_file(&filler).unwrap();
    for _ in 0..3 {
        let resp = post(&agent, heavy_request()).await;
        assert_eq!(resp.status(), 200, "spooling resumes once space is back");
        acked += 1;
    }
    let pending = agent.metric("clew_agent_spool_records", &[]).await;
    assert_eq!(
        pending, acked as f64,
        "every acknowledged record is in the spool"
    );
    assert!(agent.terminate().success());

    // a restart finds exactly those records, and no torn frame from the failed writes
    let agent = Agent::start(&spool, &args);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pending = agent.metric("clew_agent_spool_records", &[]).await;
        if pending == acked as f64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "restarted agent reports {pending} spooled records, {acked} were acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        agent.metric("clew_agent_spool_corrupt_total", &[]).await,
        0.0
    );
}
