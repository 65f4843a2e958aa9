//! The REST client: every request to the cluster goes through [`Client::send`], which
//! picks a node (round-robin, failing over to the next node on transport errors), adds the
//! credentials, and classifies failures into the store crate's [`Error`]:
//!
//! | what happened | error | why |
//! |---|---|---|
//! | connect error, timeout, broken body | `Unavailable` | the cluster may be back soon |
//! | HTTP 429, 5xx | `Unavailable` | overloaded or failing over |
//! | HTTP 401, 403 | `Unavailable` | an operator can fix credentials; ingest must not drop data meanwhile |
//! | other HTTP 4xx | `InvalidRequest` | the request itself is wrong; retrying cannot help |
//!
//! Credentials live in default headers marked sensitive; errors never carry them (reqwest
//! errors are stripped of their URL, which never holds credentials anyway).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::config::OpenSearchIndexConfig;
use crate::{Error, Result};

/// Longest part of an error body quoted in an error message.
const MAX_QUOTED_BODY: usize = 512;

/// A cluster client over one or more node URLs.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    urls: std::sync::Arc<[String]>,
    next: std::sync::Arc<AtomicUsize>,
}

/// A request body.
pub enum Body {
    None,
    Json(Value),
    /// Newline-delimited JSON (`_bulk`).
    NdJson(Vec<u8>),
}

impl Client {
    /// Builds the client from the index config; no network I/O.
    pub fn new(config: &OpenSearchIndexConfig) -> Result<Client> {
        let OpenSearchIndexConfig {
            urls,
            username,
            password,
            bearer_token,
            ca_cert_path,
            insecure_skip_verify,
            timeout_ms,
            ..
        } = config;
        let mut headers = HeaderMap::new();
        let auth = match (username, password, bearer_token) {
            (Some(user), Some(pass), _) => Some(format!(
                "Basic {}",
                base64_encode_std(format!("{user}:{}", pass.expose()).as_bytes())
            )),
            (_, _, Some(token)) => Some(format!("Bearer {}", token.expose())),
            _ => None,
        };
        if let Some(auth) = auth {
            let mut value = HeaderValue::from_str(&auth).map_err(|_| {
                Error::Config("index credentials contain characters not allowed in a header".into())
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let timeout = Duration::from_millis(*timeout_ms);
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .danger_accept_invalid_certs(*insecure_skip_verify);
        if let Some(path) = ca_cert_path {
            let pem = std::fs::read(path).map_err(|e| {
                Error::Config(format!(
                    "failed to read index.ca_cert_path {}: {e}",
                    path.display()
                ))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Error::Config(format!(
                    "index.ca_cert_path {} is not a PEM certificate: {e}",
                    path.display()
                ))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("failed to build the opensearch client: {e}")))?;
        Ok(Client {
            http,
            urls: urls
                .iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            next: Default::default(),
        })
    }

    /// Sends one request and returns the parsed JSON answer of a 2xx response. Transport
    /// errors fail over to the next node (each node tried once); HTTP errors do not.
    pub async fn send(
        &self,
        context: &'static str,
        method: Method,
        path_and_query: &str,
        body: &Body,
    ) -> Result<Value> {
        let (status, bytes) = self.send_raw(context, method, path_and_query, body).await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| Error::unavailable(context, format!("unreadable answer: {e}")));
        }
        Err(http_error(context, status, &bytes))
    }

    /// Like [`Client::send`], but hands back any HTTP answer with its status.
    pub async fn send_raw(
        &self,
        context: &'static str,
        method: Method,
        path_and_query: &str,
        body: &Body,
    ) -> Result<(StatusCode, Bytes)> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last_error = None;
        for i in 0..self.urls.len() {
            let base = &self.urls[(first + i) % self.urls.len()];
            let mut req = self
                .http
                .request(method.clone(), format!("{base}{path_and_query}"));
            req = match body {
                Body::None => req,
                Body::Json(v) => req
                    .header(CONTENT_TYPE, "application/json")
                    .body(serde_json::to_vec(v).unwrap_or_default()),
                Body::NdJson(b) => req
                    .header(CONTENT_TYPE, "application/x-ndjson")
                    .body(b.clone()),
            };
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    match resp.bytes().await {
                        Ok(bytes) => return Ok((status, bytes)),
                        Err(e) => last_error = Some(e.without_url()),
                    }
                }
                Err(e) => last_error = Some(e.without_url()),
            }
        }
        let e = last_error.map_or_else(|| "no node urls".to_string(), |e| describe(&e));
        Err(Error::unavailable(
            context,
            format!("opensearch unreachable: {e}"),
        ))
    }
}

/// The error of a non-2xx answer.
pub fn http_error(context: &'static str, status: StatusCode, body: &[u8]) -> Error {
    let reason = error_reason(body);
    let message = format!("opensearch answered {status}: {reason}");
    if status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
    {
        Error::unavailable(context, message)
    } else {
        Error::InvalidRequest(format!("{context}: {message}"))
    }
}

/// `error.type: error.reason` of an OpenSearch error body, else its first bytes.
pub fn error_reason(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(e) = v.get("error") {
            return describe_error_object(e);
        }
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_QUOTED_BODY)]);
    text.into_owned()
}

/// `type: reason` of an OpenSearch `error` object (or its text when it is a string).
pub fn describe_error_object(e: &Value) -> String {
    match e {
        Value::String(s) => s.clone(),
        _ => {
            let ty = e.get("type").and_then(Value::as_str).unwrap_or("error");
            let reason = e.get("reason").and_then(Value::as_str).unwrap_or("");
            let mut out = format!("{ty}: {reason}");
            if out.len() > MAX_QUOTED_BODY {
                let mut cut = MAX_QUOTED_BODY;
                while !out.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.truncate(cut);
            }
            out
        }
    }
}

/// A transport error with its cause chain (reqwest's own text is terse).
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Standard base64 with padding (HTTP basic auth).
fn base64_encode_std(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_status() {
        let body = br#"{"error":{"type":"es_rejected_execution_exception","reason":"queue full"},"status":429}"#;
        let e = http_error("bulk", StatusCode::TOO_MANY_REQUESTS, body);
        assert!(e.is_retryable());
        assert!(
            e.to_string()
                .contains("es_rejected_execution_exception: queue full"),
            "{e}"
        );
        assert!(http_error("x", StatusCode::SERVICE_UNAVAILABLE, b"").is_retryable());
        assert!(http_error("x", StatusCode::UNAUTHORIZED, b"").is_retryable());
        let bad = http_error("search", StatusCode::BAD_REQUEST, b"<html>nope</html>");
        assert!(
            matches!(bad, Error::InvalidRequest(ref m) if m.contains("<html>nope")),
            "{bad}"
        );
    }

    #[test]
    fn unreadable_or_invalid_ca_certificates_are_config_errors() {
        let config = |path: &std::path::Path| OpenSearchIndexConfig {
            urls: vec!["https://127.0.0.1:9200".into()],
            index_prefix: "clew-spans".into(),
            username: Some("clew".into()),
            password: Some(crate::Secret::new("hunter2")),
            bearer_token: None,
            ca_cert_path: Some(path.to_path_buf()),
            insecure_skip_verify: false,
            timeout_ms: 1000,
            bulk_max_docs: 10,
            bulk_max_bytes: 1 << 20,
            bulk_concurrency: 4,
            number_of_shards: 1,
            number_of_replicas: 0,
        };
        let dir = tempfile::tempdir().unwrap();
        let missing = Client::new(&config(&dir.path().join("nope.pem")))
            .err()
            .unwrap();
        assert!(
            matches!(missing, Error::Config(ref m) if m.contains("nope.pem")),
            "{missing}"
        );
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let invalid = Client::new(&config(&garbage)).err().unwrap();
        assert!(matches!(invalid, Error::Config(_)), "{invalid}");
        assert!(!invalid.to_string().contains("hunter2"));
    }

    #[test]
    fn basic_auth_is_standard_base64() {
        assert_eq!(base64_encode_std(b"clew:hunter2"), "Y2xldzpodW50ZXIy");
    }
}
