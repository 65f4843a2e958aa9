//! A gzip bomb is refused while decompressing, with memory staying near the limit
//! (`docs/robustness.md` input 2). Own test binary: it counts every allocation of the process.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bomb_is_refused_with_bounded_memory() {
    const LIMIT: usize = 1024 * 1024;
    const EXPANDED: usize = 256 * 1024 * 1024;
    let bomb = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..EXPANDED / zeros.len() {
            enc.write_all(&zeros).unwrap();
        }
        enc.finish().unwrap()
    };
    assert!(
        bomb.len() < LIMIT,
        "the compressed bomb itself fits the limit"
    );
    let h = start(clew_collector::CollectorConfig {
        max_request_bytes: LIMIT,
        ..test_config()
    })
    .await;
    let client = reqwest::Client::new();
    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let resp = client
        .post(h.http_url())
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
    let grown = PEAK.load(Ordering::Relaxed).saturating_sub(baseline);
    // body copy + output capped at the limit + decoder state; nowhere near 256 MiB
    assert!(grown < 8 * LIMIT, "peak allocation grew by {grown} bytes");
    assert_eq!(h.store.len(), 0);
    h.collector.shutdown().await.unwrap();
}
