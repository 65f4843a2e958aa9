//! Span admission, the one decision every span store makes per span of a batch: store it,
//! skip it as a duplicate, or reject it for the per-trace cap. The backends (fjall, HBase)
//! only say where a trace's meta cell is and whether a cell already exists; the rules are
//! here, once:
//!
//! ```text
//!  span ─▶ same cell earlier in this batch? ── stored: duplicate │ rejected: rejected again
//!       ─▶ cell already in the store?       ── duplicate (not rewritten, not counted)
//!       ─▶ past max spans / max bytes?      ── rejected `trace_too_large`, meta truncated
//!       ─▶ stored: counted in the meta, encoded bytes handed to the backend
//! ```
//!
//! A trace's meta (count, bytes, truncated flag) is written back only when it changed.

use std::collections::HashMap;
use std::time::Instant;

use clew_proto::encoding::SpanEncoder;
use clew_proto::{RejectReason, Span, Tenant};

use crate::metrics as m;
use crate::row_layout::{cell_suffix, Meta, RowKey, CELL_SUFFIX_LEN};
use crate::{Error, Result, WriteReport};

/// Default span cap of a trace, for every span store.
pub fn default_max_spans_per_trace() -> u32 {
    50_000
}

/// Default byte cap of a trace (encoded spans), for every span store.
pub fn default_max_bytes_per_trace() -> u64 {
    64 * 1024 * 1024
}

/// Checks the per-trace caps of a span store's config.
pub fn validate_caps(max_spans_per_trace: u32, max_bytes_per_trace: u64) -> Result<()> {
    if max_spans_per_trace == 0 {
        return Err(Error::Config(
            "store.max_spans_per_trace must be at least 1".into(),
        ));
    }
    if max_bytes_per_trace < 1024 {
        return Err(Error::Config(
            "store.max_bytes_per_trace must be at least 1024".into(),
        ));
    }
    Ok(())
}

/// The per-trace caps a store enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_spans_per_trace: u32,
    pub max_bytes_per_trace: u64,
}

/// What one write batch did, for the report and the metrics.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    pub report: WriteReport,
    pub stored: u64,
    pub bytes: u64,
    pub duplicates: u64,
}

impl WriteOutcome {
    /// Emits the batch's store metrics for `backend` and hands back the report.
    pub fn finish(self, backend: &'static str, started: Instant) -> WriteReport {
        metrics::histogram!(m::STORE_WRITE_SECONDS, "backend" => backend)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(m::STORE_SPANS_WRITTEN_TOTAL, "backend" => backend)
            .increment(self.stored);
        metrics::counter!(m::STORE_BYTES_WRITTEN_TOTAL, "backend" => backend).increment(self.bytes);
        if self.duplicates > 0 {
            metrics::counter!(m::STORE_DUPLICATE_SPANS_TOTAL, "backend" => backend)
                .increment(self.duplicates);
        }
        if !self.report.rejected.is_empty() {
            metrics::counter!(
                m::STORE_SPANS_REJECTED_TOTAL,
                "backend" => backend,
                "reason" => RejectReason::TraceTooLarge.as_str()
            )
            .increment(self.report.rejected.len() as u64);
        }
        self.report
    }
}

/// A trace of the batch: its meta as it will be written back.
struct TraceMeta {
    row: RowKey,
    tenant: Tenant,
    meta: Meta,
    dirty: bool,
}

/// The admission state of one write batch. Traces get a slot (`0..`) in the order they are
/// added; backends keep their own per-trace data (bucket, mutations) by that slot. A trace
/// is a row key: the same trace id in two tenants is two traces.
pub struct Admission {
    caps: Caps,
    slots: HashMap<RowKey, usize>,
    traces: Vec<TraceMeta>,
    /// Cells decided earlier in this batch: (slot, span id + discriminator) → stored?
    seen: HashMap<(usize, [u8; CELL_SUFFIX_LEN]), bool>,
    outcome: WriteOutcome,
    scratch: Vec<u8>,
    /// Encodes each resource and scope of the batch once (the cells are unchanged).
    encoder: SpanEncoder,
}

impl Admission {
    pub fn new(caps: Caps) -> Self {
        Admission {
            caps,
            slots: HashMap::new(),
            traces: Vec::new(),
            seen: HashMap::new(),
            outcome: WriteOutcome::default(),
            scratch: Vec::with_capacity(1024),
            encoder: SpanEncoder::default(),
        }
    }

    /// The slot of a trace added before.
    pub fn slot(&self, row: &RowKey) -> Option<usize> {
        self.slots.get(row).copied()
    }

    /// Adds a trace (row `row` of `tenant`) of the batch with its stored meta (`None`: not
    /// in the store yet) and returns its slot. Adding a trace twice returns its first slot.
    pub fn add_trace(&mut self, row: RowKey, tenant: &Tenant, stored: Option<Meta>) -> usize {
        if let Some(slot) = self.slot(&row) {
            return slot;
        }
        self.traces.push(TraceMeta {
            row,
            tenant: tenant.clone(),
            meta: stored.unwrap_or_default(),
            dirty: false,
        });
        self.slots.insert(row, self.traces.len() - 1);
        self.traces.len() - 1
    }

    /// Decides on span `index` of the batch, whose trace has `slot`. `exists` answers
    /// whether the span's cell is already in the store; it is asked only when the cell was
    /// not seen earlier in this batch. Returns the encoded span when it is to be stored.
    pub fn admit(
        &mut self,
        index: usize,
        span: &Span,
        slot: usize,
        exists: impl FnOnce() -> Result<bool>,
    ) -> Result<Option<&[u8]>> {
        let cell = (slot, cell_suffix(span));
        if let Some(&stored) = self.seen.get(&cell) {
            // Same cell earlier in this batch: a no-op if it was stored, and rejected
            // again if it was rejected.
            if stored {
                self.outcome.duplicates += 1;
            } else {
                self.reject(index);
            }
            return Ok(None);
        }
        if exists()? {
            self.seen.insert(cell, true);
            self.outcome.duplicates += 1;
            return Ok(None);
        }
        self.scratch.clear();
        self.encoder.encode(span, &mut self.scratch);
        let len = self.scratch.len() as u64;
        let caps = self.caps;
        let trace = &mut self.traces[slot];
        if trace.meta.spans >= caps.max_spans_per_trace
            || trace.meta.bytes.saturating_add(len) > caps.max_bytes_per_trace
        {
            if !trace.meta.truncated {
                trace.meta.truncated = true;
                trace.dirty = true;
            }
            self.seen.insert(cell, false);
            self.reject(index);
            return Ok(None);
        }
        trace.meta.spans += 1;
        trace.meta.bytes += len;
        trace.dirty = true;
        self.seen.insert(cell, true);
        self.outcome.stored += 1;
        self.outcome.bytes += len;
        Ok(Some(&self.scratch))
    }

    fn reject(&mut self, index: usize) {
        self.outcome
            .report
            .rejected
            .push((index, RejectReason::TraceTooLarge));
    }

    /// The metas that changed, to be written in the same atomic batch as their cells:
    /// `(slot, row key, meta, the meta cell's bytes)` (the cell records the tenant, see
    /// [`Meta::encode_for`]).
    pub fn changed_metas(&self) -> impl Iterator<Item = (usize, RowKey, Meta, Vec<u8>)> + '_ {
        self.traces
            .iter()
            .enumerate()
            .filter(|(_, t)| t.dirty)
            .map(|(slot, t)| (slot, t.row, t.meta, t.meta.encode_for(&t.tenant)))
    }

    /// What the batch did.
    pub fn finish(self) -> WriteOutcome {
        self.outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::fixtures::{span, span_id, trace_id, BASE_TIME};

    fn caps(spans: u32) -> Caps {
        Caps {
            max_spans_per_trace: spans,
            max_bytes_per_trace: 1 << 20,
        }
    }

    #[test]
    fn duplicates_rejections_and_the_truncated_flag() {
        let t = trace_id(1);
        let s = |n| span(t, span_id(n), None, "svc", "op", BASE_TIME, 1);
        let mut admission = Admission::new(caps(2));
        let d = Tenant::default();
        let slot = admission.add_trace(RowKey::new(&d, &t), &d, None);
        assert_eq!(admission.add_trace(RowKey::new(&d, &t), &d, None), slot);
        let shop = Tenant::parse("shop").unwrap();
        assert_ne!(
            admission.add_trace(RowKey::new(&shop, &t), &shop, None),
            slot,
            "the same trace id of another tenant is another trace"
        );
        let batch = [s(1), s(1), s(2), s(3), s(3), s(4)];
        let stored: Vec<bool> = batch
            .iter()
            .enumerate()
            .map(|(i, sp)| {
                admission
                    .admit(i, sp, slot, || Ok(sp.span_id == span_id(4)))
                    .unwrap()
                    .is_some()
            })
            .collect();
        assert_eq!(stored, [true, false, true, false, false, false]);
        let metas: Vec<_> = admission.changed_metas().collect();
        assert_eq!(metas.len(), 1);
        assert_eq!(metas[0].2.spans, 2);
        assert!(metas[0].2.truncated);
        let out = admission.finish();
        assert_eq!(out.stored, 2);
        assert_eq!(out.duplicates, 2, "span 1 again, span 4 already stored");
        assert_eq!(
            out.report.rejected,
            vec![
                (3, RejectReason::TraceTooLarge),
                (4, RejectReason::TraceTooLarge)
            ]
        );
    }

    #[test]
    fn an_untouched_stored_trace_writes_no_meta() {
        let t = trace_id(2);
        let mut admission = Admission::new(caps(5));
        let d = Tenant::default();
        let slot = admission.add_trace(
            RowKey::new(&d, &t),
            &d,
            Some(Meta {
                spans: 1,
                bytes: 10,
                truncated: false,
            }),
        );
        let sp = span(t, span_id(1), None, "svc", "op", BASE_TIME, 1);
        assert!(admission
            .admit(0, &sp, slot, || Ok(true))
            .unwrap()
            .is_none());
        assert_eq!(admission.changed_metas().count(), 0);
    }

    #[test]
    fn caps_are_validated() {
        assert!(validate_caps(0, 1 << 20)
            .unwrap_err()
            .to_string()
            .contains("store.max_spans_per_trace"));
        assert!(validate_caps(1, 1023)
            .unwrap_err()
            .to_string()
            .contains("store.max_bytes_per_trace"));
        validate_caps(1, 1024).unwrap();
    }
}
