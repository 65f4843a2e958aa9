//! Jaeger's sampling-strategies file and the answers it yields, computed as Jaeger v2's
//! file provider computes them (`internal/sampling/samplingstrategy/file` in Jaeger
//! v1.76.0), so an SDK gets the same strategy from clew as from Jaeger for the same file.
//!
//! ```json
//! {
//!   "default_strategy": {
//!     "type": "probabilistic", "param": 0.5,
//!     "operation_strategies": [{ "operation": "/health", "type": "probabilistic", "param": 0.0 }]
//!   },
//!   "service_strategies": [
//!     { "service": "checkout", "type": "probabilistic", "param": 0.8,
//!       "operation_strategies": [{ "operation": "POST /pay", "type": "probabilistic", "param": 1.0 }] },
//!     { "service": "search", "type": "ratelimiting", "param": 5 }
//!   ]
//! }
//! ```
//!
//! How the answer for a service is built (Jaeger's rules, in its order):
//!
//! - A strategy is `probabilistic` (`param` = sampling rate) or `ratelimiting` (`param` =
//!   traces per second, truncated to an integer); any other or a missing `type` gives the
//!   default probabilistic strategy (`default_probability`, 0.001 unless configured).
//! - A service without an entry gets `default_strategy` (or the default probabilistic one).
//! - `operation_strategies` become `operationSampling`: its `defaultSamplingProbability`
//!   is the strategy's own rate when it is probabilistic, else `default_probability`;
//!   `defaultLowerBoundTracesPerSecond` and `defaultUpperBoundTracesPerSecond` are 0.
//!   Rate-limiting operation entries are left out (Jaeger supports only probabilistic ones
//!   per operation).
//! - When the default strategy has operation strategies, every service entry gets them
//!   too: a service without its own gets a copy of the default's `operationSampling`,
//!   whose default probability becomes the service's rate when the service is
//!   probabilistic; a service with its own keeps them first and gets the default's
//!   entries for the operations it does not list, after its own.
//!
//! The file is read as Go's `encoding/json` reads it into Jaeger's structs: unknown keys
//! are ignored, key names match case-insensitively, `null` counts as absent, and a value
//! of the wrong JSON type makes the whole file invalid.
//!
//! One rule is clew's own (Jaeger would serve the value as it stands): a probabilistic
//! `param` outside 0..=1, or a rate-limiting `param` below 0 or above 2^31−1, makes the
//! file invalid, since an SDK cannot do anything meaningful with it and it is almost always
//! a typo (`10` meant as 10 %).

use std::collections::HashMap;

use clew_proto::go_json;
use clew_proto::jaeger_sampling::{
    OperationSamplingStrategy, PerOperationSamplingStrategies, ProbabilisticSamplingStrategy,
    RateLimitingSamplingStrategy, SamplingStrategyResponse, SamplingStrategyType,
};
use serde_json::{Map, Value};
use tracing::warn;

/// Jaeger's default sampling probability (`sampling.default-sampling-probability`).
pub const DEFAULT_SAMPLING_PROBABILITY: f64 = 0.001;

/// The answers of one strategies file: one per listed service, one for everything else.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategies {
    pub default: SamplingStrategyResponse,
    pub services: HashMap<String, SamplingStrategyResponse>,
}

impl Strategies {
    /// What Jaeger serves without a file: probabilistic at `default_probability`.
    pub fn defaults(default_probability: f64) -> Strategies {
        Strategies {
            default: probabilistic(default_probability),
            services: HashMap::new(),
        }
    }

    /// The answer for `service` (the default strategy when it has no entry).
    pub fn for_service(&self, service: &str) -> &SamplingStrategyResponse {
        self.services.get(service).unwrap_or(&self.default)
    }

    /// Parses a strategies file's bytes. A file that is JSON `null` gives the defaults, as
    /// in Jaeger. Errors say what is wrong and where (`service_strategies[2].param: …`).
    pub fn parse(bytes: &[u8], default_probability: f64) -> Result<Strategies, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        let file = match value {
            Value::Null => return Ok(Strategies::defaults(default_probability)),
            Value::Object(map) => FileStrategies::read(&map)?,
            other => {
                return Err(format!(
                    "the file must hold a JSON object, not {}",
                    kind(&other)
                ))
            }
        };
        Ok(file.compute(default_probability))
    }
}

fn probabilistic(rate: f64) -> SamplingStrategyResponse {
    SamplingStrategyResponse {
        strategy_type: SamplingStrategyType::Probabilistic as i32,
        probabilistic_sampling: Some(ProbabilisticSamplingStrategy {
            sampling_rate: rate,
        }),
        rate_limiting_sampling: None,
        operation_sampling: None,
    }
}

/// `{ "type": …, "param": … }` as read.
#[derive(Debug, Clone, Default, PartialEq)]
struct Strategy {
    kind: String,
    param: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct OperationEntry {
    operation: String,
    strategy: Strategy,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct ServiceEntry {
    service: String,
    strategy: Strategy,
    operations: Vec<OperationEntry>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct FileStrategies {
    default: Option<ServiceEntry>,
    services: Vec<ServiceEntry>,
}

const PROBABILISTIC: &str = "probabilistic";
const RATE_LIMITING: &str = "ratelimiting";

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Go's field lookup: the exact key, else one that matches ignoring ASCII case; `null`
/// is absent.
fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name)
        .or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

fn string_field(map: &Map<String, Value>, name: &str, at: &str) -> Result<String, String> {
    match field(map, name) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(format!("{at}.{name}: expected a string, found {}", kind(v))),
    }
}

fn number_field(map: &Map<String, Value>, name: &str, at: &str) -> Result<f64, String> {
    match field(map, name) {
        None => Ok(0.0),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .ok_or_else(|| format!("{at}.{name}: {n} is not a finite number")),
        Some(v) => Err(format!("{at}.{name}: expected a number, found {}", kind(v))),
    }
}

/// An object and where it sits in the file (`service_strategies[2]`).
type Located<'a> = (String, &'a Map<String, Value>);

/// The elements of an array field, each required to be an object (a `null` element would
/// crash Jaeger; here it is an error), each with its place for error messages.
fn objects<'a>(
    map: &'a Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<Vec<Located<'a>>, String> {
    match field(map, name) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let here = format!("{at}{}{name}[{i}]", if at.is_empty() { "" } else { "." });
                match item {
                    Value::Object(o) => Ok((here, o)),
                    v => Err(format!("{here}: expected an object, found {}", kind(v))),
                }
            })
            .collect(),
        Some(v) => Err(format!(
            "{at}{}{name}: expected an array, found {}",
            if at.is_empty() { "" } else { "." },
            kind(v)
        )),
    }
}

impl Strategy {
    fn read(map: &Map<String, Value>, at: &str) -> Result<Strategy, String> {
        let s = Strategy {
            kind: string_field(map, "type", at)?,
            param: number_field(map, "param", at)?,
        };
        match s.kind.as_str() {
            PROBABILISTIC if !(0.0..=1.0).contains(&s.param) => Err(format!(
                "{at}.param: {} is not a sampling probability between 0 and 1",
                s.param
            )),
            RATE_LIMITING if !(0.0..=i32::MAX as f64).contains(&s.param) => Err(format!(
                "{at}.param: {} is not a number of traces per second between 0 and {}",
                s.param,
                i32::MAX
            )),
            _ => Ok(s),
        }
    }
}

impl ServiceEntry {
    fn read(map: &Map<String, Value>, at: &str) -> Result<ServiceEntry, String> {
        let operations = objects(map, "operation_strategies", at)?
            .into_iter()
            .map(|(here, o)| {
                Ok(OperationEntry {
                    operation: string_field(o, "operation", &here)?,
                    strategy: Strategy::read(o, &here)?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(ServiceEntry {
            service: string_field(map, "service", at)?,
            strategy: Strategy::read(map, at)?,
            operations,
        })
    }
}

impl FileStrategies {
    fn read(map: &Map<String, Value>) -> Result<FileStrategies, String> {
        let default = match field(map, "default_strategy") {
            None => None,
            Some(Value::Object(o)) => Some(ServiceEntry::read(o, "default_strategy")?),
            Some(v) => {
                return Err(format!(
                    "default_strategy: expected an object, found {}",
                    kind(v)
                ))
            }
        };
        let services = objects(map, "service_strategies", "")?
            .into_iter()
            .map(|(here, o)| ServiceEntry::read(o, &here))
            .collect::<Result<_, String>>()?;
        Ok(FileStrategies { default, services })
    }

    /// Jaeger's `parseStrategies`.
    fn compute(&self, default_probability: f64) -> Strategies {
        let mut out = Strategies::defaults(default_probability);
        if let Some(d) = &self.default {
            out.default = service_answer(d, default_probability);
        }
        for entry in &self.services {
            let mut answer = service_answer(entry, default_probability);
            if let Some(default_ops) = &out.default.operation_sampling {
                match &mut answer.operation_sampling {
                    None => {
                        let mut ops = default_ops.clone();
                        if let Some(p) = &answer.probabilistic_sampling {
                            ops.default_sampling_probability = p.sampling_rate;
                        }
                        answer.operation_sampling = Some(ops);
                    }
                    Some(own) => {
                        let listed: Vec<String> = own
                            .per_operation_strategies
                            .iter()
                            .map(|o| o.operation.clone())
                            .collect();
                        own.per_operation_strategies.extend(
                            default_ops
                                .per_operation_strategies
                                .iter()
                                .filter(|o| !listed.contains(&o.operation))
                                .cloned(),
                        );
                    }
                }
            }
            out.services.insert(entry.service.clone(), answer);
        }
        out
    }
}

/// Jaeger's `parseStrategy`.
fn strategy_answer(s: &Strategy, default_probability: f64) -> SamplingStrategyResponse {
    match s.kind.as_str() {
        PROBABILISTIC => probabilistic(s.param),
        RATE_LIMITING => SamplingStrategyResponse {
            strategy_type: SamplingStrategyType::RateLimiting as i32,
            probabilistic_sampling: None,
            // Go's int32(param): truncated toward zero (the range was checked on reading).
            rate_limiting_sampling: Some(RateLimitingSamplingStrategy {
                max_traces_per_second: s.param.trunc() as i32,
            }),
            operation_sampling: None,
        },
        other => {
            warn!(
                strategy_type = other,
                "sampling strategy type is neither \"probabilistic\" nor \"ratelimiting\"; using the default probabilistic strategy"
            );
            probabilistic(default_probability)
        }
    }
}

/// Jaeger's `parseServiceStrategies`.
fn service_answer(entry: &ServiceEntry, default_probability: f64) -> SamplingStrategyResponse {
    let mut answer = strategy_answer(&entry.strategy, default_probability);
    if entry.operations.is_empty() {
        return answer;
    }
    let mut ops = PerOperationSamplingStrategies {
        default_sampling_probability: answer
            .probabilistic_sampling
            .as_ref()
            .map_or(default_probability, |p| p.sampling_rate),
        ..Default::default()
    };
    for op in &entry.operations {
        let s = strategy_answer(&op.strategy, default_probability);
        if s.rate_limiting_sampling.is_some() {
            warn!(
                operation = %op.operation,
                "per-operation strategies can only be probabilistic; the operation falls back to the default probability"
            );
            continue;
        }
        ops.per_operation_strategies
            .push(OperationSamplingStrategy {
                operation: op.operation.clone(),
                probabilistic_sampling: s.probabilistic_sampling,
            });
    }
    answer.operation_sampling = Some(ops);
    answer
}

/// Jaeger v2's HTTP answer (`remote_sampling` extension, any path): the Thrift form of the
/// strategy as Go's `encoding/json` writes it, with `strategyType` as the enum's number
/// (Jaeger's "thrift 0.9.2" compatibility) — byte for byte, so clients that compare or
/// cache the text see no difference. `None` when `maxTracesPerSecond` does not fit the
/// Thrift field (int16), where Jaeger answers 500.
pub fn to_jaeger_json(r: &SamplingStrategyResponse) -> Option<String> {
    let mut out = String::with_capacity(128);
    out.push_str("{\"strategyType\":");
    out.push_str(
        if r.strategy_type == SamplingStrategyType::RateLimiting as i32 {
            "1"
        } else {
            "0"
        },
    );
    if let Some(p) = &r.probabilistic_sampling {
        out.push_str(",\"probabilisticSampling\":");
        push_probabilistic(&mut out, p);
    }
    if let Some(rl) = &r.rate_limiting_sampling {
        if rl.max_traces_per_second > i16::MAX as i32 {
            return None;
        }
        out.push_str(",\"rateLimitingSampling\":{\"maxTracesPerSecond\":");
        out.push_str(&rl.max_traces_per_second.to_string());
        out.push('}');
    }
    if let Some(ops) = &r.operation_sampling {
        out.push_str(",\"operationSampling\":{\"defaultSamplingProbability\":");
        out.push_str(&go_json::float(ops.default_sampling_probability));
        out.push_str(",\"defaultLowerBoundTracesPerSecond\":");
        out.push_str(&go_json::float(ops.default_lower_bound_traces_per_second));
        out.push_str(",\"perOperationStrategies\":[");
        for (i, op) in ops.per_operation_strategies.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"operation\":");
            go_json::push_string(&mut out, &op.operation);
            out.push_str(",\"probabilisticSampling\":");
            match &op.probabilistic_sampling {
                Some(p) => push_probabilistic(&mut out, p),
                None => out.push_str("null"),
            }
            out.push('}');
        }
        out.push_str("],\"defaultUpperBoundTracesPerSecond\":");
        out.push_str(&go_json::float(ops.default_upper_bound_traces_per_second));
        out.push('}');
    }
    out.push('}');
    Some(out)
}

fn push_probabilistic(out: &mut String, p: &ProbabilisticSamplingStrategy) {
    out.push_str("{\"samplingRate\":");
    out.push_str(&go_json::float(p.sampling_rate));
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Strategies {
        Strategies::parse(json.as_bytes(), DEFAULT_SAMPLING_PROBABILITY).unwrap()
    }

    fn json(s: &Strategies, service: &str) -> String {
        to_jaeger_json(s.for_service(service)).unwrap()
    }

    #[test]
    fn no_file_and_null_file_give_jaegers_default() {
        let d = Strategies::defaults(DEFAULT_SAMPLING_PROBABILITY);
        assert_eq!(
            json(&d, "any"),
            r#"{"strategyType":0,"probabilisticSampling":{"samplingRate":0.001}}"#
        );
        assert_eq!(parse("null"), d);
        assert_eq!(parse("{}"), d);
    }

    // The fixture of Jaeger's own provider tests (`fixtures/strategies.json`) and the
    // answers its tests expect.
    #[test]
    fn services_and_default() {
        let s = parse(
            r#"{"default_strategy": {"type": "probabilistic", "param": 0.5},
                "service_strategies": [
                  {"service": "foo", "type": "probabilistic", "param": 0.8},
                  {"service": "bar", "type": "ratelimiting", "param": 5}]}"#,
        );
        assert_eq!(
            json(&s, "foo"),
            r#"{"strategyType":0,"probabilisticSampling":{"samplingRate":0.8}}"#
        );
        assert_eq!(
            json(&s, "bar"),
            r#"{"strategyType":1,"rateLimitingSampling":{"maxTracesPerSecond":5}}"#
        );
        assert_eq!(
            json(&s, "other"),
            r#"{"strategyType":0,"probabilisticSampling":{"samplingRate":0.5}}"#
        );
    }

    // Jaeger's `TestServiceNoPerOperationStrategies` fixture: the default's operations
    // reach services without their own, with the service's rate as their default.
    #[test]
    fn default_operations_merge_into_services() {
        let s = parse(
            r#"{
  "service_strategies": [
    {"service": "ServiceA", "type": "probabilistic", "param": 1.0},
    {"service": "ServiceB", "type": "ratelimiting", "param": 3}
  ],
  "default_strategy": {
    "type": "probabilistic", "param": 0.2,
    "operation_strategies": [
      {"operation": "/health", "type": "probabilistic", "param": 0.0}
    ]
  }
}"#,
        );
        assert_eq!(
            json(&s, "ServiceA"),
            r#"{"strategyType":0,"probabilisticSampling":{"samplingRate":1},"operationSampling":{"defaultSamplingProbability":1,"defaultLowerBoundTracesPerSecond":0,"perOperationStrategies":[{"operation":"/health","probabilisticSampling":{"samplingRate":0}}],"defaultUpperBoundTracesPerSecond":0}}"#
        );
        assert_eq!(
            json(&s, "ServiceB"),
            r#"{"strategyType":1,"rateLimitingSampling":{"maxTracesPerSecond":3},"operationSampling":{"defaultSamplingProbability":0.2,"defaultLowerBoundTracesPerSecond":0,"perOperationStrategies":[{"operation":"/health","probabilisticSampling":{"samplingRate":0}}],"defaultUpperBoundTracesPerSecond":0}}"#
        );
    }

    // Jaeger's `operation_strategies.json` cases: own operations first, then the default's
    // it does not list; rate-limiting operation entries dropped; the default probability
    // of a rate-limited service's operations is `default_probability`.
    #[test]
    fn own_operations_first_then_defaults_ratelimited_entries_dropped() {
        let s = parse(
            r#"{
  "default_strategy": {"type": "probabilistic", "param": 0.5,
    "operation_strategies": [
      {"operation": "op0", "type": "probabilistic", "param": 0.2},
      {"operation": "op6", "type": "probabilistic", "param": 0}]},
  "service_strategies": [
    {"service": "foo", "type": "probabilistic", "param": 0.8,
     "operation_strategies": [
       {"operation": "op6", "type": "probabilistic", "param": 0.5},
       {"operation": "op1", "type": "probabilistic", "param": 0.2},
       {"operation": "op0", "type": "ratelimiting", "param": 2}]},
    {"service": "bar", "type": "ratelimiting", "param": 5,
     "operation_strategies": [{"operation": "op3", "type": "probabilistic", "param": 0.3}]}
  ]
}"#,
        );
        let foo = s.for_service("foo").operation_sampling.clone().unwrap();
        let names: Vec<(&str, f64)> = foo
            .per_operation_strategies
            .iter()
            .map(|o| {
                (
                    o.operation.as_str(),
                    o.probabilistic_sampling.as_ref().unwrap().sampling_rate,
                )
            })
            .collect();
        // op0 was listed by foo only as rate-limiting (dropped), so the default's op0 joins
        assert_eq!(names, vec![("op6", 0.5), ("op1", 0.2), ("op0", 0.2)]);
        assert_eq!(foo.default_sampling_probability, 0.8);
        let bar = s.for_service("bar").operation_sampling.clone().unwrap();
        assert_eq!(
            bar.default_sampling_probability,
            DEFAULT_SAMPLING_PROBABILITY
        );
        assert_eq!(bar.per_operation_strategies.len(), 3);
        assert_eq!(
            s.for_service("bar")
                .rate_limiting_sampling
                .as_ref()
                .unwrap()
                .max_traces_per_second,
            5
        );
    }

    #[test]
    fn read_like_go() {
        // case-insensitive keys, unknown keys ignored, nulls absent, unknown type → default
        let s = parse(
            r#"{"Service_Strategies": [
                 {"SERVICE": "a", "Type": "probabilistic", "Param": 0.25, "extra": [1]},
                 {"service": "b", "type": "sometimes", "param": 0.7},
                 {"service": "c", "type": "ratelimiting", "param": 2.9},
                 {"service": "d", "type": null, "operation_strategies": null}],
               "default_strategy": null, "comment": "x"}"#,
        );
        assert_eq!(
            s.for_service("a")
                .probabilistic_sampling
                .as_ref()
                .unwrap()
                .sampling_rate,
            0.25
        );
        assert_eq!(*s.for_service("b"), probabilistic(0.001));
        assert_eq!(
            s.for_service("c")
                .rate_limiting_sampling
                .as_ref()
                .unwrap()
                .max_traces_per_second,
            2
        );
        assert_eq!(*s.for_service("d"), probabilistic(0.001));
        assert_eq!(*s.for_service("zzz"), probabilistic(0.001));
    }

    #[test]
    fn bad_files_say_where() {
        for (file, expect) in [
            ("{", "not valid JSON"),
            ("[]", "must hold a JSON object"),
            (
                r#"{"default_strategy": 3}"#,
                "default_strategy: expected an object",
            ),
            (
                r#"{"service_strategies": {}}"#,
                "service_strategies: expected an array",
            ),
            (
                r#"{"service_strategies": [null]}"#,
                "service_strategies[0]: expected an object",
            ),
            (
                r#"{"service_strategies": [{"service": 1}]}"#,
                "service_strategies[0].service: expected a string",
            ),
            (
                r#"{"service_strategies": [{"service": "a", "param": "0.5"}]}"#,
                "service_strategies[0].param: expected a number",
            ),
            (
                r#"{"service_strategies": [{"service": "a", "type": "probabilistic", "param": 10}]}"#,
                "service_strategies[0].param: 10 is not a sampling probability",
            ),
            (
                r#"{"default_strategy": {"type": "ratelimiting", "param": -1}}"#,
                "default_strategy.param: -1 is not a number of traces per second",
            ),
            (
                r#"{"default_strategy": {"operation_strategies": [{"operation": "x", "type": "probabilistic", "param": 1.5}]}}"#,
                "default_strategy.operation_strategies[0].param",
            ),
        ] {
            let err = Strategies::parse(file.as_bytes(), 0.001).unwrap_err();
            assert!(err.contains(expect), "{file}: {err}");
        }
    }

    #[test]
    fn json_text_is_gos() {
        assert_eq!(go_json::float(1.0), "1");
        assert_eq!(go_json::float(0.0), "0");
        assert_eq!(go_json::float(0.001), "0.001");
        assert_eq!(go_json::float(0.000001), "0.000001");
        assert_eq!(go_json::float(1e-7), "1e-7");
        assert_eq!(go_json::float(1.5e-10), "1.5e-10");
        assert_eq!(go_json::float(1e21), "1e+21");
        assert_eq!(go_json::float(123456.75), "123456.75");
        let mut s = String::new();
        go_json::push_string(&mut s, "a\"b\\<c>&\n\u{1}\u{2028}é");
        assert_eq!(s, r#""a\"b\\\u003cc\u003e\u0026\n\u0001\u2028é""#);
        // int16 is the Thrift field's type: Jaeger answers 500 above it
        let big = parse(r#"{"default_strategy": {"type": "ratelimiting", "param": 40000}}"#);
        assert_eq!(to_jaeger_json(&big.default), None);
        let empty = parse(
            r#"{"default_strategy": {"type": "probabilistic", "param": 0.5, "operation_strategies": [{"operation": "x", "type": "ratelimiting", "param": 1}]}}"#,
        );
        assert_eq!(
            json(&empty, "q"),
            r#"{"strategyType":0,"probabilisticSampling":{"samplingRate":0.5},"operationSampling":{"defaultSamplingProbability":0.5,"defaultLowerBoundTracesPerSecond":0,"perOperationStrategies":[],"defaultUpperBoundTracesPerSecond":0}}"#
        );
    }
}
