//! Declarative HTTP tools: a call to the provider's own API, built from the catalog's definition
//! and the caller's arguments — `{placeholders}` of the URL path filled (each one percent-encoded
//! path segment; `.` and `..` refused), the other arguments sent as the query (`GET`, `DELETE`) or a
//! JSON body — with the connection's credential as `Authorization: Bearer` (never in the arguments).
//! The host is the operator's: arguments never reach it. The answer is rendered as text, pretty JSON
//! (with `structuredContent`) or a markdown table.

use bk_connections::catalog::{HttpTool, Render};
use bk_outbound::{Answer as HttpAnswer, SafeFetcher};
use serde_json::{Map, Value};

/// The most text handed back to the model.
const MAX_TEXT: usize = 50 * 1024;
const MAX_ROWS: usize = 50;
const MAX_COLUMNS: usize = 12;
const MAX_CELL: usize = 80;

/// Characters kept as they are in a path segment (RFC 3986 unreserved).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The request for `tool` with `args` (already checked against its input schema).
pub fn request(
    http: &SafeFetcher,
    tool: &HttpTool,
    args: &Value,
    bearer: &str,
) -> Result<reqwest::RequestBuilder, String> {
    let empty = Map::new();
    let args = args.as_object().unwrap_or(&empty);
    let mut rest = args.clone();
    let mut path = bk_connections::catalog::percent_decoded_path(&tool.url);
    for p in tool.path_params() {
        let value = rest.remove(&p).ok_or_else(|| format!("the argument {p} is required"))?;
        let value = scalar(&value).ok_or_else(|| format!("the argument {p} must be a string or a number"))?;
        if value.is_empty() || value == "." || value == ".." {
            return Err(format!("the argument {p} is not a valid path segment"));
        }
        path = path.replace(&format!("{{{p}}}"), &encode_segment(&value));
    }
    let mut url = tool.url.clone();
    url.set_path(&path);
    let method = reqwest::Method::from_bytes(tool.method.as_bytes()).map_err(|_| "bad method".to_owned())?;
    let with_body = matches!(tool.method.as_str(), "POST" | "PUT" | "PATCH");
    if !with_body {
        let mut q = url.query_pairs_mut();
        for (k, v) in &rest {
            match v {
                Value::Null => {}
                Value::Array(items) => {
                    for i in items {
                        q.append_pair(k, &scalar(i).unwrap_or_else(|| i.to_string()));
                    }
                }
                other => {
                    q.append_pair(k, &scalar(other).unwrap_or_else(|| other.to_string()));
                }
            }
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    let mut req = http
        .client()
        .request(method, url)
        .bearer_auth(bearer)
        .header(reqwest::header::ACCEPT, "application/json, text/plain;q=0.9, */*;q=0.5");
    for (k, v) in &tool.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if with_body {
        req = req.json(&Value::Object(rest));
    }
    Ok(req)
}

/// How an API answer ends a call.
pub enum Outcome {
    /// Rendered text, and the JSON object for `structuredContent` when rendered as JSON.
    Done { text: String, structured: Option<Value> },
    /// 401: the credential was refused.
    Unauthorized,
    /// Anything else that is not a success, in words for the caller.
    Failed(String),
}

fn bounded_text(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    if s.len() <= MAX_TEXT {
        return s.into_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n… (cut at {} KB)", &s[..end], MAX_TEXT / 1024)
}

pub fn outcome(provider: &str, tool: &HttpTool, answer: HttpAnswer) -> Outcome {
    match answer.status {
        200..=299 => render(tool, &answer.body),
        401 => Outcome::Unauthorized,
        403 => Outcome::Failed(format!("access denied by {provider} (HTTP 403): this connection may not do that")),
        404 => Outcome::Failed(format!("{provider} found nothing there (HTTP 404)")),
        s @ 400..=499 => {
            let detail: String =
                String::from_utf8_lossy(&answer.body).chars().filter(|c| !c.is_control()).take(300).collect();
            Outcome::Failed(format!("{provider} refused the request (HTTP {s}): {detail}"))
        }
        s => Outcome::Failed(format!("{provider} failed (HTTP {s}); try again later")),
    }
}

fn render(tool: &HttpTool, body: &[u8]) -> Outcome {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    match (tool.render, json) {
        (Render::Text, _) | (_, None) => Outcome::Done { text: bounded_text(body), structured: None },
        (Render::Json, Some(v)) => {
            let text = serde_json::to_string_pretty(&v).unwrap_or_default();
            let structured = v.is_object().then_some(v);
            Outcome::Done { text: bounded_text(text.as_bytes()), structured }
        }
        (Render::Table, Some(v)) => {
            let rows = match tool.table_path.as_deref() {
                Some(p) => v.pointer(p).cloned().unwrap_or(Value::Null),
                None => v,
            };
            match rows {
                Value::Array(items) => Outcome::Done { text: table(&items), structured: None },
                other => {
                    let text = serde_json::to_string_pretty(&other).unwrap_or_default();
                    Outcome::Done { text: bounded_text(text.as_bytes()), structured: None }
                }
            }
        }
    }
}

fn cell(v: Option<&Value>) -> String {
    let s = match v {
        None | Some(Value::Null) => String::new(),
        Some(v) => scalar(v).unwrap_or_else(|| v.to_string()),
    };
    let s: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().replace('|', "\\|");
    if s.chars().count() > MAX_CELL { format!("{}…", s.chars().take(MAX_CELL - 1).collect::<String>()) } else { s }
}

/// A markdown table of `items` (objects: one column per key, first seen first; anything else: one
/// `value` column).
pub fn table(items: &[Value]) -> String {
    if items.is_empty() {
        return "(no rows)".into();
    }
    let mut columns: Vec<String> = Vec::new();
    for it in items.iter().take(20) {
        if let Value::Object(m) = it {
            for k in m.keys() {
                if columns.len() < MAX_COLUMNS && !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
    }
    let objects = !columns.is_empty();
    if !objects {
        columns.push("value".into());
    }
    let mut out = format!(
        "| {} |\n|{}\n",
        columns.iter().map(|c| cell(Some(&Value::String(c.clone())))).collect::<Vec<_>>().join(" | "),
        "---|".repeat(columns.len())
    );
    for it in items.iter().take(MAX_ROWS) {
        let cells: Vec<String> =
            if objects { columns.iter().map(|c| cell(it.get(c))).collect() } else { vec![cell(Some(it))] };
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    if items.len() > MAX_ROWS {
        out.push_str(&format!("\n({} more rows not shown)\n", items.len() - MAX_ROWS));
    }
    bounded_text(out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(method: &str, url: &str, props: Value) -> HttpTool {
        HttpTool {
            name: "t".into(),
            title: None,
            description: String::new(),
            method: method.into(),
            url: url::Url::parse(url).unwrap(),
            input_schema: json!({"type": "object", "properties": props}),
            headers: vec![("Acme-Version".into(), "2".into())],
            render: Render::Json,
            table_path: None,
        }
    }

    fn fetcher() -> SafeFetcher {
        SafeFetcher::new(bk_outbound::FetchPolicy {
            allow_private_addresses: false,
            allow_http_loopback: false,
            extra_roots_pem: None,
            timeout: std::time::Duration::from_secs(1),
            max_body_bytes: 1024,
        })
        .unwrap()
    }

    #[test]
    fn path_arguments_stay_one_segment_and_the_rest_goes_to_the_query_or_body() {
        let t = tool("GET", "https://api.acme.example/v1/deals/{id}/notes", json!({"id": {}, "q": {}, "tags": {}}));
        let req = request(&fetcher(), &t, &json!({"id": "a/../b?x#y", "q": "big deals", "tags": ["x", "y"]}), "sk")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(req.url().path(), "/v1/deals/a%2F..%2Fb%3Fx%23y/notes");
        assert_eq!(req.url().host_str(), Some("api.acme.example"));
        assert_eq!(req.url().query(), Some("q=big+deals&tags=x&tags=y"));
        assert_eq!(req.headers()["authorization"], "Bearer sk");
        assert_eq!(req.headers()["acme-version"], "2");
        for bad in ["..", ".", ""] {
            assert!(request(&fetcher(), &t, &json!({"id": bad}), "sk").is_err(), "{bad:?}");
        }
        assert!(request(&fetcher(), &t, &json!({"id": {"a": 1}}), "sk").is_err());
        let post = tool("POST", "https://api.acme.example/deals", json!({"name": {}}));
        let req = request(&fetcher(), &post, &json!({"name": "x", "amount": 3}), "sk").unwrap().build().unwrap();
        assert_eq!(req.url().query(), None);
        let body: Value = serde_json::from_slice(req.body().unwrap().as_bytes().unwrap()).unwrap();
        assert_eq!(body, json!({"name": "x", "amount": 3}));
    }

    #[test]
    fn answers_are_rendered_and_refusals_named() {
        let mut t = tool("GET", "https://api.acme.example/deals", json!({}));
        let ok = |b: Value| HttpAnswer { status: 200, headers: Default::default(), body: b.to_string().into_bytes() };
        match outcome("acme", &t, ok(json!({"id": 1, "name": "Big"}))) {
            Outcome::Done { text, structured } => {
                assert!(text.contains("\"name\": \"Big\""));
                assert_eq!(structured, Some(json!({"id": 1, "name": "Big"})));
            }
            _ => panic!(),
        }
        t.render = Render::Table;
        t.table_path = Some("/items".into());
        match outcome("acme", &t, ok(json!({"items": [{"id": 1, "name": "A|B"}, {"id": 2, "stage": "won"}]}))) {
            Outcome::Done { text, .. } => {
                assert_eq!(text, "| id | name | stage |\n|---|---|---|\n| 1 | A\\|B |  |\n| 2 |  | won |\n");
            }
            _ => panic!(),
        }
        let status = |s: u16| HttpAnswer { status: s, headers: Default::default(), body: b"nope".to_vec() };
        assert!(matches!(outcome("acme", &t, status(401)), Outcome::Unauthorized));
        assert!(matches!(outcome("acme", &t, status(403)), Outcome::Failed(m) if m.contains("access denied by acme")));
        assert!(
            matches!(outcome("acme", &t, status(422)), Outcome::Failed(m) if m.contains("HTTP 422") && m.contains("nope"))
        );
        assert!(matches!(outcome("acme", &t, status(502)), Outcome::Failed(m) if m.contains("HTTP 502")));
        let many: Vec<Value> = (0..60).map(|i| json!({"i": i})).collect();
        assert!(table(&many).contains("(10 more rows not shown)"));
    }
}
