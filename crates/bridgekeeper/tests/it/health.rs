use crate::harness::{Server, client, operator_token};

#[tokio::test]
async fn health_answers_and_sigterm_stops_cleanly() {
    let server = Server::start();
    let res = client().get(server.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let ready: serde_json::Value = client().get(server.url("/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["database"], "ok");
    // Audit events of the requests above are counted (written or dropped, never silently lost).
    let operator = operator_token(&server);
    let m = client().get(server.url("/metrics")).bearer_auth(&operator).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("bridgekeeper_audit_events_written_total "), "{m}");
    assert!(m.contains("bridgekeeper_audit_events_dropped_total 0"), "{m}");
    if !crate::harness::on_postgres() {
        // The embedded database's file system is watched (the first sample is taken at start).
        assert!(m.contains("bridgekeeper_data_dir_free_bytes "), "{m}");
    }
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_problem_json() {
    let server = Server::start();
    let http = reqwest::Client::new();
    let res = http.get(server.url("/api/v1/nothing-here")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!((p["status"].as_u64(), p["title"].as_str()), (Some(404), Some("Not found")));
    assert!(p["detail"].as_str().unwrap().contains("GET /api/v1/nothing-here"), "{p}");

    let res = http.delete(server.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let allow = res.headers().get("allow").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert!(allow.contains("GET"), "Allow names what the route answers: {allow:?}");
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!(p["status"], 405);
}
