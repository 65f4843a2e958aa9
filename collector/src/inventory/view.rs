//! Reading the inventory: `GET /api/v1/inventory` and the `clew_inventory_*` gauges.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::{Instance, InventoryConfig};

/// An instance quiet longer than this no longer counts in `clew_inventory_quiet_instances`
/// (it went quiet more than an hour ago: its alert has had its time).
const QUIET_WINDOW_MS: u64 = 3_600_000;

/// A copy of the inventory at one moment.
#[derive(Default)]
pub struct Snapshot {
    pub instances: Vec<Instance>,
    /// Distinct instances left out because the inventory was full.
    pub left_out: u64,
    /// More were left out than could be counted exactly (`left_out` is a lower bound).
    pub left_out_saturated: bool,
    pub left_out_spans: u64,
}

/// The filters of `GET /api/v1/inventory`; every one given must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InventoryFilter {
    /// Exact service name.
    pub service: Option<String>,
    /// `telemetry.sdk.language` or `telemetry.sdk.name` (case-insensitive), optionally
    /// `@version` for one SDK version (`python@1.45.2`).
    pub sdk: Option<String>,
    /// Exact `service.version`.
    pub version: Option<String>,
    /// Only instances whose last span is at least this old.
    pub quiet_for_ms: Option<u64>,
}

impl InventoryFilter {
    fn matches(&self, i: &Instance, now_ms: u64) -> bool {
        if self.service.as_ref().is_some_and(|s| *s != i.service) {
            return false;
        }
        if self
            .version
            .as_ref()
            .is_some_and(|v| i.service_version.as_ref() != Some(v))
        {
            return false;
        }
        if let Some(sdk) = &self.sdk {
            let (which, version) = match sdk.split_once('@') {
                Some((w, v)) => (w, Some(v)),
                None => (sdk.as_str(), None),
            };
            let named = [&i.sdk_language, &i.sdk_name]
                .into_iter()
                .flatten()
                .any(|n| n.eq_ignore_ascii_case(which));
            if !named || version.is_some_and(|v| i.sdk_version.as_deref() != Some(v)) {
                return false;
            }
        }
        if let Some(quiet) = self.quiet_for_ms {
            if now_ms.saturating_sub(i.last_seen_ms) < quiet {
                return false;
            }
        }
        true
    }
}

/// The answer of `GET /api/v1/inventory`.
#[derive(Debug, Serialize)]
pub struct Answer {
    pub enabled: bool,
    pub now_ms: u64,
    pub quiet_after_secs: u64,
    pub max_instances: usize,
    /// Instances kept (all of them, not only those matching the filters).
    pub instances_kept: usize,
    pub instances_left_out: u64,
    /// `instances_left_out` is a lower bound.
    pub instances_left_out_saturated: bool,
    pub spans_left_out: u64,
    /// The newest version seen of each SDK (language + name), over every instance.
    pub newest_sdk_versions: Vec<SdkVersion>,
    /// Services with at least one matching instance, by name.
    pub services: Vec<Service>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct SdkVersion {
    pub sdk_language: Option<String>,
    pub sdk_name: Option<String>,
    pub version: String,
}

#[derive(Debug, Serialize)]
pub struct Service {
    pub service: String,
    /// Distinct `service.version`s of its matching instances, newest first.
    pub service_versions: Vec<String>,
    pub last_seen_ms: u64,
    pub spans_per_minute: u64,
    pub quiet_instances: usize,
    /// Its matching instances, most recently seen first.
    pub instances: Vec<InstanceView>,
}

#[derive(Debug, Serialize)]
pub struct InstanceView {
    #[serde(flatten)]
    pub instance: Instance,
    pub spans_per_minute: u64,
    /// No span for `quiet_after_secs`.
    pub quiet: bool,
    /// An older version of its SDK than the newest seen (`newest_sdk_versions`).
    pub sdk_outdated: bool,
}

/// Builds the answer from a snapshot.
pub fn answer(
    snapshot: Snapshot,
    filter: &InventoryFilter,
    config: &InventoryConfig,
    now_ms: u64,
) -> Answer {
    let quiet_ms = config.quiet_after_secs * 1000;
    let newest = newest_sdk_versions(&snapshot.instances);
    let instances_kept = snapshot.instances.len();
    let mut by_service: BTreeMap<String, Vec<InstanceView>> = BTreeMap::new();
    for instance in snapshot.instances {
        if !filter.matches(&instance, now_ms) {
            continue;
        }
        let sdk_outdated = match (&instance.sdk_version, newest.get(&sdk_of(&instance))) {
            (Some(v), Some(newest)) => compare_versions(v, newest) == Ordering::Less,
            _ => false,
        };
        let view = InstanceView {
            spans_per_minute: instance.spans_per_minute(now_ms),
            quiet: now_ms.saturating_sub(instance.last_seen_ms) >= quiet_ms,
            sdk_outdated,
            instance,
        };
        by_service
            .entry(view.instance.service.clone())
            .or_default()
            .push(view);
    }
    let services = by_service
        .into_iter()
        .map(|(service, mut instances)| {
            instances.sort_by(|a, b| {
                b.instance
                    .last_seen_ms
                    .cmp(&a.instance.last_seen_ms)
                    .then_with(|| a.instance.instance.cmp(&b.instance.instance))
            });
            let mut versions: Vec<String> = instances
                .iter()
                .filter_map(|i| i.instance.service_version.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            versions.sort_by(|a, b| compare_versions(b, a));
            Service {
                service,
                service_versions: versions,
                last_seen_ms: instances
                    .iter()
                    .map(|i| i.instance.last_seen_ms)
                    .max()
                    .unwrap_or(0),
                spans_per_minute: instances.iter().map(|i| i.spans_per_minute).sum(),
                quiet_instances: instances.iter().filter(|i| i.quiet).count(),
                instances,
            }
        })
        .collect();
    let mut newest_sdk_versions: Vec<SdkVersion> = newest
        .into_iter()
        .map(|((sdk_language, sdk_name), version)| SdkVersion {
            sdk_language,
            sdk_name,
            version,
        })
        .collect();
    newest_sdk_versions
        .sort_by(|a, b| (&a.sdk_language, &a.sdk_name).cmp(&(&b.sdk_language, &b.sdk_name)));
    Answer {
        enabled: true,
        now_ms,
        quiet_after_secs: config.quiet_after_secs,
        max_instances: config.max_instances,
        instances_kept,
        instances_left_out: snapshot.left_out,
        instances_left_out_saturated: snapshot.left_out_saturated,
        spans_left_out: snapshot.left_out_spans,
        newest_sdk_versions,
        services,
    }
}

type SdkKey = (Option<String>, Option<String>);

fn sdk_of(i: &Instance) -> SdkKey {
    (i.sdk_language.clone(), i.sdk_name.clone())
}

fn newest_sdk_versions(instances: &[Instance]) -> HashMap<SdkKey, String> {
    let mut newest: HashMap<SdkKey, String> = HashMap::new();
    for i in instances {
        let Some(version) = &i.sdk_version else {
            continue;
        };
        newest
            .entry(sdk_of(i))
            .and_modify(|n| {
                if compare_versions(version, n) == Ordering::Greater {
                    n.clone_from(version);
                }
            })
            .or_insert_with(|| version.clone());
    }
    newest
}

/// Orders versions the way people read them: numeric parts as numbers (`1.10.0` >
/// `1.9.3`), a pre-release below its release (`1.2.0-rc1` < `1.2.0`), anything else as
/// text.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (Vec<&str>, Option<&str>) {
        let v = v.strip_prefix('v').unwrap_or(v);
        let (release, pre) = match v.split_once(['-', '+']) {
            Some((r, p)) => (r, Some(p)),
            None => (v, None),
        };
        (release.split('.').collect(), pre)
    }
    fn part(a: &str, b: &str) -> Ordering {
        match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.cmp(b),
        }
    }
    let ((ra, pa), (rb, pb)) = (split(a), split(b));
    for i in 0..ra.len().max(rb.len()) {
        let o = part(ra.get(i).unwrap_or(&"0"), rb.get(i).unwrap_or(&"0"));
        if o != Ordering::Equal {
            return o;
        }
    }
    match (pa, pb) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => part(x, y),
    }
}

/// The `clew_inventory_*` gauges, with the label sets set last time (a set that is gone
/// is set to 0, so a dashboard sees it drop instead of freezing). Each set has the
/// tenant's `tenant` label where tenants are labelled (`None`: no such label).
#[derive(Default)]
pub struct Gauges {
    instances: BTreeSet<(Option<String>, String, String, String)>,
    quiet: BTreeSet<(Option<String>, String)>,
    left_out: BTreeSet<Option<String>>,
}

/// Active instances per service and SDK version.
pub const INSTANCES: &str = "clew_inventory_instances";
/// Instances that went quiet within the last hour, per service.
pub const QUIET_INSTANCES: &str = "clew_inventory_quiet_instances";
/// Instances left out because the inventory was full.
pub const LEFT_OUT: &str = "clew_inventory_left_out_instances";

pub fn describe() {
    metrics::describe_gauge!(
        INSTANCES,
        "instances that sent spans within [inventory] quiet_after_secs, by service and SDK"
    );
    metrics::describe_gauge!(
        QUIET_INSTANCES,
        "instances silent for [inventory] quiet_after_secs whose last span is less than an hour old, by service"
    );
    metrics::describe_gauge!(
        LEFT_OUT,
        "distinct instances not kept because the inventory holds max_instances"
    );
}

impl Gauges {
    /// Sets the gauges from each tenant's snapshot (`None`: unlabelled, the one tenant of
    /// a clew without tenants).
    pub fn set(
        &mut self,
        snapshots: &[(Option<String>, Snapshot)],
        now_ms: u64,
        config: &InventoryConfig,
    ) {
        let quiet_ms = config.quiet_after_secs * 1000;
        let mut active: BTreeMap<(Option<String>, String, String, String), u64> = BTreeMap::new();
        let mut quiet: BTreeMap<(Option<String>, String), u64> = BTreeMap::new();
        let mut left_out: BTreeMap<Option<String>, u64> = BTreeMap::new();
        for (tenant, snapshot) in snapshots {
            for i in &snapshot.instances {
                let silent = now_ms.saturating_sub(i.last_seen_ms);
                if silent < quiet_ms {
                    let key = (
                        tenant.clone(),
                        i.service.clone(),
                        i.sdk_language.clone().unwrap_or_default(),
                        i.sdk_version.clone().unwrap_or_default(),
                    );
                    *active.entry(key).or_default() += 1;
                } else if silent < QUIET_WINDOW_MS.max(quiet_ms + 60_000) {
                    *quiet
                        .entry((tenant.clone(), i.service.clone()))
                        .or_default() += 1;
                }
            }
            left_out.insert(tenant.clone(), snapshot.left_out);
        }
        for gone in self.instances.iter().filter(|k| !active.contains_key(*k)) {
            instances_gauge(gone).set(0.0);
        }
        for (key, n) in &active {
            instances_gauge(key).set(*n as f64);
        }
        self.instances = active.into_keys().collect();
        for gone in self.quiet.iter().filter(|s| !quiet.contains_key(*s)) {
            quiet_gauge(gone).set(0.0);
        }
        for (key, n) in &quiet {
            quiet_gauge(key).set(*n as f64);
        }
        self.quiet = quiet.into_keys().collect();
        for gone in self.left_out.iter().filter(|t| !left_out.contains_key(*t)) {
            left_out_gauge(gone).set(0.0);
        }
        for (tenant, n) in &left_out {
            left_out_gauge(tenant).set(*n as f64);
        }
        self.left_out = left_out.into_keys().collect();
    }
}

fn instances_gauge(
    (tenant, service, language, version): &(Option<String>, String, String, String),
) -> metrics::Gauge {
    let mut labels = vec![
        ("service", service.clone()),
        ("sdk_language", language.clone()),
        ("sdk_version", version.clone()),
    ];
    if let Some(t) = tenant {
        labels.push(("tenant", t.clone()));
    }
    metrics::gauge!(INSTANCES, &labels)
}

fn quiet_gauge((tenant, service): &(Option<String>, String)) -> metrics::Gauge {
    let mut labels = vec![("service", service.clone())];
    if let Some(t) = tenant {
        labels.push(("tenant", t.clone()));
    }
    metrics::gauge!(QUIET_INSTANCES, &labels)
}

fn left_out_gauge(tenant: &Option<String>) -> metrics::Gauge {
    match tenant {
        None => metrics::gauge!(LEFT_OUT),
        Some(t) => metrics::gauge!(LEFT_OUT, "tenant" => t.clone()),
    }
}
