//! A real Alertmanager (Debian's `prometheus-alertmanager`, installed by
//! `scripts/alertmanager-fetch`) as a plain child process on 127.0.0.1, with the config in
//! `tests/alertmanager/alertmanager.yml`, clustering off, its data in a temporary
//! directory; killed on drop. `CLEW_ALERTMANAGER` names another binary.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Alertmanager {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

use super::free_port;

impl Alertmanager {
    pub async fn start() -> Alertmanager {
        Alertmanager::start_on(free_port()).await
    }

    /// Starts Alertmanager on `port` and waits until `/-/ready` answers.
    pub async fn start_on(port: u16) -> Alertmanager {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = std::env::var("CLEW_ALERTMANAGER")
            .unwrap_or_else(|_| "prometheus-alertmanager".to_string());
        let config = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/alertmanager/alertmanager.yml"
        );
        let child = Command::new(&bin)
            .arg(format!("--config.file={config}"))
            .arg(format!("--storage.path={}", dir.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} ({e}); scripts/alertmanager-fetch installs it")
            });
        let mut am = Alertmanager {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/-/ready", am.url())).await {
                if r.status().is_success() {
                    return am;
                }
            }
            if let Ok(Some(status)) = am.child.try_wait() {
                panic!("alertmanager exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "alertmanager not ready within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The active alerts (API v2 `GET /api/v2/alerts`; resolved alerts are not listed).
    pub async fn alerts(&self) -> Vec<Value> {
        let url = format!("{}/api/v2/alerts?active=true", self.url());
        let body: Value = reqwest::get(url)
            .await
            .expect("alertmanager reachable")
            .json()
            .await
            .expect("alertmanager answers JSON");
        body.as_array().cloned().unwrap_or_default()
    }

    /// Active alerts whose labels include `label=value`.
    pub async fn alerts_with(&self, label: &str, value: &str) -> Vec<Value> {
        self.alerts()
            .await
            .into_iter()
            .filter(|a| a["labels"][label] == value)
            .collect()
    }

    /// Kills it (SIGKILL) and waits for the exit.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        self.stop();
    }
}
