//! Every record format consumed and stored, offsets committed: clew's Avro, OTLP
//! protobuf and OTLP/JSON by topic name and pattern, Avro written by Python fastavro.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (KAFKA_BOOTSTRAP; scripts/kafka-start); scripts/test runs it"]
async fn avro_records_are_stored_with_every_span_and_offsets_committed() {
    let topic = unique("clew-avro");
    let group = unique("clew-group");
    create_topic(&topic, 4).await;
    let p = producer();
    // 12 traces; each in two records (spans 1–3, then the late spans 4–5)
    let mut traces = Vec::new();
    for i in 0..12 {
        let trace = random_trace_id();
        let order = unique(&format!("order{i}"));
        for ids in [1..=3, 4..=5] {
            let spans = model_spans(trace_request(trace, "checkout", ids, &order));
            let key = clew_proto::avro::record_key(&spans[0]);
            produce(
                &p,
                &topic,
                None,
                &key,
                &clew_proto::avro::encode_batch(&spans),
                None,
            )
            .await;
        }
        traces.push((trace, order));
    }

    let dir = tempfile::tempdir().unwrap();
    let config = kafka_config(
        dir.path(),
        &group,
        &format!("topics = [{{ name = \"{topic}\", format = \"avro\" }}]"),
    );
    let clew = Clew::start(&["--config", config.to_str().unwrap()]);
    for (trace, order) in &traces {
        let t = wait_trace(&clew, trace, 5, WAIT).await;
        let want: Vec<String> = (1..=5).map(|i| format!("{i:016x}")).collect();
        assert_eq!(span_ids(&t), want);
        assert_eq!(
            span_named(&t, "op-1")["business_keys"]["order_id"],
            order.as_str()
        );
        assert_eq!(
            span_named(&t, "op-2")["attributes"]["db.system"],
            "postgresql"
        );
        assert_eq!(span_named(&t, "op-1")["service"], "checkout");
    }
    // searchable by business key (indexed, not only stored)
    let (trace, order) = &traces[0];
    clew.wait_for(&format!("/api/v1/keys/order_id/{order}"), WAIT, |b| {
        trace_ids(b) == vec![hex::encode(trace)]
    })
    .await;

    wait_metric(
        &clew,
        "clew_kafka_records_done_total",
        &[("topic", &topic), ("outcome", "stored")],
        24.0,
        WAIT,
    )
    .await;
    assert_eq!(
        metric(
            &clew,
            "clew_collector_spans_received_total",
            &[("protocol", "kafka")]
        )
        .await,
        Some(60.0)
    );
    // every record's offset is committed: 24 records over 4 partitions
    let deadline = Instant::now() + WAIT;
    loop {
        let (g, t) = (group.clone(), topic.clone());
        let got = tokio::task::spawn_blocking(move || committed(&g, &t, 4))
            .await
            .unwrap();
        // a partition that got no record has no committed offset (-1)
        if got.iter().map(|o| (*o).max(0)).sum::<i64>() == 24 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "committed {got:?}, want 24 records in total"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // and the lag gauge says so
    let deadline = Instant::now() + WAIT;
    loop {
        let text = reqwest::get(clew.api_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let lags: Vec<f64> = (0..4)
            .filter_map(|p| {
                metric_in(
                    &text,
                    "clew_kafka_consumer_lag",
                    &[("topic", &topic), ("partition", &p.to_string())],
                )
            })
            .collect();
        if lags.len() == 4 && lags.iter().all(|l| *l == 0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "consumer lag never reached 0 on all 4 partitions: {lags:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (KAFKA_BOOTSTRAP; scripts/kafka-start); scripts/test runs it"]
async fn otlp_proto_and_otlp_json_records_by_name_and_by_pattern() {
    let proto_topic = unique("clew-otlp-proto");
    let json_prefix = unique("clew-otlp-json");
    let json_topic = format!("{json_prefix}-a");
    let group = unique("clew-group");
    create_topic(&proto_topic, 4).await;
    // a pattern subscription sees topics that exist when it joins (or at the next metadata refresh)
    create_topic(&json_topic, 2).await;
    let p = producer();

    // what the OpenTelemetry Collector's Kafka exporter writes with encoding otlp_proto:
    // one whole ExportTraceServiceRequest per record
    let proto_trace = random_trace_id();
    let proto_order = unique("order-proto");
    let req = trace_request(proto_trace, "otel-proto-svc", 1..=4, &proto_order);
    produce(
        &p,
        &proto_topic,
        None,
        &proto_trace,
        &req.encode_to_vec(),
        None,
    )
    .await;

    // encoding otlp_json, as text: hex ids, 64-bit integers as strings, enums as integers
    let json_trace = random_trace_id();
    let json_order = unique("order-json");
    let start = now_unix_nano() - 5_000_000;
    let json = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"otel-json-svc"}}}}]}},
        "scopeSpans":[{{"scope":{{"name":"otelcol"}},"spans":[
          {{"traceId":"{t}","spanId":"00000000000000a1","parentSpanId":"","name":"GET /json","kind":2,
            "startTimeUnixNano":"{s}","endTimeUnixNano":"{e}",
            "attributes":[{{"key":"order_id","value":{{"stringValue":"{o}"}}}},{{"key":"http.status_code","value":{{"intValue":"200"}}}}],
            "status":{{}}}},
          {{"traceId":"{T}","spanId":"00000000000000A2","parentSpanId":"00000000000000a1","name":"query","kind":3,
            "startTimeUnixNano":"{s}","endTimeUnixNano":{e},"status":{{"code":2,"message":"timeout"}},"futureField":true}}
        ]}}]}}]}}"#,
        t = hex::encode(json_trace),
        T = hex::encode_upper(json_trace),
        s = start,
        e = start + 2_000_000,
        o = json_order,
    );
    produce(&p, &json_topic, None, &json_trace, json.as_bytes(), None).await;

    let dir = tempfile::tempdir().unwrap();
    let config = kafka_config(
        dir.path(),
        &group,
        &format!(
            "topics = [{{ name = \"{proto_topic}\", format = \"otlp_proto\" }}, {{ pattern = \"^{json_prefix}-.*\", format = \"otlp_json\" }}]"
        ),
    );
    let clew = Clew::start(&["--config", config.to_str().unwrap()]);

    let t = wait_trace(&clew, &proto_trace, 4, WAIT).await;
    assert_eq!(span_ids(&t).len(), 4);
    assert_eq!(span_named(&t, "op-1")["service"], "otel-proto-svc");
    assert_eq!(
        span_named(&t, "op-1")["business_keys"]["order_id"],
        proto_order.as_str()
    );

    let t = wait_trace(&clew, &json_trace, 2, WAIT).await;
    assert_eq!(
        span_ids(&t),
        vec![
            "00000000000000a1".to_string(),
            "00000000000000a2".to_string()
        ]
    );
    let root = span_named(&t, "GET /json");
    assert_eq!(root["service"], "otel-json-svc");
    assert_eq!(root["attributes"]["http.status_code"], 200);
    assert_eq!(root["business_keys"]["order_id"], json_order.as_str());
    assert_eq!(span_named(&t, "query")["status"]["code"], "error");
    assert_eq!(
        span_named(&t, "query")["parent_span_id"],
        "00000000000000a1"
    );

    clew.wait_for(&format!("/api/v1/keys/order_id/{json_order}"), WAIT, |b| {
        trace_ids(b) == vec![hex::encode(json_trace)]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (KAFKA_BOOTSTRAP) and fastavro (scripts/setup-python); scripts/test runs it"]
async fn avro_written_by_fastavro_from_the_published_schema_is_consumed() {
    let topic = unique("clew-fastavro");
    let group = unique("clew-group");
    create_topic(&topic, 1).await;
    let trace = random_trace_id();
    let order = unique("order-py");
    let start = now_unix_nano() - 60_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("from_python.avro");
    let root = env!("CARGO_MANIFEST_DIR");
    let status = std::process::Command::new(python())
        .arg(format!("{root}/tests/python/avro_kafka_record.py"))
        .arg(format!("{root}/proto/schemas/span_batch_v1.avsc"))
        .arg(&out)
        .arg(hex::encode(trace))
        .arg(start.to_string())
        .arg(&order)
        .status()
        .expect("run python");
    assert!(status.success(), "avro_kafka_record.py failed: {status}");
    let bytes = std::fs::read(&out).unwrap();
    produce(&producer(), &topic, None, &trace, &bytes, None).await;

    // the collector knows no business keys of its own here: order_id comes from the record
    let config = kafka_config(
        dir.path(),
        &group,
        &format!("topics = [{{ name = \"{topic}\", format = \"avro\" }}]"),
    );
    let clew = Clew::start(&["--config", config.to_str().unwrap()]);
    let t = wait_trace(&clew, &trace, 3, WAIT).await;
    assert_eq!(
        span_ids(&t),
        vec![
            "0101010101010101".to_string(),
            "0202020202020202".to_string(),
            "0303030303030303".to_string()
        ]
    );
    let root = span_named(&t, "POST /checkout");
    assert_eq!(root["service"], "py-checkout");
    assert_eq!(root["kind"], "server");
    assert_eq!(root["parent_span_id"], serde_json::Value::Null);
    assert_eq!(root["start_time_unix_nano"], start.to_string());
    assert_eq!(root["duration_nanos"], 40_000_000);
    assert_eq!(root["attributes"]["http.route"], "/checkout");
    assert_eq!(root["attributes"]["http.status_code"], 500);
    assert_eq!(root["attributes"]["retry"], false);
    assert_eq!(root["business_keys"]["order_id"], order.as_str());
    assert_eq!(root["scope"]["name"], "fastavro-test");
    let charge = span_named(&t, "charge card");
    assert_eq!(charge["parent_span_id"], "0101010101010101");
    assert_eq!(charge["status"]["code"], "error");
    assert_eq!(charge["status"]["message"], "card declined");
    assert_eq!(charge["attributes"]["amount"], 12.5);
    assert_eq!(charge["events"][0]["name"], "exception");
    assert_eq!(
        charge["events"][0]["attributes"]["exception.type"],
        "CardDeclined"
    );
    let db = span_named(&t, "SELECT cards");
    assert_eq!(db["kind"], "client");
    assert_eq!(db["attributes"]["db.system"], "postgresql");
    assert_eq!(db["attributes"]["tags"], serde_json::json!(["a", 2]));
    // searchable by the key the record carried, and by error
    clew.wait_for(&format!("/api/v1/keys/order_id/{order}"), WAIT, |b| {
        trace_ids(b) == vec![hex::encode(trace)]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (KAFKA_BOOTSTRAP; scripts/kafka-start); scripts/test runs it"]
async fn error_spans_from_kafka_count_for_the_alert_rules_like_otlp_ones() {
    let topic = unique("clew-alerts");
    let group = unique("clew-group");
    create_topic(&topic, 2).await;
    let p = producer();
    // 5 records of 4 error spans each (4 hosts' worth), ids in the message normalised away
    for r in 0..5u64 {
        let trace = random_trace_id();
        let spans = (1..=4u64)
            .map(|i| {
                let mut s = otlp_span(trace, i, None, "fetch-rates", vec![]);
                s.status = Some(clew_proto::otlp::trace::v1::Status {
                    code: 2,
                    message: format!("upstream timeout after {} ms (request {r}{i})", 3000 + r),
                });
                s
            })
            .collect();
        let req = request("fx-service", spans);
        produce(&p, &topic, None, &trace, &req.encode_to_vec(), None).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = kafka_config(
        dir.path(),
        &group,
        &format!("topics = [{{ name = \"{topic}\", format = \"otlp_proto\" }}]"),
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[alerting]\n[[alerting.error_rules]]\nname = \"kafka-errors\"\nmin_count = 20\nwindow = \"60s\"\n");
    std::fs::write(&config, text).unwrap();
    let clew = Clew::start(&["--config", config.to_str().unwrap()]);
    let board = clew
        .wait_for("/api/v1/alerts", WAIT, |b| {
            b["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["count"] == 20))
        })
        .await;
    let alerts = board["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "one signature: {board}");
    let a = &alerts[0];
    assert_eq!(a["state"], "firing");
    assert_eq!(a["alertname"], "kafka-errors");
    assert_eq!(a["service"], "fx-service");
    assert_eq!(a["operation"], "fetch-rates");
    assert_eq!(a["message"], "upstream timeout after <n> ms (request <n>)");
}
