use crate::harness::{Server, client};

#[tokio::test]
async fn health_answers_and_sigterm_stops_cleanly() {
    let server = Server::start();
    let res = client().get(server.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let ready: serde_json::Value = client().get(server.url("/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["database"], "ok");
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
}
