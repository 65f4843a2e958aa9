//! What `clew serve` and `clew agent` do about authentication before and while they
//! listen: refuse a non-loopback address without `[auth]` (unless `--insecure-listen`),
//! and re-read the `[auth]` tokens when the config file changes.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clew_auth::Authenticator;
use clew_collector::file_watch::FileWatch;
use tracing::{error, info, warn};

/// How often the config file is looked at for changed tokens.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Without authentication, every listener must be on a loopback address, unless the user
/// said `--insecure-listen`. `listeners`: (what, configured address).
pub fn check_exposure(
    listeners: &[(&str, &str)],
    auth_enabled: bool,
    insecure_listen: bool,
) -> Result<()> {
    if auth_enabled {
        return Ok(());
    }
    let exposed: Vec<String> = listeners
        .iter()
        .filter(|(_, addr)| !is_loopback(addr))
        .map(|(what, addr)| format!("{what} on {addr}"))
        .collect();
    if exposed.is_empty() {
        return Ok(());
    }
    if insecure_listen {
        warn!(listeners = %exposed.join(", "), "--insecure-listen: listening beyond loopback without authentication; anyone who can reach these ports can send and read traces");
        return Ok(());
    }
    bail!(
        "refusing to listen without authentication on a non-loopback address: {}; configure bearer tokens in [auth] (see docs/auth.md), bind 127.0.0.1, or pass --insecure-listen if the network itself is trusted",
        exposed.join(", ")
    )
}

/// Whether `addr` (`ip:port`, or `localhost:port`) only accepts connections from this
/// machine. Anything that does not parse counts as exposed.
fn is_loopback(addr: &str) -> bool {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return a.ip().is_loopback()
            || matches!(a.ip(), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()));
    }
    addr.rsplit_once(':')
        .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost"))
}

/// Re-reads the `[auth]` section of `file` whenever it changes, until `stop`: a removed
/// entry is revoked within [`RELOAD_INTERVAL`]; a file that cannot be read, parsed or
/// validated keeps the tokens in force (logged and counted).
pub async fn reload_loop(
    auth: Arc<Authenticator>,
    file: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut watch = FileWatch::new(file);
    let mut tick = tokio::time::interval(RELOAD_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if !watch.changed() {
            continue;
        }
        let file = watch.path().display().to_string();
        let read = tokio::fs::read_to_string(watch.path())
            .await
            .map_err(|e| e.to_string())
            .and_then(|text| clew_auth::parse_auth_section(&text).map_err(|e| e.to_string()));
        let outcome = read.and_then(|config| auth.replace(&config).map_err(|e| e.to_string()));
        match outcome {
            Ok(tokens) => {
                info!(%file, tokens, "[auth] tokens re-read");
                clew_auth::metrics::reload("ok");
            }
            Err(error) => {
                error!(%file, %error, "failed to re-read the [auth] tokens; the tokens in force stay");
                clew_auth::metrics::reload("error");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses() {
        for ok in [
            "127.0.0.1:4317",
            "127.0.0.2:1",
            "[::1]:4317",
            "localhost:80",
        ] {
            assert!(is_loopback(ok), "{ok}");
        }
        for exposed in [
            "0.0.0.0:4317",
            "[::]:4317",
            "10.0.0.1:1",
            "example.com:1",
            "junk",
        ] {
            assert!(!is_loopback(exposed), "{exposed}");
        }
    }

    #[test]
    fn exposure_needs_auth_or_the_flag() {
        let listeners = [
            ("OTLP gRPC", "0.0.0.0:4317"),
            ("query API", "127.0.0.1:16686"),
        ];
        let err = check_exposure(&listeners, false, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("OTLP gRPC on 0.0.0.0:4317"), "{err}");
        assert!(!err.contains("16686"), "{err}");
        assert!(err.contains("--insecure-listen"), "{err}");
        check_exposure(&listeners, true, false).unwrap();
        check_exposure(&listeners, false, true).unwrap();
        check_exposure(&listeners[1..], false, false).unwrap();
    }
}
