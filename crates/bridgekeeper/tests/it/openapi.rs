//! The REST API's OpenAPI document (`GET /openapi.json`, `GET /docs`) as the real binary serves it,
//! and problem JSON on every REST error, extractor rejections included.
//!
//! How a route cannot go undocumented: `bk_api::router` is built only from `routes!(handler, …)`
//! (utoipa-axum), which registers each handler at the path and method of its own
//! `#[utoipa::path]` and adds that operation to the document — a handler without one does not
//! compile there. What remains is building a route some other way, which
//! `the_rest_face_builds_routes_only_from_documented_handlers` refuses in the REST face's sources;
//! `every_documented_operation_is_served` checks the other direction on the live server (no
//! operation in the document that the router does not answer).

use serde_json::{Value, json};

use crate::harness::{Flow, Server, operator_token};

/// Every route of the REST face on the day this test was written: the document must keep them all
/// (a route removed from it, or renamed, fails here; a new one is documented by construction).
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/auth/pat"),
    ("GET", "/api/v1/auth/pat"),
    ("DELETE", "/api/v1/auth/pat/{id}"),
    ("GET", "/api/v1/account"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/admin/audit"),
    ("GET", "/api/v1/admin/accounts"),
    ("GET", "/api/v1/admin/accounts/{id}"),
    ("DELETE", "/api/v1/admin/accounts/{id}"),
    ("POST", "/api/v1/admin/accounts/{id}/disable"),
    ("POST", "/api/v1/admin/accounts/{id}/enable"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/sessions"),
    ("DELETE", "/api/v1/sessions/{id}"),
    ("POST", "/api/v1/auth-clients"),
    ("GET", "/api/v1/auth-clients"),
    ("GET", "/api/v1/auth-clients/{id}"),
    ("PUT", "/api/v1/auth-clients/{id}"),
    ("DELETE", "/api/v1/auth-clients/{id}"),
    ("PUT", "/api/v1/auth-clients/{id}/secret"),
    ("POST", "/api/v1/auth/handoff/init"),
    ("GET", "/api/v1/providers"),
    ("GET", "/api/v1/providers/{id}"),
    ("GET", "/api/v1/connections"),
    ("POST", "/api/v1/connections/initiate"),
    ("GET", "/api/v1/connections/callback"),
    ("GET", "/.well-known/oauth-client"),
    ("GET", "/api/v1/connections/{id}"),
    ("DELETE", "/api/v1/connections/{id}"),
    ("PUT", "/api/v1/connections/{id}/refresh"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    // Served by the web face (their answer signs a browser in), documented here all the same.
    ("GET", "/api/v1/auth/nonce"),
    ("POST", "/api/v1/auth/authenticate"),
];

/// Operations under `/api/v1/` that take no credential: Sign-In with Ethereum's, which is how a
/// browser gets one.
const PUBLIC_SIWE: [&str; 2] = ["/api/v1/auth/nonce", "/api/v1/auth/authenticate"];

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// Every (METHOD, path, operation) of a document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                out.push((m.to_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// A response of an operation, its `$ref` to `#/components/responses/…` resolved.
fn resolve<'a>(doc: &'a Value, response: &'a Value) -> &'a Value {
    match response["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/responses/")) {
        Some(name) => &doc["components"]["responses"][name],
        None => response,
    }
}

async fn document(server: &Server) -> Value {
    let res = reqwest::get(server.url("/openapi.json")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_lists_every_route_with_its_security_and_problems() {
    let server = Server::start();
    let doc = document(&server).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["servers"], json!([{"url": server.issuer}]));
    // What is served is exactly what the REST face generates from its handlers, with the
    // operations the web face serves on the API's paths.
    let mut generated = bk_api::openapi_document();
    generated.merge(bk_web::openapi());
    let mut generated = serde_json::to_value(generated).unwrap();
    generated["servers"] = doc["servers"].clone();
    generated["components"]["schemas"]["Initiate"]["example"]["redirectUrl"] =
        json!(format!("{}/connections", server.issuer));
    assert_eq!(doc, generated, "the served document is the generated one");

    let ops = operations(&doc);
    for (method, path) in ROUTES {
        assert!(ops.iter().any(|(m, p, _)| m == method && p == path), "{method} {path} is not in the document");
    }
    let mut ids = std::collections::BTreeSet::new();
    for (method, path, op) in &ops {
        let what = format!("{method} {path}");
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{what} has no operationId"));
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        assert!(op["description"].as_str().is_some_and(|d| !d.is_empty()), "{what} has no description");
        if !path.starts_with("/api/v1/") {
            continue;
        }
        // The callback is the redirect URI providers send a person's browser back to: a page,
        // for a browser signed in here, not an API operation (its errors are pages too).
        if path == "/api/v1/connections/callback" {
            assert!(op.get("security").is_none(), "{what}");
            continue;
        }
        // Sign-In with Ethereum needs no credential, and documents its problem-JSON refusals.
        if PUBLIC_SIWE.contains(&path.as_str()) {
            assert!(op.get("security").is_none(), "{what}");
            for status in ["400", "404", "429", "503"] {
                let r = &op["responses"][status]["content"]["application/problem+json"]["schema"];
                assert!(r.is_object(), "{what} does not document its {status} problem");
            }
            continue;
        }
        let security = op["security"].as_array().unwrap_or_else(|| panic!("{what} has no security requirement"));
        assert!(!security.is_empty(), "{what} has an empty security requirement");
        for req in security {
            for (scheme, scopes) in req.as_object().unwrap() {
                assert!(doc["components"]["securitySchemes"][scheme].is_object(), "{what}: unknown scheme {scheme}");
                // A person's credential always names the scope it needs.
                if scheme == "bearer" {
                    assert!(!scopes.as_array().unwrap().is_empty(), "{what} does not name its scope");
                }
            }
        }
        let problems: Vec<&String> = op["responses"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(status, r)| {
                status.starts_with('4') && resolve(&doc, r)["content"]["application/problem+json"]["schema"].is_object()
            })
            .map(|(status, _)| status)
            .collect();
        assert!(!problems.is_empty(), "{what} documents no problem-JSON error");
        assert!(problems.iter().any(|s| *s == "401"), "{what} does not document 401");
        // What answers with a body documents its body.
        if op.get("requestBody").is_some() {
            assert!(op["requestBody"]["content"]["application/json"]["schema"].is_object(), "{what}");
            for status in ["400", "415"] {
                assert!(op["responses"].get(status).is_some(), "{what} takes JSON but does not document {status}");
            }
        }
        if op["parameters"].as_array().is_some_and(|p| p.iter().any(|p| p["in"] == "path")) {
            assert!(op["responses"].get("404").is_some(), "{what} reads an object but does not document 404");
        }
    }
    // Security schemes: a person's bearer credential and the operator's token.
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(doc["components"]["securitySchemes"]["operator"]["scheme"], "bearer");
    // No secret-shaped value anywhere in the document (its examples included).
    let text = doc.to_string();
    for prefix in ["bkp_", "bko_", "bkh_", "bkr_"] {
        let found = text.match_indices(prefix).any(|(i, _)| !text[i + prefix.len()..].starts_with('…'));
        assert!(!found, "the document carries something shaped like a {prefix} token");
    }

    // The page lists the same operations, without any script.
    let res = reqwest::get(server.url("/docs")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    let page = res.text().await.unwrap();
    assert!(!page.contains("<script"));
    for (_, _, op) in &ops {
        assert!(page.contains(op["operationId"].as_str().unwrap()));
    }
}

/// The REST face's sources build no route but through `routes!` (see the module docs).
#[test]
fn the_rest_face_builds_routes_only_from_documented_handlers() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/src");
    let mut routes_macros = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for (n, line) in source.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for undocumented in [
                ".route(",
                ".route_service(",
                ".nest(",
                ".nest_service(",
                ".merge(",
                ".fallback(",
                "Router::new",
                "routing::",
            ] {
                assert!(
                    !code.contains(undocumented),
                    "{}:{}: `{undocumented}` builds a route without an OpenAPI operation; register the handler \
                     with `routes!` and give it `#[utoipa::path]`",
                    path.display(),
                    n + 1
                );
            }
            routes_macros += code.matches(".routes(routes!(").count();
        }
    }
    assert!(routes_macros >= 20, "the router is built from routes! ({routes_macros} found)");
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let server = Server::start();
    let doc = document(&server).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for (method, path, _) in operations(&doc) {
        if path == "/api/v1/events" {
            continue; // without a credential it answers 401 at once (below); with one it streams
        }
        let url = server.url(&path.replace("{id}", "nothing_here"));
        let res = http.request(method.parse().unwrap(), &url).send().await.unwrap();
        let status = res.status().as_u16();
        let body = res.text().await.unwrap_or_default();
        // The server's own answers for a route it does not have.
        assert!(status != 405, "{method} {path} is documented but answers 405: {body}");
        assert!(!body.contains("there is no route"), "{method} {path} is documented but not routed: {body}");
    }
    let res = http.get(server.url("/api/v1/events")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

async fn assert_problem(res: reqwest::Response, status: u16, field: Option<&str>) -> Value {
    let what = res.url().to_string();
    assert_eq!(res.status(), status, "{what}");
    assert_eq!(res.headers()["content-type"], "application/problem+json", "{what}");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["status"], status, "{what}: {v}");
    assert_eq!(v["type"], "about:blank", "{what}: {v}");
    assert!(v["title"].is_string() && v["detail"].is_string(), "{what}: {v}");
    if let Some(f) = field {
        assert_eq!(v["field"], f, "{what}: {v}");
    }
    v
}

#[tokio::test]
async fn rest_errors_are_problem_json_including_rejected_extractions() {
    let server = Server::start();
    let flow = Flow::signup(&server, "problems@example.com").await;
    let res = flow
        .http
        .post(server.url("/api/v1/auth/pat"))
        .json(&json!({"name": "p", "scopes": ["account", "connections"]}))
        .send()
        .await;
    let pat = res.unwrap().json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(server.url(path)).bearer_auth(&pat).send();

    // 404: no such route; 405: a route asked with another method (a plain and a layered one).
    assert_problem(get("/api/v1/no-such-thing").await.unwrap(), 404, None).await;
    assert_problem(http.delete(server.url("/api/v1/account")).bearer_auth(&pat).send().await.unwrap(), 405, None).await;
    assert_problem(
        http.patch(server.url("/api/v1/auth-clients/cli_x")).bearer_auth(&pat).send().await.unwrap(),
        405,
        None,
    )
    .await;

    // A malformed JSON body, a body of another type, a body too large.
    let post = |body: &'static str, ct: &'static str| {
        http.post(server.url("/api/v1/auth/pat")).bearer_auth(&pat).header("content-type", ct).body(body).send()
    };
    let v = assert_problem(post("{\"name\": \"x\", ", "application/json").await.unwrap(), 400, None).await;
    assert!(v["detail"].as_str().unwrap().contains("not valid"), "{v}");
    assert_problem(post("{\"name\": \"x\", \"scopes\": 7}", "application/json").await.unwrap(), 400, Some("scopes"))
        .await;
    assert_problem(post("{\"name\": \"x\", \"bogus\": 1}", "application/json").await.unwrap(), 400, Some("bogus"))
        .await;
    assert_problem(post("name=x", "application/x-www-form-urlencoded").await.unwrap(), 415, None).await;
    let big = format!("{{\"name\": \"{}\", \"scopes\": []}}", "x".repeat(128 * 1024));
    let res = http.post(server.url("/api/v1/auth/pat")).bearer_auth(&pat).header("content-type", "application/json");
    assert_problem(res.body(big).send().await.unwrap(), 413, None).await;

    // Bad query parameters name themselves, whichever way the route reads its query.
    assert_problem(get("/api/v1/audit?limit=abc").await.unwrap(), 400, Some("limit")).await;
    assert_problem(get("/api/v1/audit?since=yesterday").await.unwrap(), 400, Some("since")).await;
    assert_problem(get("/api/v1/audit?bogus=1").await.unwrap(), 400, Some("bogus")).await;
    assert_problem(get("/api/v1/audit?limit=1&limit=2").await.unwrap(), 400, Some("limit")).await;
    assert_problem(get("/api/v1/connections?page=x").await.unwrap(), 400, Some("page")).await;
    let operator = operator_token(&server);
    let res = http.get(server.url("/api/v1/admin/audit?cursor=-x")).bearer_auth(&operator).send().await.unwrap();
    assert_problem(res, 400, Some("cursor")).await;
    let res = http.get(server.url("/api/v1/admin/accounts?status=gone")).bearer_auth(&operator).send().await.unwrap();
    assert_problem(res, 400, Some("status")).await;

    // A path parameter that is not UTF-8 once decoded.
    let res = http.delete(server.url("/api/v1/sessions/%FF%FE")).bearer_auth(&pat).send().await.unwrap();
    assert_problem(res, 400, Some("id")).await;

    // And the plain refusals.
    assert_problem(http.get(server.url("/api/v1/account")).send().await.unwrap(), 401, None).await;
    let res = http.get(server.url("/api/v1/account")).bearer_auth(&operator).send().await.unwrap();
    assert_problem(res, 403, None).await;
    assert_problem(get("/api/v1/providers").await.unwrap(), 403, None).await; // no scope `providers`
    assert_problem(get("/api/v1/sessions/ses_nothing").await.unwrap(), 405, None).await;
}

/// Found while fuzzing the API: the built-in client every personal access token's session belongs
/// to was an ordinary client to an operator, who could read, change or delete it through the API —
/// and deleting it revoked every account's tokens at once. It is no one's to manage.
#[tokio::test]
async fn operators_cannot_manage_the_builtin_personal_access_token_client() {
    let server = Server::start();
    let flow = Flow::signup(&server, "builtin@example.com").await;
    let res =
        flow.http.post(server.url("/api/v1/auth/pat")).json(&json!({"name": "p", "scopes": ["account"]})).send().await;
    let pat = res.unwrap().json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let operator = operator_token(&server);
    let http = reqwest::Client::new();
    let url = server.url("/api/v1/auth-clients/cli_personal_access_token");
    let body = json!({"name": "mine now", "redirectUris": ["https://evil.example/cb"]});
    assert_problem(http.get(&url).bearer_auth(&operator).send().await.unwrap(), 404, None).await;
    assert_problem(http.put(&url).bearer_auth(&operator).json(&body).send().await.unwrap(), 404, None).await;
    let secret = format!("{url}/secret");
    assert_problem(http.put(&secret).bearer_auth(&operator).send().await.unwrap(), 404, None).await;
    assert_problem(http.delete(&url).bearer_auth(&operator).send().await.unwrap(), 404, None).await;
    let res = http.get(server.url("/api/v1/account")).bearer_auth(&pat).send().await.unwrap();
    assert_eq!(res.status(), 200, "the account's personal access token still works");
}
