//! The browser-facing pages: sign-up, sign-in, sign-out, and the authorization endpoint's
//! login-and-consent step. Server-rendered HTML (no JavaScript), every form CSRF-protected,
//! every page unframeable.

mod authorize;
pub mod pages;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bk_oauth::AuthServer;
use minijinja::Environment;

pub use bk_access::browser::{BrowserSession, CookieKeys};
pub use pages::create_account;

pub struct WebState {
    pub auth: Arc<AuthServer>,
    pub templates: Environment<'static>,
    pub login_failures_per_minute: u32,
}

impl WebState {
    pub fn new(auth: Arc<AuthServer>, login_failures_per_minute: u32) -> Self {
        let mut env = Environment::new();
        for (name, src) in [
            ("base.html", include_str!("templates/base.html")),
            ("login.html", include_str!("templates/login.html")),
            ("signup.html", include_str!("templates/signup.html")),
            ("consent.html", include_str!("templates/consent.html")),
            ("message.html", include_str!("templates/message.html")),
            ("home.html", include_str!("templates/home.html")),
        ] {
            // The templates are compiled into the binary; a syntax error is a build defect caught by every test.
            env.add_template(name, src).unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        Self { auth, templates: env, login_failures_per_minute }
    }

    /// Renders a template into an HTML response with the page security headers.
    pub(crate) fn page(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
        match self.templates.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => html_response(status, html),
            Err(e) => {
                tracing::error!(error = %e, template = name, "template rendering failed");
                html_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<!doctype html><title>Error</title><p>Internal error.</p>".into(),
                )
            }
        }
    }

    pub(crate) fn message(&self, status: StatusCode, title: &str, message: &str) -> Response {
        self.page(
            status,
            "message.html",
            minijinja::context! { title, message, is_error => status.is_client_error() || status.is_server_error() },
        )
    }
}

fn html_response(status: StatusCode, html: String) -> Response {
    let mut res = (status, html).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Headers every page carries: no framing (clickjacking), no sniffing, no referrer (codes in URLs).
pub async fn page_security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    res
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        include_str!("../static/bridgekeeper.css"),
    )
        .into_response()
}

/// The page brand of a white-label client (logo, name, description, colour), for the templates.
pub(crate) fn brand_of(client: &bk_domain::client::Client) -> Option<minijinja::Value> {
    if client.role != bk_domain::client::ClientRole::WhitelabelCustomer {
        return None;
    }
    let b = client.branding.clone().unwrap_or_default();
    Some(minijinja::context! {
        client_id => client.id.to_string(),
        name => client.name.clone(),
        logo => b.logo,
        description => b.description,
    })
}

/// The white-label client an authorization hop (`next` of the login page) is for.
pub(crate) async fn client_of_next(state: &WebState, next: &str) -> Option<bk_domain::client::Client> {
    let url = url::Url::parse(&format!("{}{}", state.auth.issuer, next)).ok()?;
    if !matches!(url.path(), "/api/v1/auth/authorize" | "/oauth/authorize" | "/consent") {
        return None;
    }
    let id = url.query_pairs().find(|(k, _)| k == "client_id").map(|(_, v)| v.into_owned())?;
    state.auth.store.client(&bk_domain::ids::ClientId::from_string(id)).await.ok().flatten()
}

/// `/static/brand/{client_id}.css`: a white-label client's colour as a CSS variable (a stylesheet,
/// so the pages' CSP needs no inline styles).
async fn brand_stylesheet(
    axum::extract::State(state): axum::extract::State<Arc<WebState>>,
    axum::extract::Path(file): axum::extract::Path<String>,
) -> Response {
    let Some(id) = file.strip_suffix(".css") else { return StatusCode::NOT_FOUND.into_response() };
    let client = state.auth.store.client(&bk_domain::ids::ClientId::from_string(id)).await.ok().flatten();
    let color = client
        .filter(|c| c.role == bk_domain::client::ClientRole::WhitelabelCustomer)
        .and_then(|c| c.branding)
        .and_then(|b| b.brand_color)
        .filter(|c| c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|x| x.is_ascii_hexdigit()));
    match color {
        Some(c) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            format!(":root {{ --brand: {c}; }}\n"),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/signup", get(pages::signup_form).post(pages::signup))
        .route("/logout", axum::routing::post(pages::logout))
        .route("/api/v1/auth/authorize", get(authorize::authorize))
        .route("/oauth/authorize", get(authorize::authorize))
        .route("/consent", get(authorize::consent_page).post(authorize::consent_decision))
        .route("/static/bridgekeeper.css", get(stylesheet))
        .route("/static/brand/{file}", get(brand_stylesheet))
        .layer(axum::middleware::from_fn(page_security_headers))
        .with_state(state)
}

/// A 303 See Other (the answer to every form POST, and to each authorization hop).
pub(crate) fn see_other(location: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Only same-site relative paths may be a `next` target (no open redirect).
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}
