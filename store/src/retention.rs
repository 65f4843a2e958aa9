//! Retention classes (`docs/adr/0011-tenants.md`, "Retention classes, not retention per
//! tenant"): every tenant keeps its data for the global `retention_days` unless its
//! `[[collector.tenants]]` entry names another `retention_days`; tenants with the same
//! value share a class, and each backend partitions by class (fjall buckets, tantivy
//! partitions, OpenSearch indices) or sets the class's TTL on each write (HBase).
//!
//! A class is named by its number of days, so a bucket written in one class keeps its
//! horizon whatever the configuration says after a restart; only the default class (the
//! buckets of before classes, and every tenant with the global value) follows the global
//! `retention_days` as it is configured at the time retention runs.

use std::collections::BTreeMap;

use clew_proto::Tenant;

use crate::trace_index::days::{day_of, DAY_NANOS};

/// The class a tenant's data is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RetentionClass {
    /// The global `retention_days`: the names of before classes (`day-<N>`,
    /// `YYYY-MM-DD`, `<prefix>-YYYY.MM.DD`).
    Default,
    /// A class of this many days (never the global value, never 0).
    Days(u32),
}

impl RetentionClass {
    /// Days its data is kept, `default_days` being the global `retention_days`.
    pub fn days(self, default_days: u32) -> u32 {
        match self {
            RetentionClass::Default => default_days,
            RetentionClass::Days(d) => d,
        }
    }

    /// The suffix backends add to a partition name: empty for the default class,
    /// `r<days>` (without separator) otherwise.
    pub fn tag(self) -> Option<String> {
        match self {
            RetentionClass::Default => None,
            RetentionClass::Days(d) => Some(format!("r{d}")),
        }
    }

    /// The class of a tag written by [`RetentionClass::tag`] (`r30` → `Days(30)`); `None`
    /// for anything else (`r0`, `r030`, `x`).
    pub fn parse_tag(tag: &str) -> Option<RetentionClass> {
        let digits = tag.strip_prefix('r')?;
        if digits.is_empty()
            || digits.starts_with('0')
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        digits.parse().ok().map(RetentionClass::Days)
    }
}

/// Which tenant keeps its data how long: the global `retention_days` and the tenants
/// configured otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionClasses {
    default_days: u32,
    /// Only tenants whose days differ from `default_days`.
    tenants: BTreeMap<Tenant, u32>,
}

impl RetentionClasses {
    /// Every tenant keeps its data `days` days.
    pub fn uniform(days: u32) -> RetentionClasses {
        RetentionClasses {
            default_days: days,
            tenants: BTreeMap::new(),
        }
    }

    /// `default_days` for every tenant but those listed (a tenant listed with
    /// `default_days` is in the default class).
    pub fn new(
        default_days: u32,
        tenants: impl IntoIterator<Item = (Tenant, u32)>,
    ) -> RetentionClasses {
        RetentionClasses {
            default_days,
            tenants: tenants
                .into_iter()
                .filter(|(_, d)| *d != default_days)
                .collect(),
        }
    }

    /// The global `retention_days`.
    pub fn default_days(&self) -> u32 {
        self.default_days
    }

    /// The class `tenant` writes in now.
    pub fn class_of(&self, tenant: &Tenant) -> RetentionClass {
        match self.tenants.get(tenant) {
            Some(&d) => RetentionClass::Days(d),
            None => RetentionClass::Default,
        }
    }

    /// Days `tenant`'s data is kept.
    pub fn days_of(&self, tenant: &Tenant) -> u32 {
        self.class_of(tenant).days(self.default_days)
    }

    /// Days the data of `class` is kept (a class no longer configured keeps its own days).
    pub fn days(&self, class: RetentionClass) -> u32 {
        class.days(self.default_days)
    }

    /// The first UTC day (days since the unix epoch) whose data of `class` is still kept
    /// at `now_unix_nano`: a day expires once all of it lies more than the class's
    /// retention before now. The one horizon of every backend that drops by day.
    pub fn first_kept_day(&self, class: RetentionClass, now_unix_nano: u64) -> u32 {
        let days = u64::from(self.days(class));
        day_of(now_unix_nano.saturating_sub(days * DAY_NANOS))
    }

    /// The longest retention of any class (HBase's column family TTL).
    pub fn longest_days(&self) -> u32 {
        self.tenants
            .values()
            .copied()
            .chain([self.default_days])
            .max()
            .unwrap_or(self.default_days)
    }

    /// The classes in force: the default one first, then by days, each with its tenants
    /// (none listed for the default class: it holds every tenant not listed elsewhere).
    pub fn classes(&self) -> Vec<(RetentionClass, u32, Vec<Tenant>)> {
        let mut by_days: BTreeMap<u32, Vec<Tenant>> = BTreeMap::new();
        for (tenant, &days) in &self.tenants {
            by_days.entry(days).or_default().push(tenant.clone());
        }
        std::iter::once((RetentionClass::Default, self.default_days, Vec::new()))
            .chain(
                by_days
                    .into_iter()
                    .map(|(days, tenants)| (RetentionClass::Days(days), days, tenants)),
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_share_classes_by_their_days() {
        let t = |n: &str| Tenant::parse(n).unwrap();
        let c = RetentionClasses::new(7, [(t("a"), 30), (t("b"), 30), (t("c"), 7), (t("d"), 1)]);
        assert_eq!(c.class_of(&t("a")), RetentionClass::Days(30));
        assert_eq!(
            c.class_of(&t("c")),
            RetentionClass::Default,
            "the global value"
        );
        assert_eq!(c.class_of(&Tenant::default()), RetentionClass::Default);
        assert_eq!(c.class_of(&t("unlisted")), RetentionClass::Default);
        assert_eq!(c.days_of(&t("d")), 1);
        assert_eq!(c.days_of(&t("unlisted")), 7);
        assert_eq!(c.longest_days(), 30);
        assert_eq!(RetentionClasses::uniform(3).longest_days(), 3);
        let classes: Vec<_> = c
            .classes()
            .into_iter()
            .map(|(k, d, t)| (k, d, t.len()))
            .collect();
        assert_eq!(
            classes,
            [
                (RetentionClass::Default, 7, 0),
                (RetentionClass::Days(1), 1, 1),
                (RetentionClass::Days(30), 30, 2)
            ]
        );
    }

    #[test]
    fn tags_round_trip() {
        assert_eq!(RetentionClass::Default.tag(), None);
        assert_eq!(RetentionClass::Days(30).tag().as_deref(), Some("r30"));
        assert_eq!(
            RetentionClass::parse_tag("r30"),
            Some(RetentionClass::Days(30))
        );
        for bad in ["r0", "r030", "r", "30", "rx", "r-1", "r99999999999"] {
            assert_eq!(RetentionClass::parse_tag(bad), None, "{bad}");
        }
    }
}
