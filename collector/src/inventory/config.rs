//! `[inventory]`: the fleet inventory kept from the resources of ingested spans.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `[inventory]` section.
///
/// ```toml
/// [inventory]
/// enabled = true
/// max_instances = 10000       # instances kept per tenant; more are counted, not kept
/// quiet_after_secs = 600      # an instance silent this long is "quiet"
/// refresh_secs = 5            # how often one instance's details are read again
/// persist_interval_secs = 30  # how often the inventory is saved in the span store
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    pub enabled: bool,
    /// Most instances kept per tenant (across services). An instance first seen once its
    /// tenant's inventory is full is left out and counted (`instances_left_out`, with its
    /// spans).
    pub max_instances: usize,
    /// An instance whose last span is older than this is marked quiet.
    pub quiet_after_secs: u64,
    /// An instance's versions, SDK and agent are read again at most this often; in
    /// between, its spans only bump counters.
    pub refresh_secs: u64,
    /// How often the inventory is written to the span store (and at shutdown).
    pub persist_interval_secs: u64,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            enabled: true,
            max_instances: 10_000,
            quiet_after_secs: 600,
            refresh_secs: 5,
            persist_interval_secs: 30,
        }
    }
}

impl InventoryConfig {
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, key: &'static str, message: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::Config {
                    key,
                    message: message.into(),
                })
            }
        };
        check(
            (1..=1_000_000).contains(&self.max_instances),
            "inventory.max_instances",
            "must be between 1 and 1000000",
        )?;
        check(
            self.quiet_after_secs >= 1,
            "inventory.quiet_after_secs",
            "must be at least 1",
        )?;
        check(
            self.refresh_secs >= 1,
            "inventory.refresh_secs",
            "must be at least 1",
        )?;
        check(
            (1..=3600).contains(&self.persist_interval_secs),
            "inventory.persist_interval_secs",
            "must be between 1 and 3600",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_their_key() {
        InventoryConfig::default().validate().unwrap();
        for (c, key) in [
            (
                InventoryConfig {
                    max_instances: 0,
                    ..Default::default()
                },
                "inventory.max_instances",
            ),
            (
                InventoryConfig {
                    quiet_after_secs: 0,
                    ..Default::default()
                },
                "inventory.quiet_after_secs",
            ),
            (
                InventoryConfig {
                    persist_interval_secs: 0,
                    ..Default::default()
                },
                "inventory.persist_interval_secs",
            ),
        ] {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
