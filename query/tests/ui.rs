//! The browser UI as the server delivers it: static pages and assets under the strict
//! CSP (the pages themselves run in Chromium in the workspace's `tests/ui_browser.rs`).

mod common;

use common::*;

#[tokio::test]
async fn ui_pages_are_static_html_under_the_strict_csp() {
    let f = Fixture::new();
    for (path, script) in [
        ("/", "/ui/search.js"),
        ("/trace/0af7651916cd43dd8448eb211c80319c", "/ui/trace.js"),
        ("/keys/order_id/12345", "/ui/keys.js"),
        ("/map", "/ui/map.js"),
        ("/alerts", "/ui/alerts.js"),
    ] {
        let answer = f.get(path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(
            answer.header("content-type"),
            "text/html; charset=utf-8",
            "{path}"
        );
        answer.assert_security_headers();
        let body = &answer.body;
        assert!(
            body.contains(&format!(
                "<script type=\"module\" src=\"{script}\"></script>"
            )),
            "{path}"
        );
        assert!(
            body.contains("<link rel=\"stylesheet\" href=\"/ui/app.css\">"),
            "{path}"
        );
        // nothing inline that the CSP would have to allow, nothing from elsewhere
        assert_eq!(
            body.matches("<script").count(),
            1,
            "{path}: one script, by src"
        );
        assert!(
            !body.contains("style=") && !body.contains("<style"),
            "{path}: no inline style"
        );
        let inline_handler = body.split(" on").skip(1).any(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!inline_handler, "{path}: no inline event handler");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path}: no external asset"
        );
    }
    // the search page keeps the list of JSON endpoints
    let answer = f.get("/").await;
    for path in [
        "/api/v1/search?lookback=1h",
        "/api/v1/services",
        "/api/v1/dependencies?lookback=1h",
        "/healthz",
    ] {
        assert!(answer.body.contains(&format!("href=\"{path}")), "{path}");
    }
}

#[tokio::test]
async fn the_trace_page_is_served_for_any_id_and_reflects_none() {
    // the page is static: its script validates the id and the API answers a bad one with a
    // 400, which the page shows
    let f = Fixture::new();
    let good = f.get("/trace/0af7651916cd43dd8448eb211c80319c").await;
    for bad in [
        "/trace/not-hex",
        "/trace/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    ] {
        let answer = f.get(bad).await;
        assert_eq!(answer.status, StatusCode::OK, "{bad}");
        assert_eq!(answer.body, good.body, "{bad}: the same static page");
        answer.assert_security_headers();
    }
    assert_eq!(
        f.get("/api/v1/traces/not-hex").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn ui_assets_have_their_content_types() {
    let f = Fixture::new();
    for (name, content_type) in [
        ("app.css", "text/css; charset=utf-8"),
        ("common.js", "text/javascript; charset=utf-8"),
        ("search.js", "text/javascript; charset=utf-8"),
        ("trace.js", "text/javascript; charset=utf-8"),
        ("keys.js", "text/javascript; charset=utf-8"),
        ("map.js", "text/javascript; charset=utf-8"),
        ("alerts.js", "text/javascript; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let answer = f.get(&format!("/ui/{name}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{name}");
        assert_eq!(answer.header("content-type"), content_type, "{name}");
        answer.assert_security_headers();
        assert!(!answer.body.is_empty());
        if name.ends_with(".js") {
            // span data goes in as text only
            assert!(!answer.body.contains("innerHTML"), "{name}");
            assert!(!answer.body.contains("insertAdjacentHTML"), "{name}");
            assert!(!answer.body.contains("document.write"), "{name}");
            assert!(!answer.body.contains("eval("), "{name}");
        }
    }
    for missing in ["/ui/nope.js", "/ui/..%2Fsearch.html", "/ui/search.html"] {
        let message = f.get(missing).await.error(StatusCode::NOT_FOUND);
        assert!(message.contains("no UI asset"), "{missing}: {message}");
    }
}

#[tokio::test]
async fn the_alert_board_is_what_the_alert_evaluation_renders() {
    // a query-only process evaluates no alerts: an empty, disabled board
    let f = Fixture::new();
    let answer = f.get("/api/v1/alerts").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), "application/json");
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"enabled": false, "rules": [], "alerts": []})
    );
    // with an evaluation wired in, its board verbatim (the HTML stays JSON string data)
    let mut f = Fixture::new();
    let board = serde_json::json!({"enabled": true, "rules": ["errors"], "alerts": [
        {"state": "firing", "service": "<img src=x onerror=alert(1)>", "count": 3}
    ]});
    let served = board.clone();
    f.state = f
        .state
        .clone()
        .with_alerts(std::sync::Arc::new(move |_| served.clone()));
    let answer = f.get("/api/v1/alerts").await;
    assert_eq!(answer.status, StatusCode::OK);
    answer.assert_security_headers();
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body, board);
}
