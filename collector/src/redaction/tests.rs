use std::sync::Arc;

use clew_proto::model::{any_value::Value, AnyValue, ArrayValue, Event, KeyValue, Resource};
use clew_proto::{BusinessKey, Span, SpanId, TraceId};

use super::*;

const CARD: &str = "4111 1111 1111 1111";
const KEY: &str = "0123456789abcdef-test-key";

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(k: &str, v: &str) -> KeyValue {
    kv(k, Value::StringValue(v.into()))
}

fn span(attrs: Vec<KeyValue>) -> Span {
    Span {
        tenant: Default::default(),
        trace_id: TraceId([1; 16]),
        span_id: SpanId([1; 8]),
        parent_span_id: None,
        trace_state: String::new(),
        flags: 0,
        name: "op".into(),
        kind: Default::default(),
        start_unix_nano: 1,
        end_unix_nano: 2,
        attributes: attrs,
        dropped_attributes_count: 0,
        events: vec![],
        dropped_events_count: 0,
        links: vec![],
        dropped_links_count: 0,
        status_code: Default::default(),
        status_message: String::new(),
        resource: Arc::new(Resource {
            attributes: vec![s("service.name", "shop")],
            ..Default::default()
        }),
        scope: Default::default(),
        service_name: "shop".into(),
        business_keys: vec![],
        repairs: 0,
    }
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> &'a str {
    match attr(span, key) {
        Some(Value::StringValue(s)) => s,
        other => panic!("{key}: {other:?}"),
    }
}

fn redactor(toml_text: &str, business_keys: &[&str]) -> Redactor {
    let mut config: RedactionConfig = toml::from_str(toml_text).unwrap();
    config.hash_key = Some(KEY.into());
    let keys: Vec<String> = business_keys.iter().map(|k| k.to_string()).collect();
    Redactor::new(&config, &keys).unwrap()
}

fn redact(r: &Redactor, span: Span) -> Span {
    let mut spans = vec![span];
    r.redact_all(&mut spans);
    spans.pop().unwrap()
}

#[test]
fn default_rules_mask_secret_keys_and_values_and_record_the_rules() {
    let r = redactor("", &[]);
    let mut sp = span(vec![
        s(
            "db.statement",
            &format!("SELECT * FROM t WHERE pan = '{CARD}'"),
        ),
        s("user.password", "hunter2"),
        s("http.request.header.authorization", "Bearer abcdefgh12345"),
        s(
            "url.full",
            "https://shop.example/cb?order=1&token=s3cr3t-v4lue",
        ),
        s("http.route", "/checkout"),
        kv("gen_ai.usage.input_tokens", Value::IntValue(42)),
        kv(
            "http.request.header.cookie",
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(Value::StringValue("sid=abc".into())),
                }],
            }),
        ),
    ]);
    sp.events.push(Event {
        name: "exception".into(),
        attributes: vec![
            s("exception.message", &format!("card {CARD} declined")),
            s(
                "exception.stacktrace",
                "at pay(Pay.java:12) password=hunter2",
            ),
        ],
        ..Default::default()
    });
    sp.status_message = format!("declined {CARD}");
    sp.name = "GET /cb?token=abcdef".into();
    let out = redact(&r, sp);
    assert_eq!(
        text(&out, "db.statement"),
        "SELECT * FROM t WHERE pan = '****1111'"
    );
    assert_eq!(text(&out, "user.password"), "****");
    assert_eq!(text(&out, "http.request.header.authorization"), "****");
    assert_eq!(
        text(&out, "url.full"),
        "https://shop.example/cb?order=1&token=****"
    );
    assert_eq!(text(&out, "http.route"), "/checkout");
    assert_eq!(text(&out, "http.request.header.cookie"), "****");
    // a count under a `*token*` key is not a secret
    assert_eq!(
        attr(&out, "gen_ai.usage.input_tokens"),
        Some(&Value::IntValue(42))
    );
    let ev = &out.events[0].attributes;
    assert_eq!(
        ev[0].value.as_ref().unwrap().value,
        Some(Value::StringValue("card ****1111 declined".into()))
    );
    assert_eq!(
        ev[1].value.as_ref().unwrap().value,
        Some(Value::StringValue(
            "at pay(Pay.java:12) password=****".into()
        ))
    );
    assert_eq!(out.status_message, "declined ****1111");
    assert_eq!(out.name, "GET /cb?token=****");
    assert_eq!(
        text(&out, REDACTED_ATTRIBUTE),
        "password,authorization_header,cookie_header,card_number,url_secret"
    );
    // nothing of the originals is left anywhere
    let debug = format!("{out:?}");
    for secret in [
        "4111 1111 1111 1111",
        "hunter2",
        "abcdefgh12345",
        "s3cr3t",
        "sid=abc",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn a_span_without_secrets_is_left_alone() {
    let r = redactor("", &["order_id"]);
    let sp = span(vec![
        s("http.route", "/api/v1/orders/{id}"),
        s("trace.ref", "0af7651916cd43dd8448eb211c80319c"),
        s("time", "1700000000000000000"),
        kv("http.status_code", Value::IntValue(200)),
    ]);
    let before = sp.clone();
    let res = sp.resource.clone();
    let out = redact(&r, sp);
    assert_eq!(out, before);
    assert!(Arc::ptr_eq(&out.resource, &res), "resource not copied");
}

#[test]
fn business_keys_are_exempt_from_value_rules_but_not_from_key_rules() {
    // 4111111111111111 is Luhn-valid: as an order number it must stay
    let r = redactor(
        "exempt_keys = [\"invoice\"]\n[[rules]]\nname = \"user_hash\"\nattribute = \"user_id\"\naction = \"hash\"\n",
        &["order_id", "user_id"],
    );
    let mut sp = span(vec![
        s("order_id", "4111111111111111"),
        s("baggage.order_id", "4111111111111111"),
        s("invoice", "4111111111111111"),
        s("note", "4111111111111111"),
        s("user_id", "u-42"),
    ]);
    sp.business_keys.push(BusinessKey {
        name: "user_id".into(),
        value: "u-42".into(),
    });
    let out = redact(&r, sp);
    assert_eq!(text(&out, "order_id"), "4111111111111111");
    assert_eq!(text(&out, "baggage.order_id"), "4111111111111111");
    assert_eq!(text(&out, "invoice"), "4111111111111111");
    assert_eq!(text(&out, "note"), "****1111");
    let hashed = text(&out, "user_id");
    assert!(
        hashed.starts_with(HASH_PREFIX) && hashed.len() == 37,
        "{hashed}"
    );
    // a key carried by an Avro record gets the same hash as the attribute
    assert_eq!(out.business_keys[0].value, hashed);
    assert_eq!(text(&out, REDACTED_ATTRIBUTE), "user_hash,card_number");
}

#[test]
fn hash_keeps_equal_values_equal_and_depends_on_the_key() {
    let mut config: RedactionConfig = toml::from_str(
        "[[rules]]\nname = \"email\"\nattribute = \"user.email\"\naction = \"hash\"\n[[rules]]\nname = \"ssn\"\npattern = \"ssn=(\\\\d{3}-\\\\d{2}-\\\\d{4})\"\naction = \"hash\"\n",
    )
    .unwrap();
    config.hash_key = Some(KEY.into());
    let a = Redactor::new(&config, &[]).unwrap();
    config.hash_key = Some("another-key-of-16-bytes".into());
    let b = Redactor::new(&config, &[]).unwrap();
    let one = |r: &Redactor, email: &str| {
        text(&redact(r, span(vec![s("user.email", email)])), "user.email").to_string()
    };
    assert_eq!(one(&a, "ann@example.com"), one(&a, "ann@example.com"));
    assert_ne!(one(&a, "ann@example.com"), one(&a, "bob@example.com"));
    assert_ne!(one(&a, "ann@example.com"), one(&b, "ann@example.com"));
    assert!(!one(&a, "ann@example.com").contains("ann"));
    // hashing a hash (the agent hashed, the collector sees it again) changes nothing
    let once = redact(&a, span(vec![s("user.email", "ann@example.com")]));
    let twice = redact(&a, once.clone());
    assert_eq!(once, twice);
    // a pattern's hash replaces the matched group only
    let out = redact(&a, span(vec![s("msg", "ssn=123-45-6789 ok")]));
    let m = text(&out, "msg");
    assert!(m.starts_with("ssn=hmac:") && m.ends_with(" ok"), "{m}");
}

#[test]
fn drop_removes_the_attribute_and_the_matched_text_in_names() {
    let r = redactor(
        "default_rules = false\n[[rules]]\nname = \"internal\"\nattribute = \"internal.*\"\naction = \"drop\"\n[[rules]]\nname = \"ticket\"\npattern = \"TICKET-\\\\d+\"\naction = \"drop\"\n",
        &[],
    );
    let mut sp = span(vec![
        s("internal.debug", "x"),
        s("keep", "ok"),
        s("msg", "see TICKET-123"),
    ]);
    sp.name = "fix TICKET-9 now".into();
    let out = redact(&r, sp);
    assert!(attr(&out, "internal.debug").is_none());
    assert!(attr(&out, "msg").is_none());
    assert_eq!(text(&out, "keep"), "ok");
    assert_eq!(out.name, "fix  now");
    assert_eq!(text(&out, REDACTED_ATTRIBUTE), "internal,ticket");
}

#[test]
fn mask_keeps_at_most_keep_last_and_at_most_a_quarter() {
    assert_eq!(mask("4111111111111111", 4), "****1111");
    assert_eq!(mask("abcdef", 4), "****f");
    assert_eq!(mask("abc", 4), "****");
    assert_eq!(mask("ééééééééé", 2), "****éé");
    assert_eq!(mask("secret", 0), "****");
}

#[test]
fn shared_resources_are_redacted_once_and_every_span_records_it() {
    let r = redactor("", &[]);
    let resource = Arc::new(Resource {
        attributes: vec![s("service.name", "shop"), s("deploy.secret", "s3cr3t")],
        ..Default::default()
    });
    let mut spans: Vec<Span> = (0..3)
        .map(|_| {
            let mut sp = span(vec![]);
            sp.resource = resource.clone();
            sp
        })
        .collect();
    r.redact_all(&mut spans);
    for sp in &spans {
        assert_eq!(
            sp.resource.attributes[1].value.as_ref().unwrap().value,
            Some(Value::StringValue("****".into()))
        );
        assert_eq!(text(sp, REDACTED_ATTRIBUTE), "secret");
        assert_eq!(sp.service_name, "shop");
        assert!(Arc::ptr_eq(&sp.resource, &spans[0].resource));
    }
    // the original, shared with whoever else holds it, is untouched
    assert_eq!(
        resource.attributes[1].value.as_ref().unwrap().value,
        Some(Value::StringValue("s3cr3t".into()))
    );
}

#[test]
fn upstream_clew_redacted_is_extended_not_replaced() {
    let r = redactor("", &[]);
    let out = redact(
        &r,
        span(vec![
            s(REDACTED_ATTRIBUTE, "agent_rule"),
            s("api_token", "x"),
        ]),
    );
    assert_eq!(text(&out, REDACTED_ATTRIBUTE), "agent_rule,token");
}

#[test]
fn off_means_no_redactor() {
    let config: RedactionConfig = toml::from_str("enabled = false").unwrap();
    assert!(Redactor::from_config(&config, &[]).unwrap().is_none());
}
