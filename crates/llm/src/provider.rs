//! The provider seam: one trait every upstream speaks through, and its implementation for the
//! OpenAI-compatible chat-completions API (OpenAI, Azure OpenAI, vLLM, Ollama, LiteLLM, …). A
//! provider gets a request already rewritten for it (its own model name, a completion-token cap)
//! and answers a completion, or a stream of chunks; billing is not its business.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use crate::error::UpstreamError;
use crate::types::{ChatRequest, ChatResponse};

/// The chunks of a streamed completion, each a JSON object, until the upstream's `[DONE]`.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Value, UpstreamError>> + Send>>;

/// An upstream that answers chat completions.
#[async_trait]
pub trait ChatProvider: Send + Sync {
    /// One whole completion.
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, UpstreamError>;
    /// A streamed completion: `Ok` once the upstream accepted it (an error status is an `Err` here).
    /// The provider asks for the usage chunk at the end.
    async fn stream(&self, request: &ChatRequest) -> Result<ChunkStream, UpstreamError>;
    /// The same upstream with another API key (one an operator stored): `Ok(None)` when this
    /// provider takes no key this way; `Err` when the key cannot be sent (not valid in a header).
    fn with_api_key(&self, _key: &ApiKey) -> Result<Option<Arc<dyn ChatProvider>>, String> {
        Ok(None)
    }
}

/// An upstream API key. Never printed: no `Display`, and `Debug` shows only that there is one.
pub struct ApiKey(zeroize::Zeroizing<String>);

impl ApiKey {
    pub fn new(key: String) -> Self {
        Self(zeroize::Zeroizing::new(key))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(…)")
    }
}

/// Timeouts and size limits of upstream calls.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamLimits {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_response_bytes: usize,
}

/// The OpenAI-compatible chat-completions API.
pub struct OpenAiCompatible {
    http: reqwest::Client,
    /// `…/chat/completions`, with the base URL's query string.
    url: url::Url,
    /// The header and its value (`Authorization: Bearer …`, or `api-key: …`), marked sensitive.
    auth: Option<(HeaderName, HeaderValue)>,
    /// The key itself, to scrub it from upstream messages passed on (some upstreams echo it).
    key: Option<ApiKey>,
    /// The configured header name (`None`: `authorization`), for the same upstream with another key.
    key_header: Option<String>,
    limits: UpstreamLimits,
}

/// The header carrying `key`: `Authorization: Bearer KEY`, or the named header with the key alone.
fn auth_header(key: &ApiKey, key_header: Option<&str>) -> Result<(HeaderName, HeaderValue), String> {
    let header = key_header.unwrap_or("authorization").to_ascii_lowercase();
    let name = HeaderName::from_bytes(header.as_bytes())
        .map_err(|_| format!("api_key_header {header:?} is not a header name"))?;
    let raw = if name == reqwest::header::AUTHORIZATION {
        format!("Bearer {}", key.expose())
    } else {
        key.expose().to_owned()
    };
    let mut value = HeaderValue::from_str(&raw).map_err(|_| "the API key is not valid in a header".to_owned())?;
    value.set_sensitive(true);
    Ok((name, value))
}

impl std::fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiCompatible").field("url", &self.url.as_str()).field("key", &self.auth.is_some()).finish()
    }
}

impl OpenAiCompatible {
    /// `base_url` is the part before `/chat/completions`; `key_header` defaults to `authorization`.
    pub fn new(
        base_url: &str,
        key: Option<&ApiKey>,
        key_header: Option<&str>,
        limits: UpstreamLimits,
    ) -> Result<Self, String> {
        let mut url = url::Url::parse(base_url).map_err(|e| format!("base_url {base_url:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(format!("base_url {base_url:?} must be an http(s) URL"));
        }
        let path = format!("{}/chat/completions", url.path().trim_end_matches('/'));
        url.set_path(&path);
        let auth = key.map(|k| auth_header(k, key_header)).transpose()?;
        let http = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let key = key.map(|k| ApiKey::new(k.expose().to_owned()));
        Ok(Self { http, url, auth, key, key_header: key_header.map(str::to_owned), limits })
    }

    async fn post(&self, body: &Value) -> Result<reqwest::Response, UpstreamError> {
        let mut req = self.http.post(self.url.clone()).json(body);
        if let Some((name, value)) = &self.auth {
            req = req.header(name.clone(), value.clone());
        }
        let res = req.send().await.map_err(transport)?;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if matches!(status, 400 | 404 | 413 | 422) {
            // The request was at fault: the upstream's own words help the client fix it.
            let body = read_capped(res, 64 * 1024).await.unwrap_or_default();
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| {
                    v.pointer("/error/message").or_else(|| v.get("error")).and_then(Value::as_str).map(str::to_owned)
                })
                .unwrap_or_else(|| "no reason given".to_owned());
            let message = match &self.key {
                Some(k) => message.replace(k.expose(), "[redacted]"),
                None => message,
            };
            return Err(UpstreamError::Rejected { status, message: bounded(&message, 500) });
        }
        Err(UpstreamError::Status { status, retry_after })
    }
}

#[async_trait]
impl ChatProvider for OpenAiCompatible {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, UpstreamError> {
        let mut body = serde_json::to_value(request).map_err(|e| UpstreamError::Malformed(e.to_string()))?;
        body["stream"] = Value::Bool(false);
        if let Some(o) = body.as_object_mut() {
            o.remove("stream_options");
        }
        let work = async {
            let res = self.post(&body).await?;
            let bytes = read_capped(res, self.limits.max_response_bytes).await?;
            serde_json::from_slice::<ChatResponse>(&bytes).map_err(|e| UpstreamError::Malformed(e.to_string()))
        };
        tokio::time::timeout(self.limits.request_timeout, work).await.map_err(|_| UpstreamError::Timeout)?
    }

    /// The same upstream and HTTP client (its connections kept) with `key` instead.
    fn with_api_key(&self, key: &ApiKey) -> Result<Option<Arc<dyn ChatProvider>>, String> {
        let auth = auth_header(key, self.key_header.as_deref())?;
        Ok(Some(Arc::new(Self {
            http: self.http.clone(),
            url: self.url.clone(),
            auth: Some(auth),
            key: Some(ApiKey::new(key.expose().to_owned())),
            key_header: self.key_header.clone(),
            limits: self.limits,
        })))
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChunkStream, UpstreamError> {
        let mut body = serde_json::to_value(request).map_err(|e| UpstreamError::Malformed(e.to_string()))?;
        body["stream"] = Value::Bool(true);
        body["stream_options"] = serde_json::json!({"include_usage": true});
        let res = tokio::time::timeout(self.limits.request_timeout, self.post(&body))
            .await
            .map_err(|_| UpstreamError::Timeout)??;
        let max = self.limits.max_response_bytes;
        // reqwest's `chunk()` as a byte stream (no extra reqwest feature), counting what was read.
        let bytes = futures_util::stream::unfold((Some(res), 0usize), move |(res, read)| async move {
            let mut res = res?;
            match res.chunk().await {
                Ok(Some(b)) if read + b.len() > max => Some((Err(UpstreamError::TooLarge(max)), (None, read))),
                Ok(Some(b)) => {
                    let n = read + b.len();
                    Some((Ok::<Bytes, UpstreamError>(b), (Some(res), n)))
                }
                Ok(None) => None,
                Err(e) => Some((Err(transport(e)), (None, read))),
            }
        });
        let chunks = bytes
            .eventsource()
            .take_while(|e| std::future::ready(!matches!(e, Ok(ev) if ev.data.trim() == "[DONE]")))
            .filter_map(|e| {
                std::future::ready(match e {
                    // Keep-alive events without data are skipped.
                    Ok(ev) if ev.data.trim().is_empty() => None,
                    Ok(ev) => Some(
                        serde_json::from_str::<Value>(&ev.data)
                            .map_err(|e| UpstreamError::Malformed(format!("a stream chunk: {e}"))),
                    ),
                    Err(eventsource_stream::EventStreamError::Transport(e)) => Some(Err(e)),
                    Err(e) => Some(Err(UpstreamError::Malformed(e.to_string()))),
                })
            });
        Ok(Box::pin(chunks))
    }
}

fn transport(e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        return UpstreamError::Timeout;
    }
    // Without the URL: an operator may have put a credential in its query string.
    UpstreamError::Unreachable(e.without_url().to_string())
}

async fn read_capped(mut res: reqwest::Response, max: usize) -> Result<Vec<u8>, UpstreamError> {
    if res.content_length().is_some_and(|n| n > max as u64) {
        return Err(UpstreamError::TooLarge(max));
    }
    let mut out = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(transport)? {
        if out.len() + chunk.len() > max {
            return Err(UpstreamError::TooLarge(max));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> UpstreamLimits {
        UpstreamLimits {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_response_bytes: 1024,
        }
    }

    #[test]
    fn the_key_is_never_in_debug_output() {
        let key = ApiKey::new("sk-very-secret".into());
        let p = OpenAiCompatible::new("https://api.example.com/v1/", Some(&key), None, limits()).unwrap();
        assert_eq!(p.url.as_str(), "https://api.example.com/v1/chat/completions");
        assert!(!format!("{key:?} {p:?}").contains("sk-very-secret"));
    }

    #[test]
    fn azure_style_urls_keep_their_query_and_header() {
        let key = ApiKey::new("k".into());
        let p = OpenAiCompatible::new(
            "https://r.openai.azure.com/openai/deployments/d?api-version=2024-10-21",
            Some(&key),
            Some("api-key"),
            limits(),
        )
        .unwrap();
        assert_eq!(
            p.url.as_str(),
            "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21"
        );
        let (name, value) = p.auth.as_ref().unwrap();
        assert_eq!(name.as_str(), "api-key");
        assert_eq!(value.to_str().unwrap(), "k");
        assert!(OpenAiCompatible::new("ftp://x", None, None, limits()).is_err());
    }

    #[test]
    fn a_stored_key_goes_in_the_configured_header_and_never_prints() {
        let configured = ApiKey::new("from-env".into());
        let azure =
            OpenAiCompatible::new("https://r.example/v1", Some(&configured), Some("api-key"), limits()).unwrap();
        let stored = ApiKey::new("sk-stored-secret".into());
        assert!(azure.with_api_key(&stored).unwrap().is_some());
        let (name, value) = auth_header(&stored, azure.key_header.as_deref()).unwrap();
        assert_eq!((name.as_str(), value.to_str().unwrap()), ("api-key", "sk-stored-secret"));
        let plain = OpenAiCompatible::new("https://r.example/v1", None, None, limits()).unwrap();
        let (name, value) = auth_header(&stored, plain.key_header.as_deref()).unwrap();
        assert_eq!((name.as_str(), value.to_str().unwrap()), ("authorization", "Bearer sk-stored-secret"));
        assert!(value.is_sensitive());
        assert!(!format!("{stored:?} {plain:?}").contains("sk-stored-secret"));
        assert!(plain.with_api_key(&ApiKey::new("two\nlines".into())).is_err());
    }

    #[test]
    fn bounded_cuts_at_a_character() {
        assert_eq!(bounded("héllo", 2), "h…");
        assert_eq!(bounded("abc", 5), "abc");
    }
}
