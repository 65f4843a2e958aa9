//! The last hour of each service's requests, one slot per minute: calls, errors and a
//! log-scale duration histogram (four buckets per power of two, so p50/p99 are within
//! ±10 % of the true value), for the UI's service page. A ring of 60 slots per service,
//! at most [`MAX_SERVICES`] services (about 29 KiB each): memory is bounded whatever
//! arrives.

use serde::Serialize;

/// Services with a history; a service beyond it has RED metrics but no service page data.
pub const MAX_SERVICES: usize = 500;
const MINUTES: usize = 60;
/// Below 2^10 ns (1 µs): the first bucket; above 2^40 ns (~18 min): the last.
const LOW_EXP: u32 = 10;
const HIGH_EXP: u32 = 40;
const PER_OCTAVE: u32 = 4;
const BUCKETS: usize = ((HIGH_EXP - LOW_EXP) * PER_OCTAVE) as usize + 2;

/// One minute of a service's requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedPoint {
    /// Start of the minute, unix seconds.
    pub t: u64,
    pub calls: u64,
    pub errors: u64,
    /// `None` in a minute without calls.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Clone)]
struct Slot {
    minute: u64,
    calls: u64,
    errors: u64,
    buckets: [u32; BUCKETS],
}

impl Slot {
    fn empty() -> Self {
        Slot {
            minute: u64::MAX,
            calls: 0,
            errors: 0,
            buckets: [0; BUCKETS],
        }
    }

    /// Duration at quantile `q`, interpolated inside its bucket as `histogram_quantile`
    /// does, in milliseconds.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.calls == 0 {
            return None;
        }
        let rank = q * self.calls as f64;
        let mut below = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            let n = u64::from(*n);
            if n > 0 && (below + n) as f64 >= rank {
                let (lo, hi) = bucket_bounds_ns(i);
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return Some((lo + (hi - lo) * within) / 1e6);
            }
            below += n;
        }
        Some(bucket_bounds_ns(BUCKETS - 1).1 / 1e6)
    }
}

fn bucket(duration_ns: u64) -> usize {
    if duration_ns < 1 << LOW_EXP {
        return 0;
    }
    let octaves = (duration_ns as f64).log2() - f64::from(LOW_EXP);
    (1 + (octaves * f64::from(PER_OCTAVE)) as usize).min(BUCKETS - 1)
}

/// Lower and upper bound of bucket `i`, in nanoseconds.
fn bucket_bounds_ns(i: usize) -> (f64, f64) {
    let edge = |k: usize| 2f64.powf(f64::from(LOW_EXP) + k as f64 / f64::from(PER_OCTAVE));
    match i {
        0 => (0.0, edge(0)),
        i if i == BUCKETS - 1 => (edge(i - 1), edge(i - 1)),
        i => (edge(i - 1), edge(i)),
    }
}

#[derive(Default)]
pub struct History {
    /// By service id; `None` until the service's first request.
    services: Vec<Option<Box<[Slot]>>>,
}

impl History {
    /// Counts a request that ended in `minute` (at most `now_minute`); one older than the
    /// hour the ring holds is not kept.
    pub fn record(
        &mut self,
        service: u32,
        minute: u64,
        now_minute: u64,
        duration_ns: u64,
        error: bool,
    ) {
        let service = service as usize;
        if service >= MAX_SERVICES || minute + (MINUTES as u64) <= now_minute {
            return;
        }
        if self.services.len() <= service {
            self.services.resize_with(service + 1, || None);
        }
        let ring = self.services[service]
            .get_or_insert_with(|| vec![Slot::empty(); MINUTES].into_boxed_slice());
        let slot = &mut ring[(minute % MINUTES as u64) as usize];
        if slot.minute != minute {
            *slot = Slot::empty();
            slot.minute = minute;
        }
        slot.calls += 1;
        slot.errors += u64::from(error);
        let b = &mut slot.buckets[bucket(duration_ns)];
        *b = b.saturating_add(1);
    }

    /// The 60 minutes ending with `now_minute`, oldest first (zero for minutes without
    /// requests).
    pub fn points(&self, service: u32, now_minute: u64) -> Vec<RedPoint> {
        let ring = self.services.get(service as usize).and_then(|r| r.as_ref());
        (0..MINUTES as u64)
            .rev()
            .filter_map(|back| now_minute.checked_sub(back))
            .map(|minute| {
                let slot = ring
                    .map(|r| &r[(minute % MINUTES as u64) as usize])
                    .filter(|s| s.minute == minute);
                RedPoint {
                    t: minute * 60,
                    calls: slot.map_or(0, |s| s.calls),
                    errors: slot.map_or(0, |s| s.errors),
                    p50_ms: slot.and_then(|s| s.quantile_ms(0.5)),
                    p99_ms: slot.and_then(|s| s.quantile_ms(0.99)),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_close_to_the_true_values() {
        let mut h = History::default();
        // 1..=1000 ms, one call each: p50 = 500 ms, p99 = 990 ms
        for ms in 1..=1000u64 {
            h.record(0, 7, 7, ms * 1_000_000, ms % 10 == 0);
        }
        let points = h.points(0, 7);
        assert_eq!(points.len(), 8, "minutes 0..=7");
        let last = points.last().unwrap();
        assert_eq!(last.t, 7 * 60);
        assert_eq!((last.calls, last.errors), (1000, 100));
        let p50 = last.p50_ms.unwrap();
        let p99 = last.p99_ms.unwrap();
        assert!((p50 - 500.0).abs() / 500.0 < 0.1, "p50 {p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.1, "p99 {p99}");
        assert!(points[..7]
            .iter()
            .all(|p| p.calls == 0 && p.p50_ms.is_none()));
    }

    #[test]
    fn the_ring_keeps_one_hour() {
        let mut h = History::default();
        h.record(0, 100, 159, 5_000_000, false);
        h.record(0, 159, 159, 5_000_000, true);
        // older than the hour: not kept (minute 99 shares minute 159's slot)
        h.record(0, 99, 159, 5_000_000, true);
        let points = h.points(0, 159);
        assert_eq!(points.len(), 60);
        assert_eq!(points[0].t, 100 * 60);
        assert_eq!(points[0].calls, 1);
        assert_eq!(points[59].errors, 1);
        // minute 160 takes minute 100's slot
        h.record(0, 160, 160, 5_000_000, false);
        let points = h.points(0, 160);
        assert_eq!(points[0].t, 101 * 60);
        assert_eq!(points.iter().map(|p| p.calls).sum::<u64>(), 2);
        // a service beyond the bound is not kept; an unknown one has zeros
        h.record(MAX_SERVICES as u32, 160, 160, 1, false);
        assert!(h.points(3, 160).iter().all(|p| p.calls == 0));
    }

    #[test]
    fn buckets_cover_every_duration() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        for ns in [1_500u64, 1_000_000, 123_456_789] {
            let (lo, hi) = bucket_bounds_ns(bucket(ns));
            assert!(
                lo <= ns as f64 && (ns as f64) < hi * 1.0001,
                "{ns}: {lo}..{hi}"
            );
        }
    }
}
