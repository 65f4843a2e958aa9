//! The fleet inventory: which services and instances send spans, with which service
//! versions, SDKs, receivers and `clew agent`s, since when, and which went quiet — kept from
//! the resources of the spans clew stores.
//!
//! On the ingest path it costs one pass over the spans of an input at stage 6 (consecutive
//! spans of one resource share its `Arc`, so an input of a few resources is a few groups)
//! and, once the sink stored them, one short lock per group. An instance's details
//! (versions, SDK, agent) are read from its resource again at most every `refresh_secs`;
//! in between its spans only bump counters.
//!
//! - An **instance** is `service.instance.id` when the resource has one, else `host.name`
//!   (or `host.id`) with `process.pid`, else whatever of those it has; a resource with
//!   none of them is the service's one unnamed instance.
//! - **Per tenant** (`docs/adr/0011-tenants.md`): each tenant has its own instances (the
//!   same service and host in two tenants are two instances), its own `max_instances` and
//!   left-out counts, and `GET /api/v1/inventory` answers the caller's tenant's.
//! - **Bounded**: at most `max_instances` are kept per tenant; an instance first seen once
//!   its tenant's inventory is full is counted (distinct, up to ten times the cap or
//!   100,000) with its spans, not kept.
//! - **Persisted** as one gzip'd JSON blob in the span store ([`SpanStore::put_state`],
//!   the embedded store or HBase) every `persist_interval_secs` and at shutdown, read back
//!   at start; instances not seen within the retention are dropped.
//! - [`view`] answers `GET /api/v1/inventory` and sets the `clew_inventory_*` gauges, with
//!   a `tenant` label where tenants are labelled (as the span metrics); `/metrics` shows
//!   a token without `admin` its own tenant's.

pub mod config;
pub mod view;

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clew_proto::model::UNKNOWN_SERVICE;
use clew_proto::model::{any_value, find_attr, Resource};
use clew_proto::{RejectReason, Span, Tenant};
use clew_store::SpanStore;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

pub use config::InventoryConfig;
pub use view::InventoryFilter;

use crate::metrics::Protocol;

/// Kafka record header naming the `clew agent` that produced the record (its host name).
pub const AGENT_HEADER: &str = "clew-agent";
/// Kafka record header with that agent's version.
pub const AGENT_VERSION_HEADER: &str = "clew-agent-version";
/// The state blob's name in the span store.
const STATE_NAME: &str = "inventory";
/// How many distinct left-out instances are counted exactly: ten per kept one, and at
/// least this many (about 2 MB of hashes at most for the default cap).
const LEFT_OUT_TRACKED_MIN: usize = 100_000;
const LEFT_OUT_TRACKED_PER_KEPT: usize = 10;
/// Receivers remembered per instance.
const MAX_RECEIVERS: usize = 8;

/// Where an input came from, beyond its protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The Kafka topic of a record.
    pub topic: Option<Arc<str>>,
    /// The `clew agent` that shipped it (from the record's [`AGENT_HEADER`]s).
    pub agent: Option<Arc<AgentId>>,
}

/// A `clew agent`, as it names itself in the Kafka records it produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentId {
    pub name: String,
    pub version: String,
}

/// One instance of a service, as the inventory keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub service: String,
    /// `service.instance.id`, or `host.name/process.pid`, or `host.name`; `""` when the
    /// resource names none.
    pub instance: String,
    /// `service.instance.id`, when the resource has one.
    pub service_instance_id: Option<String>,
    pub host: Option<String>,
    pub pid: Option<i64>,
    pub service_version: Option<String>,
    pub sdk_name: Option<String>,
    pub sdk_language: Option<String>,
    pub sdk_version: Option<String>,
    pub distro_name: Option<String>,
    pub distro_version: Option<String>,
    pub runtime_name: Option<String>,
    pub runtime_version: Option<String>,
    /// `otlp_grpc`, `otlp_http`, `zipkin`, `kafka/<topic>`: every receiver its spans came
    /// through (at most 8).
    pub receivers: Vec<String>,
    /// The agent that shipped its spans last, when they came through one.
    pub agent: Option<AgentId>,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    pub spans_total: u64,
    #[serde(default)]
    rate: Rate,
    #[serde(skip)]
    refreshed_ms: u64,
}

/// Spans of the current and the previous minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Rate {
    /// Unix minute of `current`.
    minute: u64,
    current: u64,
    previous: u64,
}

impl Rate {
    fn add(&mut self, now_ms: u64, n: u64) {
        let minute = now_ms / 60_000;
        if minute != self.minute {
            self.previous = if minute == self.minute + 1 {
                self.current
            } else {
                0
            };
            self.current = 0;
            self.minute = minute;
        }
        self.current += n;
    }

    /// Spans in the last complete minute.
    fn per_minute(&self, now_ms: u64) -> u64 {
        match (now_ms / 60_000).checked_sub(self.minute) {
            Some(0) => self.previous,
            Some(1) => self.current,
            _ => 0,
        }
    }
}

impl Instance {
    /// Spans in the last complete minute.
    pub fn spans_per_minute(&self, now_ms: u64) -> u64 {
        self.rate.per_minute(now_ms)
    }
}

/// What identifies an instance, borrowed from its resource.
struct Identity<'a> {
    service: &'a str,
    instance_id: Option<&'a str>,
    host: Option<&'a str>,
    pid: Option<i64>,
}

impl<'a> Identity<'a> {
    fn of(resource: &'a Resource) -> Identity<'a> {
        let attrs = &resource.attributes;
        Identity {
            service: str_attr(attrs, "service.name")
                .filter(|s| !s.is_empty())
                .unwrap_or(UNKNOWN_SERVICE),
            instance_id: str_attr(attrs, "service.instance.id").filter(|s| !s.is_empty()),
            host: str_attr(attrs, "host.name")
                .or_else(|| str_attr(attrs, "host.id"))
                .filter(|s| !s.is_empty()),
            pid: find_attr(attrs, "process.pid").and_then(|v| match &v.value {
                Some(any_value::Value::IntValue(i)) => Some(*i),
                Some(any_value::Value::StringValue(s)) => s.parse().ok(),
                _ => None,
            }),
        }
    }

    fn key(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.service.hash(&mut h);
        match self.instance_id {
            Some(id) => (0u8, id).hash(&mut h),
            None => (1u8, self.host, self.pid).hash(&mut h),
        }
        h.finish()
    }

    fn label(&self) -> String {
        match (self.instance_id, self.host, self.pid) {
            (Some(id), _, _) => id.to_string(),
            (None, Some(host), Some(pid)) => format!("{host}/{pid}"),
            (None, Some(host), None) => host.to_string(),
            (None, None, Some(pid)) => format!("pid {pid}"),
            (None, None, None) => String::new(),
        }
    }
}

fn str_attr<'a>(attrs: &'a [clew_proto::model::KeyValue], key: &str) -> Option<&'a str> {
    match find_attr(attrs, key)?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn owned(attrs: &[clew_proto::model::KeyValue], key: &str) -> Option<String> {
    str_attr(attrs, key)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The receiver label of an input.
fn receiver_label(protocol: Protocol, origin: &Origin) -> String {
    match (protocol, &origin.topic) {
        (Protocol::Kafka, Some(topic)) => format!("kafka/{topic}"),
        _ => receiver_name(protocol).to_string(),
    }
}

fn receiver_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Grpc => "otlp_grpc",
        Protocol::Http => "otlp_http",
        Protocol::Zipkin => "zipkin",
        Protocol::Kafka => "kafka",
    }
}

/// Whether `label` is [`receiver_label`] of this input (without building it).
fn is_receiver(label: &str, protocol: Protocol, origin: &Origin) -> bool {
    match (protocol, &origin.topic) {
        (Protocol::Kafka, Some(topic)) => {
            label.strip_prefix("kafka/").is_some_and(|t| t == &**topic)
        }
        _ => label == receiver_name(protocol),
    }
}

/// The resource groups of one input (all of one tenant), noted at stage 6: consecutive
/// spans of one resource, as index ranges.
pub struct Noted(Vec<(Arc<Resource>, usize, usize)>, Tenant);

#[derive(Default)]
struct State {
    tenants: HashMap<Tenant, TenantState>,
    /// Changed since the last save.
    dirty: bool,
}

/// One tenant's inventory.
#[derive(Default)]
struct TenantState {
    instances: HashMap<u64, Instance>,
    /// Distinct instances left out because the tenant's inventory was full (up to a bound).
    left_out: HashSet<u64>,
    /// More instances were left out than `left_out` holds.
    left_out_saturated: bool,
    left_out_spans: u64,
}

/// The inventory; shared by the ingest front half (writes) and the query API (reads).
pub struct Inventory {
    config: InventoryConfig,
    /// Give the gauges a `tenant` label even while only `default` has instances (set when
    /// authentication is on).
    label_tenants: bool,
    state: Mutex<State>,
}

impl Inventory {
    /// `None` when `[inventory] enabled = false`.
    pub fn new(config: &InventoryConfig) -> Option<Inventory> {
        config.enabled.then(|| Inventory {
            config: config.clone(),
            label_tenants: false,
            state: Mutex::new(State::default()),
        })
    }

    /// Labels the `clew_inventory_*` gauges with their tenant from the start, `default`'s
    /// included (authentication is on); without it the label appears with the first
    /// instance of another tenant, as for the span metrics.
    pub fn label_tenants(mut self, on: bool) -> Self {
        self.label_tenants = on;
        self
    }

    pub fn config(&self) -> &InventoryConfig {
        &self.config
    }

    /// Stage 6: the resource groups of `spans`, one input's, all of `tenant` (no copy: one
    /// `Arc` per group).
    pub fn note(&self, tenant: &Tenant, spans: &[Span]) -> Noted {
        let mut groups: Vec<(Arc<Resource>, usize, usize)> = Vec::new();
        for (i, span) in spans.iter().enumerate() {
            match groups.last_mut() {
                Some((resource, _, end)) if Arc::ptr_eq(resource, &span.resource) => *end = i + 1,
                _ => groups.push((span.resource.clone(), i, i + 1)),
            }
        }
        Noted(groups, tenant.clone())
    }

    /// After the sink stored the spans (all but `rejected`, by index): counts them for
    /// their instances.
    pub fn record(
        &self,
        noted: Noted,
        rejected: &[(usize, RejectReason)],
        protocol: Protocol,
        origin: &Origin,
    ) {
        self.record_at(noted, rejected, protocol, origin, now_ms());
    }

    fn record_at(
        &self,
        noted: Noted,
        rejected: &[(usize, RejectReason)],
        protocol: Protocol,
        origin: &Origin,
        now_ms: u64,
    ) {
        let mut rejected: Vec<usize> = rejected.iter().map(|(i, _)| *i).collect();
        rejected.sort_unstable();
        let Noted(groups, tenant) = noted;
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        let mut changed = false;
        for (resource, start, end) in groups {
            let refused =
                rejected.partition_point(|i| *i < end) - rejected.partition_point(|i| *i < start);
            let stored = (end - start - refused) as u64;
            if stored == 0 {
                continue;
            }
            let tenant_state = state.tenants.entry(tenant.clone()).or_default();
            changed |= self.count(tenant_state, &resource, stored, protocol, origin, now_ms);
        }
        state.dirty |= changed;
    }

    /// Counts `spans` of `resource` in its tenant's state; `false` when they were only
    /// counted as left out.
    fn count(
        &self,
        state: &mut TenantState,
        resource: &Resource,
        spans: u64,
        protocol: Protocol,
        origin: &Origin,
        now_ms: u64,
    ) -> bool {
        let id = Identity::of(resource);
        let key = id.key();
        let full = state.instances.len() >= self.config.max_instances;
        let refresh_ms = self.config.refresh_secs * 1000;
        match state.instances.get_mut(&key) {
            Some(instance) => {
                instance.last_seen_ms = instance.last_seen_ms.max(now_ms);
                instance.spans_total += spans;
                instance.rate.add(now_ms, spans);
                if !instance
                    .receivers
                    .iter()
                    .any(|r| is_receiver(r, protocol, origin))
                    && instance.receivers.len() < MAX_RECEIVERS
                {
                    instance.receivers.push(receiver_label(protocol, origin));
                }
                if now_ms.saturating_sub(instance.refreshed_ms) >= refresh_ms {
                    details(instance, resource, origin);
                    instance.refreshed_ms = now_ms;
                }
            }
            None if full => {
                state.left_out_spans += spans;
                let tracked = (self.config.max_instances * LEFT_OUT_TRACKED_PER_KEPT)
                    .max(LEFT_OUT_TRACKED_MIN);
                if state.left_out.len() < tracked {
                    state.left_out.insert(key);
                } else if !state.left_out.contains(&key) {
                    state.left_out_saturated = true;
                }
                return false;
            }
            None => {
                let mut instance = Instance {
                    service: id.service.to_string(),
                    instance: id.label(),
                    service_instance_id: id.instance_id.map(str::to_string),
                    host: id.host.map(str::to_string),
                    pid: id.pid,
                    service_version: None,
                    sdk_name: None,
                    sdk_language: None,
                    sdk_version: None,
                    distro_name: None,
                    distro_version: None,
                    runtime_name: None,
                    runtime_version: None,
                    receivers: vec![receiver_label(protocol, origin)],
                    agent: None,
                    first_seen_ms: now_ms,
                    last_seen_ms: now_ms,
                    spans_total: spans,
                    rate: Rate::default(),
                    refreshed_ms: now_ms,
                };
                instance.rate.add(now_ms, spans);
                details(&mut instance, resource, origin);
                state.instances.insert(key, instance);
            }
        }
        true
    }

    /// Drops instances not seen since `cutoff_ms`, of every tenant; returns how many.
    fn expire(&self, cutoff_ms: u64) -> usize {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        let mut dropped = 0;
        for t in state.tenants.values_mut() {
            let before = t.instances.len();
            t.instances.retain(|_, i| i.last_seen_ms >= cutoff_ms);
            dropped += before - t.instances.len();
        }
        state
            .tenants
            .retain(|_, t| !t.instances.is_empty() || t.left_out_spans > 0);
        if dropped > 0 {
            state.dirty = true;
        }
        dropped
    }

    /// A copy of every instance `tenant` has, and its left-out counts.
    pub fn snapshot(&self, tenant: &Tenant) -> view::Snapshot {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut snapshot = view::Snapshot::default();
        if let Some(t) = state.tenants.get(tenant) {
            add_to(&mut snapshot, t);
        }
        snapshot
    }

    /// What the gauges are set from: one unlabelled snapshot (tenant `default`'s) where
    /// tenants are not labelled, else one per tenant with its name.
    fn gauge_snapshots(&self) -> Vec<(Option<String>, view::Snapshot)> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let labelled = self.label_tenants || state.tenants.keys().any(|t| !t.is_default());
        if !labelled {
            let mut snapshot = view::Snapshot::default();
            if let Some(t) = state.tenants.get(&Tenant::default()) {
                add_to(&mut snapshot, t);
            }
            return vec![(None, snapshot)];
        }
        state
            .tenants
            .iter()
            .map(|(tenant, t)| {
                let mut snapshot = view::Snapshot::default();
                add_to(&mut snapshot, t);
                (Some(tenant.to_string()), snapshot)
            })
            .collect()
    }

    /// `GET /api/v1/inventory`: `tenant`'s instances matching `filter`, by service.
    pub fn answer(&self, tenant: &Tenant, filter: &InventoryFilter) -> view::Answer {
        view::answer(self.snapshot(tenant), filter, &self.config, now_ms())
    }

    /// The saved form (gzip'd JSON), or `None` when nothing changed since the last one.
    fn encode_if_dirty(&self) -> Option<Vec<u8>> {
        let saved = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if !state.dirty {
                return None;
            }
            state.dirty = false;
            let mut saved = Saved {
                version: 1,
                instances: Vec::new(),
                tenants: Vec::new(),
            };
            for (tenant, t) in &state.tenants {
                let instances = t.instances.values().cloned().collect();
                if tenant.is_default() {
                    saved.instances = instances;
                } else {
                    saved.tenants.push(SavedTenant {
                        tenant: tenant.to_string(),
                        instances,
                    });
                }
            }
            saved
        };
        // serialized whole first: serde_json writes token by token, and every small write
        // into the gzip stream cost a (zeroed) deflate step
        let json = serde_json::to_vec(&saved).ok()?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&json).ok()?;
        gz.finish().ok()
    }

    /// Takes in a saved inventory (at start, before any span counts).
    fn restore(&self, bytes: &[u8]) -> Result<usize, String> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(512 << 20)
            .read_to_end(&mut json)
            .map_err(|e| format!("not gzip: {e}"))?;
        let saved: Saved = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
        if saved.version != 1 {
            return Err(format!("unknown version {}", saved.version));
        }
        let mut tenants = vec![(Tenant::default(), saved.instances)];
        for t in saved.tenants {
            // names were checked when they were saved; one that no longer parses is left
            match Tenant::parse(&t.tenant) {
                Ok(tenant) => tenants.push((tenant, t.instances)),
                Err(error) => {
                    warn!(%error, "a saved fleet inventory's tenant is not a tenant name; its instances are left out")
                }
            }
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept = 0;
        for (tenant, instances) in tenants {
            if instances.is_empty() {
                continue;
            }
            let t = state.tenants.entry(tenant).or_default();
            for instance in instances {
                if t.instances.len() >= self.config.max_instances {
                    break;
                }
                let key = identity_of_saved(&instance).key();
                t.instances.entry(key).or_insert(instance);
            }
            kept += t.instances.len();
        }
        Ok(kept)
    }

    /// Reads the saved inventory from `store` (before any span is counted: call it before
    /// the receivers start). A missing or unreadable one leaves it empty, with a warning.
    pub async fn load(&self, store: &Arc<dyn SpanStore>) {
        match store.get_state(STATE_NAME).await {
            Ok(Some(bytes)) => match self.restore(&bytes) {
                Ok(n) => info!(
                    instances = n,
                    "fleet inventory read back from the span store"
                ),
                Err(error) => {
                    warn!(%error, "the saved fleet inventory could not be read; starting empty")
                }
            },
            Ok(None) => {}
            Err(error) => warn!(%error, "reading the saved fleet inventory failed; starting empty"),
        }
    }

    /// Until `stop`: every 10 s (or `persist_interval_secs` if shorter) drops instances
    /// older than the retention and sets the gauges, every `persist_interval_secs` saves
    /// what changed; saves once more when stopped.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn SpanStore>,
        retention_days: u32,
        mut stop: watch::Receiver<bool>,
    ) {
        let tick = Duration::from_secs(self.config.persist_interval_secs.min(10));
        let persist_every = Duration::from_secs(self.config.persist_interval_secs);
        let mut gauges = view::Gauges::default();
        let mut since_save = Duration::ZERO;
        loop {
            let stopped = tokio::select! {
                _ = tokio::time::sleep(tick) => false,
                _ = stop.changed() => true,
            };
            let now = now_ms();
            let retention_ms = u64::from(retention_days) * 86_400_000;
            self.expire(now.saturating_sub(retention_ms));
            gauges.set(&self.gauge_snapshots(), now, &self.config);
            since_save += tick;
            if stopped || *stop.borrow() || since_save >= persist_every {
                since_save = Duration::ZERO;
                self.save(&store).await;
            }
            if stopped || *stop.borrow() {
                return;
            }
        }
    }

    async fn save(&self, store: &Arc<dyn SpanStore>) {
        let Some(bytes) = self.encode_if_dirty() else {
            return;
        };
        if let Err(error) = store.put_state(STATE_NAME, bytes).await {
            // kept in memory and saved again at the next interval
            self.state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .dirty = true;
            warn!(%error, "saving the fleet inventory failed; retrying at the next interval");
        }
    }
}

/// The saved form. Tenant `default`'s instances are `instances`, as before tenants (so an
/// older clew reads them back and skips `tenants`); every other tenant's are in `tenants`.
#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    instances: Vec<Instance>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tenants: Vec<SavedTenant>,
}

#[derive(Serialize, Deserialize)]
struct SavedTenant {
    tenant: String,
    instances: Vec<Instance>,
}

/// Adds one tenant's instances and left-out counts to `snapshot`.
fn add_to(snapshot: &mut view::Snapshot, t: &TenantState) {
    snapshot.instances.extend(t.instances.values().cloned());
    snapshot.left_out += t.left_out.len() as u64;
    snapshot.left_out_saturated |= t.left_out_saturated;
    snapshot.left_out_spans += t.left_out_spans;
}

/// The identity a saved instance was kept under.
fn identity_of_saved(i: &Instance) -> Identity<'_> {
    Identity {
        service: &i.service,
        instance_id: i.service_instance_id.as_deref(),
        host: i.host.as_deref(),
        pid: i.pid,
    }
}

/// Reads an instance's versions, SDK and agent from its resource and input.
fn details(instance: &mut Instance, resource: &Resource, origin: &Origin) {
    let a = &resource.attributes;
    instance.service_version = owned(a, "service.version");
    instance.sdk_name = owned(a, "telemetry.sdk.name");
    instance.sdk_language = owned(a, "telemetry.sdk.language");
    instance.sdk_version = owned(a, "telemetry.sdk.version");
    instance.distro_name = owned(a, "telemetry.distro.name");
    instance.distro_version = owned(a, "telemetry.distro.version");
    instance.runtime_name = owned(a, "process.runtime.name");
    instance.runtime_version = owned(a, "process.runtime.version");
    if let Some(agent) = &origin.agent {
        instance.agent = Some(AgentId::clone(agent));
    }
}

fn now_ms() -> u64 {
    crate::ingest::now_unix_nano() / 1_000_000
}

#[cfg(test)]
mod tests;
