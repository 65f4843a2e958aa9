//! What a newcomer sees when `clew serve` cannot start, from the real binary: each error
//! names the path or address and the likely cause, says each cause once, leaves no data
//! directory behind that this run created, and logs without colour codes into a file.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Clew;

/// Runs `clew serve` on `data_dir` with free ports (except what `extra` overrides) until it
/// exits; panics if it is still running after 60 s.
fn serve_fails(data_dir: &Path, extra: &[&str]) -> (Output, String) {
    let mut args = vec![
        "serve".to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
    ];
    args.extend(
        common::ephemeral_listeners(extra)
            .into_iter()
            .map(str::to_string),
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_clew"))
        .args(&args)
        .env_remove("CLEW_CONFIG")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn clew");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("clew serve {args:?} was expected to fail but kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("output");
    assert!(
        !output.status.success(),
        "clew serve {args:?} should have failed"
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    eprintln!("--- stderr of clew serve {args:?}\n{stderr}---");
    (output, stderr)
}

/// The one `error: …` line the binary prints when it gives up.
fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no `error: ` line in {stderr:?}"))
}

#[test]
fn a_second_serve_on_the_same_data_dir_names_the_directory_and_the_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let _first = Clew::start_in(&dir, &[]);
    let dir = dir.canonicalize().unwrap();
    let (_, stderr) = serve_fails(&dir, &[]);
    let line = error_line(&stderr);
    let expected = format!(
        "data directory {} is in use by another clew process (lock held on {}); stop it or pass another --data-dir",
        dir.display(),
        dir.join("spans").join("lock").display()
    );
    assert!(line.contains(&expected), "{line:?} lacks {expected:?}");
    assert!(!line.contains("FjallError"), "{line}");
    assert!(
        dir.join("spans").is_dir(),
        "the running store's directory is untouched"
    );
}

#[test]
fn a_span_store_directory_that_cannot_be_created_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    // `spans` is taken by a file: creating the store's directory fails (as root too,
    // where a read-only directory would not stop anything)
    std::fs::write(dir.join("spans"), b"not a directory").unwrap();
    let (_, stderr) = serve_fails(&dir, &[]);
    let line = error_line(&stderr);
    let spans = dir.canonicalize().unwrap().join("spans");
    let expected = format!(
        "failed to create span store directory: {}: ",
        spans.display()
    );
    assert!(line.contains(&expected), "{line:?} lacks {expected:?}");
    assert!(dir.is_dir(), "a data directory that existed before is kept");
}

#[cfg(unix)]
#[test]
fn permission_denied_names_the_path() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::create_dir(dir.join("probe")).is_ok() {
        eprintln!(
            "running as root: permissions do not apply, the file case above covers the message"
        );
        return;
    }
    let (_, stderr) = serve_fails(&dir, &[]);
    let line = error_line(&stderr);
    let spans = dir.canonicalize().unwrap().join("spans");
    assert!(
        line.contains(&format!(
            "failed to create span store directory: {}: Permission denied",
            spans.display()
        )),
        "{line}"
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_taken_port_is_reported_once_and_a_new_data_dir_is_removed_again() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new").join("data");
    let (output, stderr) = serve_fails(&dir, &["--otlp-grpc-addr", &addr]);
    let line = error_line(&stderr);
    assert!(line.contains(&addr), "{line}");
    assert_eq!(
        line.matches("already in use").count(),
        1,
        "the cause appears once: {line}"
    );
    assert!(!stderr.contains("Caused by"), "{stderr}");
    assert!(
        !tmp.path().join("new").exists(),
        "the directories this failed start created are gone"
    );
    assert!(tmp.path().is_dir(), "what existed before is kept");
    // logs that go to a file or a pipe carry no colour codes
    assert!(!stderr.contains('\u{1b}'), "ANSI escape in {stderr:?}");
    assert!(output.stdout.is_empty() || !output.stdout.contains(&0x1b));
}

#[test]
fn a_failed_start_in_an_existing_data_dir_keeps_it_and_its_contents() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
    serve_fails(&dir, &["--http-addr", &addr]);
    assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), b"mine");
    assert!(
        dir.join("spans").is_dir(),
        "a store opened in a pre-existing directory stays"
    );
}

#[test]
fn server_logs_into_a_file_have_no_colour_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("clew.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_clew"))
        .args(["serve", "--data-dir"])
        .arg(tmp.path().join("data"))
        .args(common::ephemeral_listeners(&[]))
        .env_remove("CLEW_CONFIG")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn clew");
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("clew is serving") {
            break text;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("clew did not log that it is serving: {text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("INFO"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape in the log file: {text:?}"
    );
}
