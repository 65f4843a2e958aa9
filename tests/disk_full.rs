//! The data directory's filesystem fills up (`docs/robustness.md`, machine failures): clew
//! answers retryable errors while the disk is full, then — once the embedded store refuses
//! every write since the failed one — exits non-zero naming the cause and the path, so a
//! supervisor restarts it; after space is back the restarted clew serves every span it
//! acknowledged and takes new ones.
//!
//! Needs a real small filesystem: a 12 MiB tmpfs mounted for the test (root, or
//! CAP_SYS_ADMIN). `#[ignore]`d; `scripts/test` runs it.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::small_fs::SmallFs;
use common::*;
use prost::Message;

/// One trace of 50 spans with ~1 KiB of attribute each: the filesystem fills in a few
/// hundred requests.
fn heavy_request(trace: [u8; 16]) -> Vec<u8> {
    blob_request("disk-full", trace, 50, 16)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "mounts a tmpfs (root); run by scripts/test"]
async fn a_full_disk_stops_clew_for_a_restart_that_loses_nothing_acknowledged() {
    let fs = SmallFs::mount("12m");
    let data: PathBuf = fs.path().join("data");
    // Something else on the filesystem takes half of it, and is removed later.
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![0u8; 6 << 20]).expect("filler");
    let log = std::env::temp_dir().join(format!("clew-disk-full-{}.log", std::process::id()));
    let log_file = std::fs::File::create(&log).expect("log file");
    let mut clew = Clew::start_logging_to(&data, &[], Stdio::from(log_file));

    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    let mut refused = 0;
    let mut statuses = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let trace = random_trace_id();
        let sent = client
            .post(clew.otlp_http_url())
            .header("content-type", "application/x-protobuf")
            .body(heavy_request(trace))
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status() == 200 => acked.push(trace),
            Ok(resp) => {
                statuses.insert(resp.status().as_u16());
                assert!(
                    resp.headers().contains_key("retry-after"),
                    "a full disk is a retryable answer"
                );
                refused += 1;
            }
            Err(_) => break, // clew has exited
        }
        if refused > 0 && clew.wait_exit(Duration::from_millis(1)).is_some() {
            break;
        }
    }
    assert!(
        !acked.is_empty() && refused > 0,
        "acked {} refused {refused}",
        acked.len()
    );
    assert_eq!(statuses.into_iter().collect::<Vec<_>>(), vec![503]);
    let status = clew
        .wait_exit(Duration::from_secs(30))
        .expect("clew exits once its store refuses every write");
    assert!(!status.success(), "exit status {status}");
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: the span store in") && last.contains(&data.display().to_string()),
        "the last line names the cause and the path: {last}"
    );
    drop(clew);

    // Space is back: the restarted clew has every acknowledged span and takes new ones.
    std::fs::remove_file(&filler).unwrap();
    let clew = Clew::start_in(&data, &[]);
    for trace in &acked {
        let (status, body) = clew
            .get(&format!("/api/v1/traces/{}", hex::encode(trace)))
            .await;
        assert_eq!(
            status,
            200,
            "acknowledged trace {} lost",
            hex::encode(trace)
        );
        assert_eq!(
            span_ids(&body).len(),
            50,
            "trace {} incomplete",
            hex::encode(trace)
        );
    }
    let (h, _) = clew.get("/healthz").await;
    assert_eq!(h, 200);
    let resp = client
        .post(clew.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .body(
            request(
                "disk-full",
                vec![otlp_span(random_trace_id(), 1, None, "after", vec![])],
            )
            .encode_to_vec(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = std::fs::remove_file(&log);
}
