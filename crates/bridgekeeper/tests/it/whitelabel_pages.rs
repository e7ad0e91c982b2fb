//! Reference 000: a white-label client's customers see the client's brand, not Bridgekeeper's,
//! throughout the flow. Every page a person can reach from that client's authorization request,
//! through the real binary: sign-in, sign-up (and its refusal), the verification link and its dead
//! link, forgot password, the reset link's form (and its refusal) and the sign-in after it, the
//! second factor (and its expired sign-in), an identity provider's error page, and the consent
//! page's error. Each shows the client's name, logo, description and stylesheet and no
//! "Bridgekeeper". The named security test: the brand comes only from a `next` that continues a
//! white-label client's authorization request (not another path, not a third-party or unknown
//! client, not another site), and markup in the brand is shown as text.

use serde_json::{Value, json};

use crate::account_email::{link_in, wait_for_mail};
use crate::harness::idp::{Person, TestIdp, start_at, urlenc};
use crate::harness::{Flow, PNG_DATA_URI, Server, challenge, client, input, location, operator_token, unescape};

const CB: &str = "http://127.0.0.1:53682/callback";
const DESCRIPTION: &str = "YourApp — AI-powered workspace";

/// A white-label client (reference 000's body) named `name`; its id.
async fn whitelabel(server: &Server, name: &str) -> String {
    let op = operator_token(server);
    let body = json!({
        "name": name, "type": "confidential", "roles": ["whitelabel-customer"], "domains": ["yourapp.com"],
        "redirectUris": ["https://yourapp.com/auth/callback", CB],
        "allowedScopes": ["universal-mcp-read-write", "connections", "account", "openid", "profile", "email"],
        "branding": { "logo": PNG_DATA_URI, "description": DESCRIPTION, "brandColor": "#4F46E5" },
    });
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth-clients"))
        .bearer_auth(&op)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    v["clientId"].as_str().unwrap().to_owned()
}

fn authorize_path(client_id: &str) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", CB)
        .append_pair("scope", "openid account")
        .append_pair("state", "st")
        .append_pair("code_challenge", &challenge("v-0123456789012345678901234567890123456789"))
        .append_pair("code_challenge_method", "S256");
    format!("/api/v1/auth/authorize?{}", q.finish())
}

/// Starts the client's authorization request in `http` (signed out): the sign-in page's path and HTML.
async fn start(server: &Server, http: &reqwest::Client, client_id: &str) -> (String, String) {
    let res = http.get(server.url(&authorize_path(client_id))).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let login = location(&res);
    assert!(login.starts_with("/login?next="), "{login}");
    let html = http.get(server.url(&login)).send().await.unwrap().text().await.unwrap();
    (login, html)
}

/// The page carries the client's brand (name, logo, description, stylesheet) and none of Bridgekeeper's.
fn assert_branded(html: &str, client_id: &str, name: &str, what: &str) {
    assert!(html.contains(r#"<div class="brand branded">"#), "{what}: the branded header: {html}");
    assert!(html.contains(&format!(r#"<span class="brand-name">{name}</span>"#)), "{what}: the client's name: {html}");
    assert!(html.contains(r#"<img class="brand-logo" src="data:image&#x2f;png;base64,"#), "{what}: the logo: {html}");
    assert!(html.contains(&format!(r#"alt="{name} logo""#)), "{what}: the logo's text: {html}");
    assert!(
        html.contains(&format!(r#"<p class="muted brand-description">{DESCRIPTION}</p>"#)),
        "{what}: the description: {html}"
    );
    assert!(
        html.contains(&format!(r#"<link rel="stylesheet" href="/static/brand/{client_id}.css">"#)),
        "{what}: the brand stylesheet: {html}"
    );
    assert!(!html.contains("Bridgekeeper"), "{what}: no Bridgekeeper branding (header or title): {html}");
}

/// The page is in Bridgekeeper's own look, no client's.
fn assert_unbranded(html: &str, what: &str) {
    assert!(html.contains(r#"<div class="brand">Bridgekeeper</div>"#), "{what}: Bridgekeeper's header: {html}");
    assert!(!html.contains("/static/brand/") && !html.contains("brand-logo"), "{what}: no client's brand: {html}");
}

/// The first link in `html` whose text is `text` (its `href`, unescaped).
fn href_of(html: &str, text: &str) -> String {
    let end = html.find(&format!(">{text}</a>")).unwrap_or_else(|| panic!("no link {text:?} in {html}"));
    let start = html[..end].rfind("href=\"").unwrap() + "href=\"".len();
    unescape(&html[start..end - 1])
}

#[tokio::test]
async fn whitelabel_sign_up_and_email_verification_pages_carry_the_clients_brand() {
    let server = Server::start();
    let id = whitelabel(&server, "YourApp").await;
    let http = client();
    let (_, login) = start(&server, &http, &id).await;
    assert_branded(&login, &id, "YourApp", "sign-in page");

    // The sign-in page's "Create one" link: the sign-up page, branded, on the way to the same request.
    let signup_href = href_of(&login, "Create one");
    assert!(signup_href.starts_with("/signup?next="), "{signup_href}");
    let res = http.get(server.url(&signup_href)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let signup = res.text().await.unwrap();
    assert_branded(&signup, &id, "YourApp", "sign-up page");
    let next = input(&signup, "next");
    assert!(next.starts_with("/api/v1/auth/authorize?") && next.contains(&id), "{next}");
    assert!(href_of(&signup, "Sign in").starts_with("/login?next="), "back to the branded sign-in");

    // A refused sign-up (password too short) shows the page again, branded.
    let email = "customer@yourapp.example";
    let form = |pw: &str| {
        [
            ("csrf_token", input(&signup, "csrf_token")),
            ("next", next.clone()),
            ("email", email.into()),
            ("password", pw.into()),
        ]
    };
    let res = http.post(server.url("/signup")).form(&form("short")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let refused = res.text().await.unwrap();
    assert!(refused.contains(r#"class="error""#), "{refused}");
    assert_branded(&refused, &id, "YourApp", "refused sign-up page");

    // Signed up: the sign-in page, branded, with its notice about the verification email.
    let res = http.post(server.url("/signup")).form(&form("correct horse battery staple")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let after = http.get(server.url(&location(&res))).send().await.unwrap().text().await.unwrap();
    assert!(after.contains("Thanks for signing up"), "{after}");
    assert_branded(&after, &id, "YourApp", "sign-in page after sign-up");

    // The verification link carries the request; the page it opens is branded, and so is its dead link.
    let mail = wait_for_mail(&server, email, "Verify your email address").await;
    let link = link_in(&mail, "/verify-email");
    assert!(link.contains("&next=%2Fapi%2Fv1%2Fauth%2Fauthorize"), "{link}");
    let res = client().get(server.url(&link)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let verified = res.text().await.unwrap();
    assert!(verified.contains("Email address verified"), "{verified}");
    assert_branded(&verified, &id, "YourApp", "email verified page");
    let res = client().get(server.url(&link)).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let used = res.text().await.unwrap();
    assert!(used.contains("This link was used already"), "{used}");
    assert_branded(&used, &id, "YourApp", "used verification link page");
}

#[tokio::test]
async fn whitelabel_password_reset_pages_carry_the_clients_brand() {
    let server = Server::start();
    let id = whitelabel(&server, "YourApp").await;
    let flow = Flow::signup(&server, "forgetful@yourapp.example").await;
    let http = client();
    let (_, login) = start(&server, &http, &id).await;

    let forgot_href = href_of(&login, "Forgot your password?");
    assert!(forgot_href.starts_with("/forgot-password?next="), "{forgot_href}");
    let forgot = http.get(server.url(&forgot_href)).send().await.unwrap().text().await.unwrap();
    assert_branded(&forgot, &id, "YourApp", "forgot-password page");
    assert!(href_of(&forgot, "Back to sign-in").starts_with("/login?next="), "{forgot}");
    let next = input(&forgot, "next");
    assert!(next.starts_with("/api/v1/auth/authorize?") && next.contains(&id), "{next}");

    let res = http
        .post(server.url("/forgot-password"))
        .form(&[("csrf_token", input(&forgot, "csrf_token")), ("next", next.clone()), ("email", flow.email.clone())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let asked = res.text().await.unwrap();
    assert!(asked.contains("we sent it a link"), "{asked}");
    assert_branded(&asked, &id, "YourApp", "forgot-password answer");

    let mail = wait_for_mail(&server, &flow.email, "Reset your password").await;
    let link = link_in(&mail, "/reset-password");
    assert!(link.contains("&next=%2Fapi%2Fv1%2Fauth%2Fauthorize"), "{link}");
    let browser = client();
    let res = browser.get(server.url(&link)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let reset = res.text().await.unwrap();
    assert_branded(&reset, &id, "YourApp", "reset-password page");
    assert_eq!(input(&reset, "next"), next);
    let form = |pw: &str| {
        [
            ("csrf_token", input(&reset, "csrf_token")),
            ("token", input(&reset, "token")),
            ("next", next.clone()),
            ("new_password", pw.to_owned()),
        ]
    };
    let res = browser.post(server.url("/reset-password")).form(&form("short")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_branded(&res.text().await.unwrap(), &id, "YourApp", "refused reset-password page");

    // Reset: back to the branded sign-in page, on the way to the same request.
    let res =
        browser.post(server.url("/reset-password")).form(&form("a brand new long password")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let to = location(&res);
    assert!(to.starts_with("/login?next=%2Fapi%2Fv1%2Fauth%2Fauthorize") && to.ends_with("&reset=1"), "{to}");
    let after = browser.get(server.url(&to)).send().await.unwrap().text().await.unwrap();
    assert!(after.contains("Your password was changed"), "{after}");
    assert_branded(&after, &id, "YourApp", "sign-in page after the reset");

    // The link is spent: its dead-link page is branded too.
    let res = client().get(server.url(&link)).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_branded(&res.text().await.unwrap(), &id, "YourApp", "used reset link page");
}

#[tokio::test]
async fn whitelabel_second_factor_pages_carry_the_clients_brand() {
    let server = Server::start();
    let id = whitelabel(&server, "YourApp").await;
    let flow = Flow::signup(&server, "two-factor@yourapp.example").await;
    crate::second_factor::enrol(&server, &flow).await;

    let http = client();
    let (_, login) = start(&server, &http, &id).await;
    let res = http
        .post(server.url("/login"))
        .form(&[
            ("csrf_token", input(&login, "csrf_token")),
            ("next", input(&login, "next")),
            ("email", flow.email.clone()),
            ("password", flow.password.clone()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let second = location(&res);
    assert!(second.starts_with("/login/second-factor?next="), "{second}");
    let page = http.get(server.url(&second)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Confirm it is you"), "{page}");
    assert_branded(&page, &id, "YourApp", "second-factor page");
    assert!(href_of(&page, "Start again").starts_with("/login?next="), "{page}");

    // Another browser (no sign-in under way) is told to sign in again, under the same brand.
    let res = client().get(server.url(&second)).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let over = res.text().await.unwrap();
    assert!(over.contains("Sign in again"), "{over}");
    assert_branded(&over, &id, "YourApp", "expired second-factor sign-in");
}

#[tokio::test]
async fn whitelabel_identity_provider_error_pages_carry_the_clients_brand() {
    let idp = TestIdp::start().await;
    let server = idp.server(&[("BRIDGEKEEPER_IDP__PROVIDERS__ACME__ALLOWED_EMAIL_DOMAINS", "acme.example")]);
    let id = whitelabel(&server, "YourApp").await;
    idp.sign_in_as(Person::verified("outsider", "bob@evil.example"));
    let http = client();
    let (_, login) = start(&server, &http, &id).await;
    assert!(login.contains("Continue with Acme SSO"), "{login}");
    let next = input(&login, "next");
    // The provider signs in someone the server refuses: the refusal page, branded.
    let (_, res) = start_at(&http, &server, "/login/idp", &login, &next).await;
    assert_eq!(res.status(), 403);
    let refused = res.text().await.unwrap();
    assert!(refused.contains("limited to addresses in acme.example"), "{refused}");
    assert_branded(&refused, &id, "YourApp", "identity provider refusal");

    // A button for a provider the server does not offer: its error page, branded.
    let res = http
        .post(server.url("/login/idp"))
        .form(&[("csrf_token", input(&login, "csrf_token")), ("next", next.clone()), ("idp", "nope".into())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_branded(&res.text().await.unwrap(), &id, "YourApp", "unknown identity provider");
}

#[tokio::test]
async fn whitelabel_consent_page_and_its_error_carry_the_clients_brand() {
    let server = Server::start();
    let id = whitelabel(&server, "YourApp").await;
    let flow = Flow::signup(&server, "consenting@yourapp.example").await;
    let res = flow.http.get(server.url(&authorize_path(&id))).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let consent_path = location(&res);
    assert!(consent_path.starts_with("/consent?"), "{consent_path}");
    let consent = flow.http.get(server.url(&consent_path)).send().await.unwrap().text().await.unwrap();
    assert_branded(&consent, &id, "YourApp", "consent page");
    // A decision neither Approve nor Deny: the error page, branded.
    let mut form: Vec<(String, String)> = crate::harness::form_inputs(&consent);
    form.push(("decision".into(), "maybe".into()));
    let res = flow.http.post(server.url("/consent")).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let page = res.text().await.unwrap();
    assert!(page.contains("Choose Approve or Deny."), "{page}");
    assert_branded(&page, &id, "YourApp", "consent error page");
}

#[tokio::test]
async fn security_pages_take_a_brand_only_from_a_whitelabel_clients_authorization_request() {
    let server = Server::start();
    let id = whitelabel(&server, "YourApp").await;
    let flow = Flow::signup(&server, "someone@yourapp.example").await;
    let third_party = flow.register(CB, "openid account").await;
    let page = |path: String| {
        let server = &server;
        async move { client().get(server.url(&path)).send().await.unwrap().text().await.unwrap() }
    };
    let with_next = |page: &str, next: &str| format!("{page}?next={}", urlenc(next));

    for next in [
        // Another path naming the client: not its authorization request.
        format!("/account?client_id={id}"),
        format!("/signup?client_id={id}"),
        // A third-party client's request, and an unknown client's.
        authorize_path(&third_party),
        authorize_path("cli_nope"),
        // Another site's authorization endpoint (not a same-site path: it counts as none).
        format!("https://evil.example{}", authorize_path(&id)),
        format!("//evil.example{}", authorize_path(&id)),
    ] {
        for p in ["/signup", "/login", "/forgot-password", "/login/second-factor"] {
            assert_unbranded(&page(with_next(p, &next)).await, &format!("{p} with next={next}"));
        }
    }
    // The emailed reset link carries no `next` that brands nothing.
    let http = client();
    let forgot =
        http.get(server.url(&with_next("/forgot-password", &authorize_path(&third_party)))).send().await.unwrap();
    let forgot = forgot.text().await.unwrap();
    let res = http
        .post(server.url("/forgot-password"))
        .form(&[
            ("csrf_token", input(&forgot, "csrf_token")),
            ("next", authorize_path(&third_party)),
            ("email", flow.email.clone()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let link = link_in(&wait_for_mail(&server, &flow.email, "Reset your password").await, "/reset-password");
    assert!(!link.contains("next="), "{link}");
    // A reset link whose `next` was edited to another client's request is shown in Bridgekeeper's look.
    assert_unbranded(
        &page(format!("{link}&next={}", urlenc(&authorize_path(&third_party)))).await,
        "edited reset link",
    );

    // Markup in a white-label client's name is shown as text on every page, title included.
    let evil = whitelabel(&server, "Evil<script>alert(1)</script>").await;
    for p in ["/signup", "/login", "/forgot-password"] {
        let html = page(with_next(p, &authorize_path(&evil))).await;
        assert!(html.contains("Evil&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"), "{p}: {html}");
        assert!(!html.contains("<script>alert(1)"), "{p}: {html}");
        assert!(html.contains(&format!("/static/brand/{evil}.css")), "{p}: {html}");
    }
}
