//! The browser-facing pages: sign-up, sign-in, sign-out, email verification and password reset
//! and change (`account_email`), the account dashboard, the authorization endpoint's
//! login-and-consent step, and the connections page (with the white-label handoff that opens it).
//! Server-rendered HTML (no JavaScript), every form CSRF-protected, every page unframeable.
#![forbid(unsafe_code)]

mod account_email;
mod authorize;
pub mod connections_page;
pub mod dashboard;
pub mod pages;
mod passkeys;
mod second_factor;
mod sign_in_limits;
pub mod siwe;
pub mod upstream_oidc;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bk_oauth::AuthServer;
use minijinja::Environment;

pub use bk_access::browser::{BrowserSession, BrowserSessions, CookieKeys};
pub use sign_in_limits::SignInLimits;

pub struct WebState {
    pub auth: Arc<AuthServer>,
    pub templates: Environment<'static>,
    /// Signed-in browser sessions (server-side, so signing out ends them).
    pub browser_sessions: Arc<BrowserSessions>,
    pub sign_in_limits: SignInLimits,
    /// Where verification links, reset links and security notices go (SMTP or the outbox).
    pub mail: Arc<bk_mail::Mailer>,
    /// Emailed links, by digest.
    pub email_tokens: Arc<dyn bk_domain::ports::EmailTokenStore>,
    /// Accounts' authenticators and recovery codes.
    pub second_factors: Arc<dyn bk_domain::ports::SecondFactorStore>,
    /// Every account must have a second factor (`accounts.require_second_factor`).
    pub require_second_factor: bool,
    /// Passkeys and WebAuthn ceremonies.
    pub passkeys: Arc<dyn bk_domain::ports::PasskeyStore>,
    /// The WebAuthn relying party (the issuer's host); `None` when it is not a domain name.
    pub webauthn: Option<Arc<webauthn_rs::Webauthn>>,
    /// Sign-In with Ethereum (`siwe::Siwe`); `None` until `with_siwe`.
    pub siwe: Option<Arc<siwe::Siwe>>,
    /// Sign-in through upstream OpenID Connect providers (`upstream_oidc`); `None` until `with_upstream_idps`.
    pub idps: Option<Arc<upstream_oidc::UpstreamIdps>>,
}

impl WebState {
    pub fn new(
        auth: Arc<AuthServer>,
        browser_sessions: Arc<BrowserSessions>,
        sign_in_limits: SignInLimits,
        mail: Arc<bk_mail::Mailer>,
        email_tokens: Arc<dyn bk_domain::ports::EmailTokenStore>,
        second_factors: Arc<dyn bk_domain::ports::SecondFactorStore>,
        passkeys: Arc<dyn bk_domain::ports::PasskeyStore>,
    ) -> Self {
        let webauthn = passkeys::relying_party(&auth.issuer).map(Arc::new);
        if webauthn.is_none() {
            tracing::info!(
                issuer = %auth.issuer,
                "passkeys are off: the issuer's host is an IP address, and WebAuthn needs a domain name (on this \
                 machine, --issuer http://localhost:PORT works)"
            );
        }
        Self {
            auth,
            templates: templates(),
            browser_sessions,
            sign_in_limits,
            mail,
            email_tokens,
            second_factors,
            require_second_factor: false,
            passkeys,
            webauthn,
            siwe: None,
            idps: None,
        }
    }

    /// Requires a second factor of every account (`accounts.require_second_factor`).
    pub fn requiring_second_factor(mut self, required: bool) -> Self {
        self.require_second_factor = required;
        self
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
        self.branded_message(status, title, message, None)
    }

    /// [`WebState::message`] under a white-label client's brand (from [`brand_of_next`]), for the
    /// pages a person reaches from that client's authorization request.
    pub(crate) fn branded_message(
        &self,
        status: StatusCode,
        title: &str,
        message: &str,
        brand: Option<minijinja::Value>,
    ) -> Response {
        self.page(
            status,
            "message.html",
            minijinja::context! {
                title, message, brand, is_error => status.is_client_error() || status.is_server_error(),
            },
        )
    }
}

/// The page templates, compiled into the binary.
fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, src) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("signup.html", include_str!("templates/signup.html")),
        ("consent.html", include_str!("templates/consent.html")),
        ("message.html", include_str!("templates/message.html")),
        ("home.html", include_str!("templates/home.html")),
        ("forgot.html", include_str!("templates/forgot.html")),
        ("reset.html", include_str!("templates/reset.html")),
        ("email_change.html", include_str!("templates/email_change.html")),
        ("second_factor.html", include_str!("templates/second_factor.html")),
        ("totp_enrol.html", include_str!("templates/totp_enrol.html")),
        ("totp_codes.html", include_str!("templates/totp_codes.html")),
        ("totp_status.html", include_str!("templates/totp_status.html")),
        ("passkeys.html", include_str!("templates/passkeys.html")),
        ("connections.html", include_str!("templates/connections.html")),
    ]
    .into_iter()
    .chain(dashboard::TEMPLATES.iter().copied())
    {
        // The templates are compiled into the binary; a syntax error is a build defect caught by every test.
        env.add_template(name, src).unwrap_or_else(|e| panic!("template {name}: {e}"));
    }
    // How a page names the signed-in account: its email, or — an account made by a wallet, whose
    // address field holds an undeliverable placeholder — what it is.
    env.add_filter("account_name", |email: String| -> String {
        if bk_domain::wallet::is_placeholder_email(&email) {
            "your wallet account (no email address)".into()
        } else {
            email
        }
    });
    env
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
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; \
             base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    res
}

async fn passkeys_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        include_str!("../static/passkeys.js"),
    )
        .into_response()
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
        identity_provider => b.identity_provider,
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

/// The brand a page shows on the way through an authorization request: that of the white-label
/// client whose request `next` (a safe, same-site path) continues, else none (the server's own).
/// Only the client named by an authorization or consent hop in `next` is considered, so a page is
/// branded exactly as the sign-in page of the same `next` is.
pub(crate) async fn brand_of_next(state: &WebState, next: &str) -> Option<minijinja::Value> {
    client_of_next(state, next).await.as_ref().and_then(brand_of)
}

/// `/static/brand/{client_id}.css`: a white-label client's colour as a CSS variable (a stylesheet,
/// so the pages' CSP needs no inline styles).
async fn brand_stylesheet(
    axum::extract::State(state): axum::extract::State<Arc<WebState>>,
    axum::extract::Path(file): axum::extract::Path<String>,
) -> Response {
    let Some(id) = file.strip_suffix(".css") else { return StatusCode::NOT_FOUND.into_response() };
    let client = state.auth.store.client(&bk_domain::ids::ClientId::from_string(id)).await.ok().flatten();
    match client.as_ref().and_then(brand_css) {
        Some(css) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            css,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The brand stylesheet of a white-label client with a valid colour. The colour is checked again
/// here (not only when it was saved) because it is written into CSS.
fn brand_css(client: &bk_domain::client::Client) -> Option<String> {
    if client.role != bk_domain::client::ClientRole::WhitelabelCustomer {
        return None;
    }
    let color = client.branding.as_ref()?.brand_color.as_deref()?;
    if !bk_domain::client::is_valid_brand_color(color) {
        return None;
    }
    Some(format!(":root {{ --brand: {color}; --on-brand: {}; }}\n", text_on(color)))
}

/// The text colour readable on a brand colour (`#rgb` or `#rrggbb`): white where it has at least
/// 4.5:1 contrast (WCAG AA), else near-black.
fn text_on(color: &str) -> &'static str {
    let hex = color.trim_start_matches('#');
    let expanded: String = if hex.len() == 3 { hex.chars().flat_map(|c| [c, c]).collect() } else { hex.to_owned() };
    let channel = |i: usize| {
        let v = f64::from(u8::from_str_radix(expanded.get(i..i + 2).unwrap_or("00"), 16).unwrap_or(0)) / 255.0;
        if v <= 0.039_28 { v / 12.92 } else { ((v + 0.055) / 1.055).powf(2.4) }
    };
    let luminance = 0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4);
    if 1.05 / (luminance + 0.05) >= 4.5 { "#fff" } else { "#111" }
}

/// The connections page and the white-label handoff that opens it (`connections_page`).
pub fn connections_router(state: Arc<WebState>, api: Arc<bk_api::Api>) -> Router {
    connections_page::router(state, api)
}

/// The account dashboard (`dashboard`).
pub fn dashboard_router(state: Arc<WebState>, api: Arc<bk_api::Api>) -> Router {
    dashboard::router(state, api)
}

/// The OpenAPI operations this face serves on the REST API's paths (Sign-In with Ethereum's), for
/// the REST face's document (`bk_api::router_documenting`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    <siwe::SiweDoc as utoipa::OpenApi>::openapi()
}

pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/signup", get(pages::signup_form).post(pages::signup))
        .route("/logout", axum::routing::post(pages::logout))
        .route(account_email::VERIFY_PATH, get(account_email::verify_email))
        .route(account_email::FORGOT_PATH, get(account_email::forgot_form).post(account_email::forgot))
        .route(account_email::RESET_PATH, get(account_email::reset_form).post(account_email::reset))
        .route("/account/email/verify", axum::routing::post(account_email::resend_verification))
        .route("/account/password", axum::routing::post(account_email::change_password))
        .route(account_email::CHANGE_PATH, get(account_email::change_email_form).post(account_email::change_email))
        .route(account_email::CONFIRM_CHANGE_PATH, get(account_email::confirm_email_change))
        .route(second_factor::SIGN_IN_PATH, get(second_factor::sign_in_form).post(second_factor::sign_in))
        .route(second_factor::ENROL_PATH, get(second_factor::enrol_form).post(second_factor::enrol))
        .route(second_factor::DISABLE_PATH, axum::routing::post(second_factor::disable))
        .route(passkeys::PAGE, get(passkeys::page).post(passkeys::register))
        .route(passkeys::REGISTER_OPTIONS, axum::routing::post(passkeys::register_options))
        .route(passkeys::DELETE, axum::routing::post(passkeys::delete))
        .route(passkeys::SIGN_IN_OPTIONS, axum::routing::post(passkeys::sign_in_options))
        .route(passkeys::SIGN_IN, axum::routing::post(passkeys::sign_in))
        .route("/static/passkeys.js", get(passkeys_script))
        .route(siwe::NONCE_PATH, get(siwe::nonce))
        .route(
            siwe::AUTHENTICATE_PATH,
            axum::routing::post(siwe::authenticate)
                .layer(axum::extract::DefaultBodyLimit::max(siwe::AUTHENTICATE_BODY_LIMIT)),
        )
        .route(siwe::PAGE, get(siwe::page))
        .route(siwe::UNLINK_PATH, axum::routing::post(siwe::unlink))
        .route(siwe::SCRIPT_PATH, get(siwe::script))
        .route(upstream_oidc::START_PATH, axum::routing::post(upstream_oidc::start))
        .route(upstream_oidc::CALLBACK_PATH, get(upstream_oidc::callback))
        .route(upstream_oidc::PAGE, get(upstream_oidc::page))
        .route(upstream_oidc::LINK_PATH, axum::routing::post(upstream_oidc::link))
        .route(upstream_oidc::UNLINK_PATH, axum::routing::post(upstream_oidc::unlink))
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

#[cfg(test)]
mod tests {
    use super::*;
    use bk_domain::client::{Branding, Client, ClientOrigin, ClientRole, ClientType};
    use bk_domain::ids::ClientId;
    use bk_domain::scope::ScopeSet;
    use minijinja::context;

    fn client(role: ClientRole, brand_color: Option<&str>) -> Client {
        Client {
            id: ClientId::from_string("cli_brand"),
            name: "Acme <Tools>".into(),
            client_type: ClientType::Public,
            role,
            origin: ClientOrigin::Manual,
            redirect_uris: vec!["https://acme.example/cb".into()],
            allowed_scopes: ScopeSet::all(),
            allowed_providers: None,
            domains: vec!["acme.example".into()],
            branding: Some(Branding {
                logo: Some("data:image/png;base64,iVBORw0KGgo=".into()),
                description: Some("Acme's assistant".into()),
                brand_color: brand_color.map(str::to_owned),
                identity_provider: None,
            }),
            secret: None,
            owner: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn render(name: &str, ctx: minijinja::Value) -> String {
        let env = templates();
        let template = env.get_template(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        template.render(ctx).unwrap_or_else(|e| panic!("{name}: {e:#}"))
    }

    #[test]
    fn brand_stylesheet_sets_the_brand_variable() {
        let css = brand_css(&client(ClientRole::WhitelabelCustomer, Some("#0f9D58")));
        assert_eq!(css.as_deref(), Some(":root { --brand: #0f9D58; --on-brand: #111; }\n"));
        let dark = brand_css(&client(ClientRole::WhitelabelCustomer, Some("#3b5bdb")));
        assert_eq!(dark.as_deref(), Some(":root { --brand: #3b5bdb; --on-brand: #fff; }\n"));
        assert_eq!(text_on("#fff"), "#111");
        assert_eq!(text_on("#000"), "#fff");
        assert_eq!(text_on("#ffd43b"), "#111");
    }

    #[test]
    fn brand_stylesheet_only_for_whitelabel_clients_with_a_valid_colour() {
        assert_eq!(brand_css(&client(ClientRole::ThirdParty, Some("#0f9d58"))), None);
        assert_eq!(brand_css(&client(ClientRole::WhitelabelCustomer, None)), None);
        let mut unbranded = client(ClientRole::WhitelabelCustomer, None);
        unbranded.branding = None;
        assert_eq!(brand_css(&unbranded), None);
        // A colour stored before the rule existed (or written past the API) never reaches the stylesheet.
        for bad in ["#fff;} body { display: none", "red", "#12345", "#1234567", "#ff\"fff"] {
            assert_eq!(brand_css(&client(ClientRole::WhitelabelCustomer, Some(bad))), None, "{bad}");
        }
    }

    #[test]
    fn brand_of_only_for_whitelabel_clients() {
        assert!(brand_of(&client(ClientRole::ThirdParty, None)).is_none());
        let brand = brand_of(&client(ClientRole::WhitelabelCustomer, None)).unwrap();
        assert_eq!(brand.get_attr("client_id").unwrap().as_str(), Some("cli_brand"));
        assert_eq!(brand.get_attr("name").unwrap().as_str(), Some("Acme <Tools>"));
        assert_eq!(brand.get_attr("description").unwrap().as_str(), Some("Acme's assistant"));
    }

    #[test]
    fn login_template_renders_the_form() {
        let html = render(
            "login.html",
            context! { csrf_token => "tok123", next => "/consent?a=b", email => "a@b.co", error => "Invalid email or password.", brand => None::<minijinja::Value> },
        );
        assert!(html.contains(r#"name="csrf_token" value="tok123""#), "{html}");
        assert!(html.contains("Invalid email or password."));
        assert!(html.contains(r#"href="/signup?next=&#x2f;consent%3Fa%3Db""#), "{html}");
        assert!(html.contains(r#"<div class="brand">Bridgekeeper</div>"#));
    }

    #[test]
    fn login_template_shows_the_client_brand() {
        let brand = brand_of(&client(ClientRole::WhitelabelCustomer, Some("#0f9d58")));
        let html = render(
            "login.html",
            context! { csrf_token => "t", next => "/", email => "", error => None::<String>, brand },
        );
        assert!(html.contains(r#"href="/static/brand/cli_brand.css""#), "{html}");
        assert!(html.contains("Acme &lt;Tools&gt;"), "the client name is escaped: {html}");
        assert!(html.contains(r#"src="data:image&#x2f;png;base64,iVBORw0KGgo=""#));
        assert!(!html.contains(r#"class="error""#));
    }

    #[test]
    fn login_template_offers_identity_providers_and_a_whitelabel_clients_alone_first() {
        let idps = vec![context! { id => "acme", name => "Acme SSO" }, context! { id => "google", name => "Google" }];
        let html = render(
            "login.html",
            context! { csrf_token => "t", next => "/x", email => "", error => None::<String>, idps => idps.clone() },
        );
        assert!(html.contains("Continue with Acme SSO") && html.contains("Continue with Google"), "{html}");
        assert!(html.contains(r#"<input type="hidden" name="idp" value="google">"#), "{html}");
        let mut c = client(ClientRole::WhitelabelCustomer, None);
        if let Some(b) = c.branding.as_mut() {
            b.identity_provider = Some("google".into());
        }
        let html = render(
            "login.html",
            context! { csrf_token => "t", next => "/x", email => "", error => None::<String>, idps, brand => brand_of(&c) },
        );
        assert!(html.contains("Continue with Google") && !html.contains("Continue with Acme SSO"), "{html}");
        assert!(html.find("Continue with Google") < html.find(r#"action="/login""#), "first: {html}");
    }

    #[test]
    fn signup_template_renders_the_form() {
        let html = render(
            "signup.html",
            context! { csrf_token => "tok456", next => "/", email => "a@b.co", error => "Enter a valid email address." },
        );
        assert!(html.contains(r#"name="csrf_token" value="tok456""#));
        assert!(html.contains(r#"value="a@b.co""#));
        assert!(html.contains("Enter a valid email address."));
    }

    #[test]
    fn templates_escape_what_people_typed() {
        let html = render(
            "signup.html",
            context! { csrf_token => "t", next => "/", email => "\"><script>alert(1)</script>", error => None::<String> },
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn consent_template_lists_scopes_restrictions_and_parameters() {
        let html = render(
            "consent.html",
            context! {
                client_name => "Some Agent",
                registered_by => context! { by_itself => true },
                email => "a@b.co",
                scopes => vec![context! { name => "account", description => "Manage your account" }],
                redirect_host => "agent.example",
                params => vec![("client_id", "cli_1"), ("state", "xyz")],
                brand => None::<minijinja::Value>,
                restrictions => context! {
                    providers => vec![("github", "read")],
                    default => "none",
                    agents => Vec::<String>::new(),
                    knowledge_bases => None::<Vec<String>>,
                },
                csrf_token => "tok789",
            },
        );
        for needle in [
            "<strong>Some Agent</strong> wants to access your account",
            "registered itself automatically (dynamic registration), not by the operator",
            "It will send you to <strong>agent.example</strong>: allow it only if",
            "<strong>Manage your account</strong>",
            "<strong>github</strong>: read",
            "Other services: <strong>none</strong>",
            "Agents: none",
            "<strong>agent.example</strong>",
            r#"<input type="hidden" name="state" value="xyz">"#,
            r#"name="csrf_token" value="tok789""#,
        ] {
            assert!(html.contains(needle), "missing {needle:?} in {html}");
        }
        assert!(!html.contains("Knowledge bases:"), "no knowledge-base restriction: {html}");
    }

    #[test]
    fn consent_template_names_who_registered_a_client() {
        let page = |registered_by: Option<minijinja::Value>| {
            render(
                "consent.html",
                context! {
                    client_name => "Claude Desktop", registered_by, redirect_host => "claude.evil.example",
                    scopes => Vec::<String>::new(), params => Vec::<(String, String)>::new(),
                },
            )
        };
        let html = page(Some(context! { by_itself => false, email => "mallory@example.com" }));
        assert!(html.contains("registered by <strong>mallory@example.com</strong>"), "{html}");
        assert!(html.contains("<strong>claude.evil.example</strong>: allow it only if"), "{html}");
        assert!(!html.contains("registered itself"), "{html}");
        let vetted = page(None);
        assert!(!vetted.contains(r#"class="warn""#), "{vetted}");
    }

    #[test]
    fn login_template_shows_a_notice() {
        let html = render(
            "login.html",
            context! { csrf_token => "t", next => "/", email => "", error => None::<String>, notice => "Thanks." },
        );
        assert!(html.contains(r#"<p class="notice" role="status">Thanks.</p>"#), "{html}");
    }

    #[test]
    fn message_and_home_templates_render() {
        let html = render("message.html", context! { title => "Try again", message => "Later.", is_error => true });
        assert!(html.contains("<title>Try again · Bridgekeeper</title>"), "{html}");
        assert!(html.contains(r#"<p class="error" role="alert">Later.</p>"#), "{html}");

        let home =
            render("home.html", context! { email => "a@b.co", csrf_token => "t", issuer => "https://bk.example" });
        assert!(home.contains("<code>https:&#x2f;&#x2f;bk.example/mcp</code>"), "{home}");
        assert!(home.contains(r#"action="/logout""#));
        let anonymous = render("home.html", context! { email => None::<String>, csrf_token => "t", issuer => "x" });
        assert!(anonymous.contains(r#"<a href="/login">Sign in</a>"#), "{anonymous}");
        assert!(!anonymous.contains("/logout"));
    }

    #[test]
    fn next_must_be_a_same_site_path() {
        assert_eq!(safe_next(Some("/consent?client_id=x")), "/consent?client_id=x");
        assert_eq!(safe_next(Some("/")), "/");
        for bad in [
            None,
            Some(""),
            Some("https://evil.example/"),
            Some("//evil.example/"),
            Some("/\\evil.example"),
            Some("evil"),
            Some("/a\nb"),
            Some("/a\u{7f}"),
        ] {
            assert_eq!(safe_next(bad), "/", "{bad:?}");
        }
    }

    #[test]
    fn see_other_sets_location_and_no_store() {
        let res = see_other("/login?next=%2F");
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(res.headers()[header::LOCATION], "/login?next=%2F");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn csrf_token_is_bound_to_the_session_cookie() {
        let keys = CookieKeys::derive(&[7u8; 32], false);
        let session = BrowserSession::anonymous(1_000);
        let set_cookie = session.set_cookie(&keys);
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&pair).unwrap());
        let read = BrowserSession::read(&headers, &keys, 1_001).expect("the cookie reads back");
        let token = session.csrf_token(&keys);
        assert!(read.csrf_ok(&keys, &token));
        assert!(!BrowserSession::anonymous(1_000).csrf_ok(&keys, &token), "another session's token");
        assert!(!read.csrf_ok(&keys, ""));
        let other_keys = CookieKeys::derive(&[8u8; 32], false);
        assert!(BrowserSession::read(&headers, &other_keys, 1_001).is_none(), "a cookie signed with another key");
    }
}
