//! Jaeger's remote-sampling messages (`jaeger.api_v2`, the contract in
//! `proto/schemas/jaeger/api_v2/sampling.proto`), as prost messages with Jaeger's field
//! numbers. The gRPC service `jaeger.api_v2.SamplingManager` that answers with them lives
//! in `clew-collector` (`sampling::grpc`).

/// The gRPC service's full name, as Jaeger registers it.
pub const SERVICE_NAME: &str = "jaeger.api_v2.SamplingManager";
/// Path of its only method.
pub const GET_SAMPLING_STRATEGY_PATH: &str = "/jaeger.api_v2.SamplingManager/GetSamplingStrategy";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SamplingStrategyType {
    Probabilistic = 0,
    RateLimiting = 1,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ProbabilisticSamplingStrategy {
    #[prost(double, tag = "1")]
    pub sampling_rate: f64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitingSamplingStrategy {
    #[prost(int32, tag = "1")]
    pub max_traces_per_second: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OperationSamplingStrategy {
    #[prost(string, tag = "1")]
    pub operation: String,
    #[prost(message, optional, tag = "2")]
    pub probabilistic_sampling: Option<ProbabilisticSamplingStrategy>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PerOperationSamplingStrategies {
    #[prost(double, tag = "1")]
    pub default_sampling_probability: f64,
    #[prost(double, tag = "2")]
    pub default_lower_bound_traces_per_second: f64,
    #[prost(message, repeated, tag = "3")]
    pub per_operation_strategies: Vec<OperationSamplingStrategy>,
    #[prost(double, tag = "4")]
    pub default_upper_bound_traces_per_second: f64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SamplingStrategyResponse {
    #[prost(enumeration = "SamplingStrategyType", tag = "1")]
    pub strategy_type: i32,
    #[prost(message, optional, tag = "2")]
    pub probabilistic_sampling: Option<ProbabilisticSamplingStrategy>,
    #[prost(message, optional, tag = "3")]
    pub rate_limiting_sampling: Option<RateLimitingSamplingStrategy>,
    #[prost(message, optional, tag = "4")]
    pub operation_sampling: Option<PerOperationSamplingStrategies>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SamplingStrategyParameters {
    #[prost(string, tag = "1")]
    pub service_name: String,
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// Bytes worked out by hand from the .proto's field numbers and types, so a wrong tag
    /// or type here cannot pass by agreeing with itself.
    #[test]
    fn wire_form_follows_the_contract() {
        let r = SamplingStrategyResponse {
            strategy_type: SamplingStrategyType::RateLimiting as i32,
            probabilistic_sampling: None,
            rate_limiting_sampling: Some(RateLimitingSamplingStrategy {
                max_traces_per_second: 5,
            }),
            operation_sampling: Some(PerOperationSamplingStrategies {
                default_sampling_probability: 0.5,
                default_lower_bound_traces_per_second: 0.0,
                per_operation_strategies: vec![OperationSamplingStrategy {
                    operation: "op".into(),
                    probabilistic_sampling: Some(ProbabilisticSamplingStrategy {
                        sampling_rate: 1.0,
                    }),
                }],
                default_upper_bound_traces_per_second: 0.0,
            }),
        };
        let mut expect = vec![0x08, 0x01]; // 1: varint 1
        expect.extend([0x1a, 0x02, 0x08, 0x05]); // 3: { 1: varint 5 }
                                                 // 4: { 1: double 0.5, 3: { 1: "op", 2: { 1: double 1.0 } } }
        let mut op = vec![0x0a, 0x02, b'o', b'p', 0x12, 0x09, 0x09];
        op.extend(1.0f64.to_le_bytes());
        let mut per = vec![0x09];
        per.extend(0.5f64.to_le_bytes());
        per.push(0x1a);
        per.push(op.len() as u8);
        per.extend(op);
        expect.push(0x22);
        expect.push(per.len() as u8);
        expect.extend(per);
        assert_eq!(r.encode_to_vec(), expect);
        assert_eq!(SamplingStrategyResponse::decode(&expect[..]).unwrap(), r);

        let p = SamplingStrategyParameters {
            service_name: "a".into(),
        };
        assert_eq!(p.encode_to_vec(), vec![0x0a, 0x01, b'a']);
    }
}
