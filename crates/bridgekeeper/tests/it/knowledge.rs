//! Knowledge bases through the real binary: the REST API (`/api/v1/knowledge/…`, scope `user-data`)
//! and the MCP tools `add-to-knowledge-base` / `search-knowledge-base` through `/mcp`. Tenant
//! isolation and `allowedKnowledgeBaseIds` answer 404 / "not found" (never 403 for a base), URL
//! documents are fetched request-forgery safe, and limits refuse before anything is stored.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Flow, Server};

const SCOPES: &str = "user-data universal-mcp-read-write account";

/// A person signed up, with a PAT carrying `body`'s restrictions (and the scopes above).
async fn person(server: &Server, email: &str) -> (Flow, String) {
    let flow = Flow::signup(server, email).await;
    let token = pat(&flow, json!({})).await;
    (flow, token)
}

/// A PAT of `flow`'s account with the scopes above and `extra` fields (restrictions).
async fn pat(flow: &Flow, extra: Value) -> String {
    let mut body = json!({"name": "kb test", "scopes": SCOPES.split(' ').collect::<Vec<_>>()});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let res = flow.http.post(flow.url("/api/v1/auth/pat")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}

struct Api<'a> {
    server: &'a Server,
    token: &'a str,
}

impl Api<'_> {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method, self.server.url(&format!("/api/v1/knowledge{path}")))
            .bearer_auth(self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> u16 {
        self.send(reqwest::Method::DELETE, path, None).await.0
    }
    async fn create(&self, name: &str) -> String {
        let (status, v) = self.post("/bases", json!({"name": name})).await;
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }
    async fn add_text(&self, base: &str, title: &str, content: &str) -> (u16, Value) {
        self.post(&format!("/bases/{base}/documents"), json!({"title": title, "content": content})).await
    }
    async fn search(&self, path: &str, query: &str) -> (u16, Value) {
        let q = url::form_urlencoded::Serializer::new(String::new()).append_pair("query", query).finish();
        self.get(&format!("{path}?{q}")).await
    }
    async fn document_count(&self, base: &str) -> u64 {
        let (status, v) = self.get(&format!("/bases/{base}")).await;
        assert_eq!(status, 200, "{v}");
        v["documentCount"].as_u64().unwrap()
    }
}

/// `tools/call` through `/mcp`: `Ok(structuredContent)`, or `Err(text)` of a failed call (a tool
/// result with `isError`, or a JSON-RPC error).
async fn tool(server: &Server, token: &str, name: &str, args: Value) -> Result<Value, String> {
    let res = reqwest::Client::new()
        .post(server.url("/mcp"))
        .bearer_auth(token)
        .header("Accept", "application/json, text/event-stream")
        .header("X-Response-Format", "json")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": args}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    if let Some(e) = v.get("error") {
        return Err(e["message"].as_str().unwrap_or_default().to_owned());
    }
    let r = &v["result"];
    if r["isError"] == true {
        return Err(r["content"][0]["text"].as_str().unwrap_or_default().to_owned());
    }
    Ok(r["structuredContent"].clone())
}

fn titles(v: &Value) -> Vec<String> {
    v["results"].as_array().unwrap().iter().map(|h| h["title"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn knowledge_bases_crud_default_and_names_per_account() {
    let server = Server::start();
    let (_, alice) = person(&server, "kb-alice@example.com").await;
    let (_, bob) = person(&server, "kb-bob@example.com").await;
    let a = Api { server: &server, token: &alice };
    let b = Api { server: &server, token: &bob };
    // The default exists on first need, and is listed first.
    let (status, list) = a.get("/bases").await;
    assert_eq!(status, 200);
    let bases = list["knowledgeBases"].as_array().unwrap();
    assert_eq!(bases.len(), 1);
    assert_eq!((bases[0]["name"].as_str(), bases[0]["isDefault"].as_bool()), (Some("default"), Some(true)));
    let default_id = bases[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(a.get("/bases/default").await.1["id"], default_id.as_str());
    // Create, read, rename; a name is unique per account without case; two accounts may share one.
    let recipes = a.create("Recipes").await;
    let (status, dup) = a.post("/bases", json!({"name": "recipes"})).await;
    assert_eq!(status, 409, "{dup}");
    b.create("Recipes").await;
    let (status, bad) = a.post("/bases", json!({"name": ""})).await;
    assert_eq!((status, bad["field"].as_str()), (400, Some("name")));
    let (status, bad) = a.post("/bases", json!({"name": "x", "colour": "red"})).await;
    assert_eq!(status, 400, "unknown fields are refused: {bad}");
    let (status, renamed) =
        a.send(reqwest::Method::PATCH, &format!("/bases/{recipes}"), Some(json!({"name": "Cooking"}))).await;
    assert_eq!((status, renamed["name"].as_str()), (200, Some("Cooking")));
    let (status, _) =
        a.send(reqwest::Method::PATCH, &format!("/bases/{recipes}"), Some(json!({"name": "DEFAULT"}))).await;
    assert_eq!(status, 409, "renaming onto a taken name");
    // Documents: add, list, get, delete.
    let (status, d) = a.add_text(&recipes, "Pancakes", "Flour, eggs and milk. Whisk and fry.").await;
    assert_eq!(status, 201, "{d}");
    assert_eq!((d["sourceType"].as_str(), d["size"].as_u64()), (Some("text"), Some(36)));
    let doc = d["id"].as_str().unwrap().to_owned();
    let (status, listed) = a.get(&format!("/bases/{recipes}/documents")).await;
    assert_eq!((status, listed["documents"].as_array().unwrap().len()), (200, 1));
    assert!(listed["documents"][0].get("content").is_none(), "lists carry no text");
    let (status, full) = a.get(&format!("/bases/{recipes}/documents/{doc}")).await;
    assert_eq!((status, full["content"].as_str()), (200, Some("Flour, eggs and milk. Whisk and fry.")));
    let (status, bad) =
        a.post(&format!("/bases/{recipes}/documents"), json!({"sourceType": "pdf", "content": "x"})).await;
    assert_eq!(status, 400, "{bad}");
    let (status, bad) = a.post(&format!("/bases/{recipes}/documents"), json!({"title": "t"})).await;
    assert_eq!((status, bad["field"].as_str()), (400, Some("content")));
    assert_eq!(a.delete(&format!("/bases/{recipes}/documents/{doc}")).await, 204);
    assert_eq!(a.delete(&format!("/bases/{recipes}/documents/{doc}")).await, 404);
    // The default cannot be deleted; set-default moves it, and then the old one can go.
    assert_eq!(a.delete(&format!("/bases/{default_id}")).await, 409);
    assert_eq!(a.delete("/bases/default").await, 409);
    let (status, now) = a.post(&format!("/bases/{recipes}/set-default"), json!({})).await;
    assert_eq!((status, now["isDefault"].as_bool()), (200, Some(true)));
    let (_, list) = a.get("/bases").await;
    let flags: Vec<(String, bool)> = list["knowledgeBases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["id"].as_str().unwrap().to_owned(), b["isDefault"].as_bool().unwrap()))
        .collect();
    assert_eq!(flags, [(recipes.clone(), true), (default_id.clone(), false)]);
    // By name, "default" is the base called so while there is one; otherwise the default base.
    let added =
        tool(&server, &alice, "add-to-knowledge-base", json!({"name": "default", "content": "kept"})).await.unwrap();
    assert_eq!(added["knowledgeBase"]["id"], default_id.as_str());
    let added = tool(&server, &alice, "add-to-knowledge-base", json!({"content": "no name"})).await.unwrap();
    assert_eq!(added["knowledgeBase"]["id"], recipes.as_str());
    assert_eq!(a.delete(&format!("/bases/{recipes}")).await, 409);
    assert_eq!(a.delete(&format!("/bases/{default_id}")).await, 204);
    assert_eq!(a.get(&format!("/bases/{default_id}")).await.0, 404);
    let added =
        tool(&server, &alice, "add-to-knowledge-base", json!({"name": "DEFAULT", "content": "x"})).await.unwrap();
    assert_eq!(added["knowledgeBase"]["id"], recipes.as_str());
    // Without the scope: 403 insufficient_scope.
    let flow = Flow::signup(&server, "kb-noscope@example.com").await;
    let res = flow
        .http
        .post(flow.url("/api/v1/auth/pat"))
        .json(&json!({"name": "n", "scopes": ["account"]}))
        .send()
        .await
        .unwrap();
    let narrow = res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let (status, _) = Api { server: &server, token: &narrow }.get("/bases").await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn search_ranks_the_better_match_first_and_query_syntax_is_harmless() {
    let server = Server::start();
    let (_, token) = person(&server, "kb-search@example.com").await;
    let a = Api { server: &server, token: &token };
    let garden = a.create("Garden").await;
    a.add_text(&garden, "Vegetables", "Carrots and potatoes grow in the garden; tomatoes too.").await;
    a.add_text(&garden, "Tomatoes", "Growing tomatoes: tomatoes need sun. Water tomatoes daily, stake the tomato.")
        .await;
    a.add_text("default", "Roses", "Roses need pruning in spring.").await;
    let (status, v) = a.search("/search", "tomatoes").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(titles(&v), ["Tomatoes", "Vegetables"]);
    assert!(v["results"][0]["snippet"].as_str().unwrap().contains("**"));
    assert!(v["results"][0]["score"].as_f64().unwrap() > v["results"][1]["score"].as_f64().unwrap());
    let (_, v) = a.search(&format!("/bases/{garden}/search"), "roses").await;
    assert_eq!(titles(&v), Vec::<String>::new(), "one base only");
    let (_, v) = a.search("/bases/default/search", "roses").await;
    assert_eq!(titles(&v), ["Roses"]);
    // Search syntax of either engine is plain words: never an error.
    for q in ["\"tomatoes", "tomatoes AND", "NEAR(tomatoes", "title:tomatoes", "*", "(((", "!!! & | <-> :*", "-x OR"] {
        let (status, v) = a.search("/search", q).await;
        assert_eq!(status, 200, "{q}: {v}");
        let via_tool = tool(&server, &token, "search-knowledge-base", json!({"query": q})).await;
        assert!(via_tool.is_ok(), "{q}: {via_tool:?}");
    }
    let (status, v) = a.search("/search", "").await;
    assert_eq!((status, v["field"].as_str()), (400, Some("query")));
    let (status, _) = a.get("/search?query=x&limit=500").await;
    assert_eq!(status, 400);
    // The same ranking through the tool.
    let v = tool(&server, &token, "search-knowledge-base", json!({"query": "tomatoes", "name": "garden", "limit": 5}))
        .await
        .unwrap();
    assert_eq!(titles(&v), ["Tomatoes", "Vegetables"]);
}

#[tokio::test]
async fn mcp_tools_add_and_search_and_the_addition_is_audited() {
    let server = Server::start();
    let (_, token) = person(&server, "kb-tools@example.com").await;
    // Both tools are listed (read-only hint on the search only).
    let res = reqwest::Client::new()
        .post(server.url("/mcp"))
        .bearer_auth(&token)
        .header("Accept", "application/json, text/event-stream")
        .header("X-Response-Format", "json")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    let list: Value = res.json().await.unwrap();
    let tools = list["result"]["tools"].as_array().unwrap();
    let hint = |n: &str| tools.iter().find(|t| t["name"] == n).map(|t| t["annotations"]["readOnlyHint"].clone());
    assert_eq!(hint("add-to-knowledge-base"), Some(json!(false)));
    assert_eq!(hint("search-knowledge-base"), Some(json!(true)));
    // Without a name: the default base.
    let added =
        tool(&server, &token, "add-to-knowledge-base", json!({"content": "The launch code word is heliotrope."}))
            .await
            .unwrap();
    assert_eq!(added["knowledgeBase"]["name"], "default");
    assert_eq!(added["document"]["title"], "The launch code word is heliotrope.");
    let v = tool(&server, &token, "search-knowledge-base", json!({"query": "heliotrope"})).await.unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    assert_eq!(v["results"][0]["documentId"], added["document"]["id"]);
    // A named base that does not exist is not created by the tool.
    let e = tool(&server, &token, "add-to-knowledge-base", json!({"name": "nope", "content": "x"})).await.unwrap_err();
    assert!(e.contains("no knowledge base named \"nope\""), "{e}");
    // Bad arguments are JSON-RPC errors naming the argument.
    for (args, word) in [
        (json!({"source_type": "pdf", "content": "x"}), "source_type"),
        (json!({"source_type": "url"}), "url"),
        (json!({"content": 5}), "content"),
        (json!({"source_type": "url", "url": "https://example.com/", "content": "x"}), "content"),
    ] {
        let e = tool(&server, &token, "add-to-knowledge-base", args.clone()).await.unwrap_err();
        assert!(e.contains(word), "{args}: {e}");
    }
    assert!(tool(&server, &token, "search-knowledge-base", json!({"query": "x", "limit": 0})).await.is_err());
    // The addition is in the account's audit log, without the text.
    let mut found = Value::Null;
    for _ in 0..50 {
        let v: Value = reqwest::Client::new()
            .get(server.url("/api/v1/audit?kind=knowledge.document.added"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(e) = v["events"].as_array().and_then(|a| a.first()) {
            found = e.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found["target"], added["document"]["id"], "{found}");
    assert!(!found.to_string().contains("heliotrope"), "{found}");
}

#[tokio::test]
async fn security_another_tenants_knowledge_base_is_unreachable_by_id_via_rest_and_tools() {
    let server = Server::start();
    let (_, alice) = person(&server, "kb-victim@example.com").await;
    let (_, mallory) = person(&server, "kb-mallory@example.com").await;
    let a = Api { server: &server, token: &alice };
    let m = Api { server: &server, token: &mallory };
    let secret = a.create("Secrets").await;
    let (_, d) = a.add_text(&secret, "Vault", "the combination is marmalade").await;
    let doc = d["id"].as_str().unwrap();
    // Every probe answers exactly like an id that does not exist.
    let unknown = "kb_0000000000000000000000000000000";
    for base in [secret.as_str(), unknown] {
        let (status, body) = m.get(&format!("/bases/{base}")).await;
        assert_eq!(status, 404);
        assert_eq!(body["detail"], "knowledge base not found");
        assert_eq!(m.get(&format!("/bases/{base}/documents")).await.0, 404);
        assert_eq!(m.get(&format!("/bases/{base}/documents/{doc}")).await.0, 404);
        assert_eq!(m.delete(&format!("/bases/{base}/documents/{doc}")).await, 404);
        assert_eq!(m.add_text(base, "x", "planted").await.0, 404);
        assert_eq!(m.search(&format!("/bases/{base}/search"), "marmalade").await.0, 404);
        assert_eq!(m.post(&format!("/bases/{base}/set-default"), json!({})).await.0, 404);
        assert_eq!(
            m.send(reqwest::Method::PATCH, &format!("/bases/{base}"), Some(json!({"name": "mine"}))).await.0,
            404
        );
        assert_eq!(m.delete(&format!("/bases/{base}")).await, 404);
    }
    // Search and the tools see only the caller's own documents, even under the victim's base name.
    assert!(m.search("/search", "marmalade").await.1["results"].as_array().unwrap().is_empty());
    let e = tool(&server, &mallory, "search-knowledge-base", json!({"query": "marmalade", "name": "Secrets"}))
        .await
        .unwrap_err();
    assert!(e.contains("no knowledge base named"), "{e}");
    let v = tool(&server, &mallory, "search-knowledge-base", json!({"query": "marmalade"})).await.unwrap();
    assert!(v["results"].as_array().unwrap().is_empty());
    let e = tool(&server, &mallory, "add-to-knowledge-base", json!({"name": "Secrets", "content": "planted"}))
        .await
        .unwrap_err();
    assert!(e.contains("no knowledge base named"), "{e}");
    // Nothing of the victim's changed.
    assert_eq!(a.document_count(&secret).await, 1);
    assert_eq!(a.get(&format!("/bases/{secret}")).await.1["name"], "Secrets");
}

#[tokio::test]
async fn security_allowed_knowledge_base_ids_are_enforced_on_rest_and_both_tools() {
    let server = Server::start();
    let (flow, full) = person(&server, "kb-restricted@example.com").await;
    let a = Api { server: &server, token: &full };
    let open = a.create("Open").await;
    let closed = a.create("Closed").await;
    a.add_text(&open, "Open doc", "shared walrus facts").await;
    let (_, d) = a.add_text(&closed, "Closed doc", "private walrus facts").await;
    let closed_doc = d["id"].as_str().unwrap().to_owned();
    let limited = pat(&flow, json!({"knowledge_base_ids": [open.clone()]})).await;
    let l = Api { server: &server, token: &limited };
    // Lists and searches cover only the allowed base.
    let (_, list) = l.get("/bases").await;
    let ids: Vec<&str> = list["knowledgeBases"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [open.as_str()]);
    assert_eq!(titles(&l.search("/search", "walrus").await.1), ["Open doc"]);
    // Every endpoint naming another base: 404, never 403 (the id does not leak); the default too.
    for base in [closed.as_str(), "default"] {
        assert_eq!(l.get(&format!("/bases/{base}")).await.0, 404, "{base}");
        assert_eq!(l.get(&format!("/bases/{base}/documents")).await.0, 404);
        assert_eq!(l.add_text(base, "x", "planted").await.0, 404);
        assert_eq!(l.search(&format!("/bases/{base}/search"), "walrus").await.0, 404);
        assert_eq!(l.delete(&format!("/bases/{base}")).await, 404);
        assert_eq!(l.post(&format!("/bases/{base}/set-default"), json!({})).await.0, 404);
    }
    assert_eq!(l.get(&format!("/bases/{closed}/documents/{closed_doc}")).await.0, 404);
    assert_eq!(l.delete(&format!("/bases/{closed}/documents/{closed_doc}")).await, 404);
    // Account-wide changes are refused (a new base would be outside the token's reach).
    assert_eq!(l.post("/bases", json!({"name": "Sneaky"})).await.0, 403);
    assert_eq!(l.post(&format!("/bases/{open}/set-default"), json!({})).await.0, 403);
    // The allowed base works.
    assert_eq!(l.add_text(&open, "Added", "more walrus").await.0, 201);
    // Both tools: the other base is "not found", the default too; search without a name sees only the allowed base.
    for name in [Some("Closed"), None] {
        let mut args = json!({"content": "planted"});
        if let Some(n) = name {
            args["name"] = json!(n);
        }
        let e = tool(&server, &limited, "add-to-knowledge-base", args).await.unwrap_err();
        assert!(e.contains("no knowledge base named") || e.contains("not one this application may use"), "{e}");
    }
    let e = tool(&server, &limited, "search-knowledge-base", json!({"query": "walrus", "name": "Closed"}))
        .await
        .unwrap_err();
    assert!(e.contains("no knowledge base named"), "{e}");
    let v =
        tool(&server, &limited, "search-knowledge-base", json!({"query": "walrus private shared more"})).await.unwrap();
    let mut got = titles(&v);
    got.sort();
    assert_eq!(got, ["Added", "Open doc"]);
    assert!(
        tool(&server, &limited, "add-to-knowledge-base", json!({"name": "Open", "content": "tool walrus"}))
            .await
            .is_ok()
    );
    // Nothing reached the closed base.
    assert_eq!(a.document_count(&closed).await, 1);
    // An empty list reaches nothing at all.
    let none = pat(&flow, json!({"knowledge_base_ids": []})).await;
    let n = Api { server: &server, token: &none };
    assert!(n.get("/bases").await.1["knowledgeBases"].as_array().unwrap().is_empty());
    assert!(n.search("/search", "walrus").await.1["results"].as_array().unwrap().is_empty());
    let v = tool(&server, &none, "search-knowledge-base", json!({"query": "walrus"})).await.unwrap();
    assert!(v["results"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn security_url_documents_from_loopback_and_metadata_addresses_are_refused() {
    let server = Server::start();
    let (_, token) = person(&server, "kb-ssrf@example.com").await;
    let a = Api { server: &server, token: &token };
    // Something really listens on loopback: it must never be asked.
    let (port, hits) =
        serve_once("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nsecret").await;
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("https://127.0.0.1:{port}/"),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("https://localhost:{port}/"),
        "https://[::1]/".to_owned(),
        "https://10.0.0.1/".to_owned(),
        "file:///etc/passwd".to_owned(),
        "https://user:pw@example.com/".to_owned(),
    ] {
        let (status, v) = a.post("/bases/default/documents", json!({"sourceType": "url", "url": url})).await;
        assert_eq!((status, v["field"].as_str()), (400, Some("url")), "{url}: {v}");
        let e = tool(&server, &token, "add-to-knowledge-base", json!({"source_type": "url", "url": url}))
            .await
            .unwrap_err();
        assert!(e.contains("url:"), "{url}: {e}");
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the loopback server was never reached");
    assert_eq!(a.document_count("default").await, 0);
}

#[tokio::test]
async fn url_documents_are_fetched_as_text_with_redirects_checked_in_development_mode() {
    // Development settings: loopback allowed, so a local page can stand in for a public one.
    let server = Server::start_with(&[
        ("BRIDGEKEEPER_KNOWLEDGE__ALLOW_PRIVATE_ADDRESSES", "true"),
        ("BRIDGEKEEPER_KNOWLEDGE__ALLOW_HTTP_LOOPBACK", "true"),
        ("BRIDGEKEEPER_KNOWLEDGE__URL_FETCHES_PER_MINUTE", "4"),
    ]);
    let (_, token) = person(&server, "kb-url@example.com").await;
    let a = Api { server: &server, token: &token };
    let page = "<html><head><title>Field guide</title><script>steal()</script></head><body><h1>Otters</h1>\
        <p>Otters hold hands&nbsp;while sleeping.</p></body></html>";
    let (page_port, _) = serve_once(&format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n{page}",
        page.len()
    ))
    .await;
    let (hop_port, _) = serve_once(&format!(
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{page_port}/guide\r\nContent-Length: 0\r\n\r\n"
    ))
    .await;
    let (status, d) = a
        .post(
            "/bases/default/documents",
            json!({"sourceType": "url", "url": format!("http://127.0.0.1:{hop_port}/start")}),
        )
        .await;
    assert_eq!(status, 201, "{d}");
    assert_eq!(d["title"], "Field guide");
    assert_eq!(d["sourceType"], "url");
    let (_, full) = a.get(&format!("/bases/default/documents/{}", d["id"].as_str().unwrap())).await;
    assert_eq!(full["content"], "Otters\nOtters hold hands while sleeping.");
    let v = tool(&server, &token, "search-knowledge-base", json!({"query": "otters sleeping"})).await.unwrap();
    assert_eq!(titles(&v), ["Field guide"]);
    // A redirect to an address outside even these settings is refused at that hop.
    let (bad_hop, _) = serve_once(
        "HTTP/1.1 301 Moved\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    let (status, v) = a
        .post("/bases/default/documents", json!({"sourceType": "url", "url": format!("http://127.0.0.1:{bad_hop}/")}))
        .await;
    assert_eq!((status, v["field"].as_str()), (400, Some("url")), "{v}");
    // Only text documents are taken.
    let (png, _) = serve_once("HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 4\r\n\r\nxPNG").await;
    let (status, v) = a
        .post("/bases/default/documents", json!({"sourceType": "url", "url": format!("http://127.0.0.1:{png}/")}))
        .await;
    assert_eq!(status, 502, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("image/png"), "{v}");
    assert_eq!(a.document_count("default").await, 1);
    // At most `knowledge.url_fetches_per_minute` fetches an account (4 here: three above, one more).
    let url = format!("http://127.0.0.1:{page_port}/again");
    assert_eq!(a.post("/bases/default/documents", json!({"sourceType": "url", "url": url})).await.0, 201);
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/knowledge/bases/default/documents"))
        .bearer_auth(&token)
        .json(&json!({"sourceType": "url", "url": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let e =
        tool(&server, &token, "add-to-knowledge-base", json!({"source_type": "url", "url": url})).await.unwrap_err();
    assert!(e.contains("too many"), "{e}");
    // Text documents are not fetches.
    assert_eq!(a.add_text("default", "typed", "by hand").await.0, 201);
    assert_eq!(a.document_count("default").await, 3);
}

#[tokio::test]
async fn security_oversized_documents_and_quotas_are_refused_with_nothing_stored() {
    let server = Server::start_with(&[
        ("BRIDGEKEEPER_KNOWLEDGE__MAX_DOCUMENT_BYTES", "1000"),
        ("BRIDGEKEEPER_KNOWLEDGE__MAX_DOCUMENTS_PER_BASE", "2"),
        ("BRIDGEKEEPER_KNOWLEDGE__MAX_BASES_PER_ACCOUNT", "2"),
        ("BRIDGEKEEPER_KNOWLEDGE__ALLOW_PRIVATE_ADDRESSES", "true"),
        ("BRIDGEKEEPER_KNOWLEDGE__ALLOW_HTTP_LOOPBACK", "true"),
    ]);
    let (_, token) = person(&server, "kb-limits@example.com").await;
    let a = Api { server: &server, token: &token };
    let (status, v) = a.add_text("default", "big", &"x".repeat(1001)).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(a.add_text("default", "fits", &"x".repeat(1000)).await.0, 201);
    let e = tool(&server, &token, "add-to-knowledge-base", json!({"content": "y".repeat(1001)})).await.unwrap_err();
    assert!(e.contains("larger than 1000 bytes"), "{e}");
    // A fetched page whose text is too large is refused too.
    let body = format!("<p>{}</p>", "z".repeat(1500));
    let (port, _) = serve_once(&format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
    .await;
    let (status, _) = a
        .post("/bases/default/documents", json!({"sourceType": "url", "url": format!("http://127.0.0.1:{port}/")}))
        .await;
    assert_eq!(status, 413);
    assert_eq!(a.document_count("default").await, 1);
    // Documents per base, bases per account (the default counts).
    assert_eq!(a.add_text("default", "second", "two").await.0, 201);
    let (status, v) = a.add_text("default", "third", "three").await;
    assert_eq!((status, v["title"].as_str()), (409, Some("Quota reached")), "{v}");
    assert_eq!(a.document_count("default").await, 2);
    a.create("Second").await;
    let (status, v) = a.post("/bases", json!({"name": "Third"})).await;
    assert_eq!((status, v["title"].as_str()), (409, Some("Quota reached")), "{v}");
    assert_eq!(a.get("/bases").await.1["knowledgeBases"].as_array().unwrap().len(), 2);
}

/// A loopback HTTP server answering every request with `answer`; counts the requests it got.
async fn serve_once(answer: &str) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (answer, counted) = (answer.to_owned(), hits.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (port, hits)
}
