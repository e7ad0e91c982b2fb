//! `gateway-bench upstream PORT TOOLS`: an MCP server (rmcp, stateless, JSON answers) offering
//! `echo` and TOOLS more tools, answering at once.
//! `gateway-bench load URL BODY_JSON RATE SECONDS CONNS [BEARER]`: POSTs the JSON-RPC body at a
//! fixed RATE per second (RATE 0: as fast as CONNS workers can), then prints
//! `requests=… errors=… rps=… p50_us=… p99_us=… mean_us=…`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};

#[derive(Clone)]
struct Fast {
    tools: Arc<Vec<Tool>>,
}

impl ServerHandler for Fast {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut r = ListToolsResult::default();
        r.tools = (*self.tools).clone();
        Ok(r)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let text = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("message"))
            .and_then(|m| m.as_str())
            .unwrap_or("ok")
            .to_owned();
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

fn tool(name: String) -> Tool {
    let schema: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "type": "object",
        "properties": {"message": {"type": "string"}},
    }))
    .unwrap();
    let mut t = Tool::new(name, "a tool of the benchmark's upstream", Arc::new(schema));
    t.annotations = None;
    t
}

async fn upstream(port: u16, extra: usize) {
    let mut tools = vec![tool("echo".into())];
    tools.extend((0..extra).map(|i| tool(format!("tool_{i}"))));
    let fast = Fast { tools: Arc::new(tools) };
    let mut config = StreamableHttpServerConfig::default();
    config.sse_keep_alive = None;
    config.legacy_session_mode = false;
    config.json_response = true;
    let service =
        StreamableHttpService::new(move || Ok(fast.clone()), Arc::new(NeverSessionManager::default()), config);
    let app = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    eprintln!("upstream listening on {}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}

async fn load(url: String, body: String, rate: u64, seconds: u64, conns: usize, bearer: Option<String>) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(conns).build().unwrap();
    let body = Arc::new(body);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let gap = if rate > 0 { Some(Duration::from_secs_f64(conns as f64 / rate as f64)) } else { None };
    let mut workers = Vec::new();
    for w in 0..conns {
        let (client, url, body, bearer) = (client.clone(), url.clone(), body.clone(), bearer.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            // Each worker keeps its share of the rate (open loop per worker, staggered start).
            let mut next = Instant::now() + gap.map(|g| g.mul_f64(w as f64 / conns as f64)).unwrap_or_default();
            while Instant::now() < deadline {
                if let Some(g) = gap {
                    tokio::time::sleep_until(next.into()).await;
                    next += g;
                }
                let started = Instant::now();
                let mut req = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2025-11-25")
                    .header("x-response-format", "json")
                    .body((*body).clone());
                if let Some(b) = &bearer {
                    req = req.bearer_auth(b);
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => match r.bytes().await {
                        Ok(b) if !b.windows(7).any(|w| w == b"\"error\"") => lat.push(started.elapsed()),
                        _ => errors += 1,
                    },
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64().max(seconds as f64);
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).map(|d| d.as_micros()).unwrap_or(0)
    };
    let mean = if all.is_empty() { 0 } else { all.iter().map(|d| d.as_micros()).sum::<u128>() / all.len() as u128 };
    println!(
        "requests={} errors={} rps={:.0} p50_us={} p99_us={} mean_us={}",
        all.len(),
        errors,
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        mean
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("upstream") => {
            upstream(args[2].parse().unwrap(), args.get(3).map(|n| n.parse().unwrap()).unwrap_or(0)).await
        }
        Some("load") => {
            load(
                args[2].clone(),
                args[3].clone(),
                args[4].parse().unwrap(),
                args[5].parse().unwrap(),
                args[6].parse().unwrap(),
                args.get(7).cloned(),
            )
            .await
        }
        _ => eprintln!("usage: gateway-bench upstream PORT [TOOLS] | load URL BODY RATE SECONDS CONNS [BEARER]"),
    }
}
