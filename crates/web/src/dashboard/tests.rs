//! The dashboard's templates rendered as the handlers render them, and its small pure helpers.

use minijinja::context;

use super::*;

const CSRF: &str = "tok-123";

fn viewer(app: Option<(bk_domain::client::Client, String)>) -> Viewer {
    let mut account = Account::with_password(
        bk_domain::ids::AccountId::from_string("acc_alice"),
        "alice@example.com".into(),
        String::new(),
        0,
    );
    account.password_hash = None;
    Viewer { account, session: BrowserSession::anonymous(0), app }
}

fn render_as(v: &Viewer, template: &str, current: &str, flash: Flash, ctx: Value) -> String {
    let env = crate::templates();
    let t = env.get_template(template).unwrap_or_else(|e| panic!("{template}: {e}"));
    t.render(page_context(current, v, CSRF, flash, ctx)).unwrap_or_else(|e| panic!("{template}: {e:#}"))
}

fn render(template: &str, current: &str, flash: Flash, ctx: Value) -> String {
    render_as(&viewer(None), template, current, flash, ctx)
}

#[test]
fn a_handed_off_dashboard_carries_the_apps_brand_and_no_security_page() {
    use bk_domain::client::{Branding, Client, ClientOrigin, ClientRole, ClientType};
    let client = Client {
        id: bk_domain::ids::ClientId::from_string("cli_acme"),
        name: "Acme <CRM>".into(),
        client_type: ClientType::Confidential,
        role: ClientRole::WhitelabelCustomer,
        origin: ClientOrigin::Manual,
        redirect_uris: vec!["https://acme.example/cb".into()],
        allowed_scopes: bk_domain::scope::ScopeSet::all(),
        allowed_providers: None,
        domains: vec!["acme.example".into()],
        branding: Some(Branding {
            logo: None,
            description: None,
            brand_color: Some("#0f9d58".into()),
            identity_provider: None,
        }),
        secret: None,
        owner: None,
        created_at: 0,
        updated_at: 0,
    };
    let v = viewer(Some((client, "https://acme.example/settings".into())));
    let html = render_as(&v, "account_overview.html", OVERVIEW, Flash::default(), overview_ctx(true));
    assert!(html.contains(r#"href="/static/brand/cli_acme.css""#), "{html}");
    assert!(html.contains("Acme &lt;CRM&gt;"), "the name, escaped: {html}");
    assert!(html.contains(r#"href="https:&#x2f;&#x2f;acme.example&#x2f;settings""#), "a way back: {html}");
    assert!(!html.contains(r#"href="&#x2f;account&#x2f;security""#), "no security page: {html}");
    assert!(!html.contains(r#"action="/logout""#), "no sign-out (the app's session is the app's): {html}");
    let own = render("account_overview.html", OVERVIEW, Flash::default(), overview_ctx(true));
    assert!(own.contains(r#"href="&#x2f;account&#x2f;security""#) && own.contains(r#"action="/logout""#), "{own}");
    assert!(!own.contains("/static/brand/"));
}

fn restrictions() -> RestrictionsView {
    let r =
        Restrictions::from_params(Some(r#"{"github":"read"}"#), Some("disabled"), Some(r#"["agt_1"]"#), None).unwrap();
    restrictions_view(&r, |p| if p == "github" { "GitHub".into() } else { p.into() })
}

fn at(t: UnixTime) -> Value {
    ser(when(t))
}

/// Every `<form method="post">` carries this session's CSRF token, and nothing else carries one.
fn assert_forms_carry_the_token(html: &str) {
    let forms = html.matches(r#"<form method="post""#).count();
    let tokens = html.matches(&format!(r#"<input type="hidden" name="csrf_token" value="{CSRF}">"#)).count();
    assert!(forms > 0, "{html}");
    assert_eq!(forms, tokens, "every form carries the token once:\n{html}");
    assert_eq!(html.matches("csrf_token").count(), tokens, "{html}");
}

/// Every `<input>`, `<select>` (but hidden inputs) has a `<label for>` naming its id.
fn assert_inputs_are_labelled(html: &str) {
    for tag in html.split('<').filter(|t| t.starts_with("input ") || t.starts_with("select ")) {
        if tag.contains(r#"type="hidden""#) {
            continue;
        }
        let id =
            tag.split(r#"id=""#).nth(1).and_then(|r| r.split('"').next()).unwrap_or_else(|| panic!("no id: <{tag}"));
        assert!(html.contains(&format!(r#"<label for="{id}">"#)), "no label for #{id} in:\n{html}");
    }
}

fn overview_ctx(verified: bool) -> Value {
    context! {
        account_email => "alice@example.com",
        email_verified => verified,
        member_since => at(1_796_312_400),
        connected => 2,
        apps_total => 1,
        apps => ser(vec![context! { id => "ses_1", name => "Claude <Desktop>", created => at(1_796_312_400) }]),
        tokens => 3,
        mcp_url => "https://bk.example/mcp",
        recent => Vec::<Value>::new(),
    }
}

#[test]
fn the_layout_has_landmarks_navigation_and_marks_the_current_page() {
    let html = render("account_overview.html", OVERVIEW, Flash::default(), overview_ctx(true));
    for needle in [
        r##"<a class="skip" href="#content">Skip to content</a>"##,
        r#"<nav class="dash-nav" aria-label="Account">"#,
        r#"<main id="content" class="dash-main" tabindex="-1">"#,
        r#"<a href="&#x2f;account" aria-current="page">Overview</a>"#,
        r#"<a href="&#x2f;connections">Connected services</a>"#,
        r#"<a href="&#x2f;account&#x2f;apps">Apps</a>"#,
        r#"<a href="&#x2f;account&#x2f;tokens">Tokens</a>"#,
        r#"<a href="&#x2f;account&#x2f;activity">Activity</a>"#,
        r#"<a href="&#x2f;account&#x2f;security">Security</a>"#,
        r#"<form method="post" action="/logout">"#,
        "<title>Your account · Bridgekeeper</title>",
        "Signed in as <strong>alice@example.com</strong>",
    ] {
        assert!(html.contains(needle), "missing {needle:?} in:\n{html}");
    }
    assert_eq!(html.matches("aria-current").count(), 1, "one current page");
    assert!(!html.contains("<script"), "no script outside the activity page");
    let tokens = render("account_tokens.html", TOKENS, Flash::default(), tokens_ctx());
    assert!(tokens.contains(r#"<a href="&#x2f;account&#x2f;tokens" aria-current="page">Tokens</a>"#), "{tokens}");
    assert!(!tokens.contains(r#"<a href="&#x2f;account" aria-current"#));
}

#[test]
fn the_overview_says_whether_the_address_is_verified_and_escapes_names() {
    let html = render("account_overview.html", OVERVIEW, Flash::default(), overview_ctx(false));
    assert!(html.contains(r#"<span class="badge badge-warn">Not verified</span>"#), "{html}");
    assert!(html.contains(r##"href="/account/security#email-h""##), "{html}");
    assert!(html.contains("Claude &lt;Desktop&gt;"), "the app's name is escaped: {html}");
    assert!(!html.contains("Claude <Desktop>"));
    assert!(html.contains(r#"<span class="num">2</span> services connected"#), "{html}");
    assert!(html.contains("Nothing has happened on this account yet."));
    let verified = render("account_overview.html", OVERVIEW, Flash::default(), overview_ctx(true));
    assert!(verified.contains(r#"<span class="badge badge-ok">Verified</span>"#), "{verified}");
}

fn apps_ctx() -> Value {
    context! {
        apps => ser(vec![context! {
            id => "ses_abc",
            name => "<b>Evil</b> app",
            hosts => vec!["app.example", "127.0.0.1"],
            registered => "It registered itself (dynamic registration).",
            scopes => ser(apps::scope_views([bk_domain::scope::Scope::McpRead].into_iter())),
            restrictions => ser(restrictions()),
            created => at(1_796_312_400),
            last_used => None::<Value>,
        }]),
    }
}

#[test]
fn the_apps_page_lists_what_each_app_may_do_and_revokes_by_form() {
    let html = render("account_apps.html", APPS, Flash::default(), apps_ctx());
    for needle in [
        "<h2 class=\"item-title\">&lt;b&gt;Evil&lt;&#x2f;b&gt; app</h2>",
        "<dd>app.example, 127.0.0.1</dd>",
        "It registered itself (dynamic registration).",
        "<code>universal-mcp-read</code>: See which tools are available to you (list tools)",
        "<dd>GitHub: read only; every other service: no access</dd>",
        "<dd>only agt_1</dd>",
        "<dd>every knowledge base</dd>",
        "<time datetime=\"2026-12-03T15:40:00Z\">2026-12-03 15:40 UTC</time>",
        "not in your recent activity",
        r#"<form method="post" action="/account/apps/ses_abc/revoke">"#,
        r#"Revoke access<span class="vh"> of &lt;b&gt;Evil&lt;&#x2f;b&gt; app</span>"#,
    ] {
        assert!(html.contains(needle), "missing {needle:?} in:\n{html}");
    }
    assert_forms_carry_the_token(&html);
    let none = render("account_apps.html", APPS, Flash::default(), context! { apps => Vec::<Value>::new() });
    assert!(none.contains("No app holds access to this account."), "{none}");
}

fn tokens_ctx() -> Value {
    context! {
        tokens => ser(vec![context! {
            id => "pat_xyz",
            name => "CI deploy",
            scopes => ser(apps::scope_views([bk_domain::scope::Scope::Account].into_iter())),
            restrictions => ser(restrictions()),
            created => at(1_796_312_400),
            expires => None::<Value>,
            last_used => at(1_796_312_460),
            made_by_token => true,
        }]),
        form => ser(tokens::TokenForm::default()),
        scope_choices => ser(apps::scope_views(bk_api::pat_scope_ceiling().iter())),
        providers => ser(vec![context! { id => "github", name => "GitHub" }]),
        lifetimes => vec![("7", "7 days"), ("never", "Never")],
        default_days => 90,
        max_tokens => 100,
    }
}

#[test]
fn the_tokens_page_offers_only_the_scopes_a_pat_may_carry_with_labelled_fields() {
    let html = render(
        "account_tokens.html",
        TOKENS,
        Flash::error("Name must be 1 to 100 printable characters."),
        tokens_ctx(),
    );
    assert!(html.contains(r#"<p class="error" role="alert">Name must be 1 to 100 printable characters.</p>"#));
    assert!(
        html.contains(r#"id="scope-universal-mcp-read" name="scope" value="universal-mcp-read" checked>"#),
        "{html}"
    );
    assert!(html.contains(r#"id="scope-account" name="scope" value="account">"#), "{html}");
    assert!(!html.contains("agents-all"), "a PAT never carries agents-all: {html}");
    assert!(html.contains(r#"<option value="default" selected>In 90 days (the default)</option>"#), "{html}");
    assert!(html.contains(r#"<select id="perm-github" name="provider.github">"#));
    assert!(html.contains(r#"<form method="post" action="/account/tokens/pat_xyz/revoke">"#));
    assert!(html.contains("<dt>Expires</dt><dd>never</dd>"), "{html}");
    assert!(html.contains("Made with another token"), "{html}");
    assert_forms_carry_the_token(&html);
    assert_inputs_are_labelled(&html);
}

#[test]
fn a_new_token_is_shown_read_only_on_its_answer_page() {
    let html = render(
        "account_token_created.html",
        TOKENS,
        Flash::default(),
        context! {
            token => "bkp_secretvalue",
            name => "CI",
            scopes => ser(apps::scope_views([bk_domain::scope::Scope::McpRead].into_iter())),
            limits => ser(restrictions()),
            expires => at(1_796_312_400),
            mcp_url => "https://bk.example/mcp",
        },
    );
    assert!(
        html.contains(r#"<input id="new-token" class="secret" type="text" value="bkp_secretvalue" readonly autocomplete="off" spellcheck="false">"#),
        "{html}"
    );
    assert_eq!(html.matches("bkp_secretvalue").count(), 1, "the token appears once");
    assert!(html.contains("It is shown only this once"));
    assert_inputs_are_labelled(&html);
}

fn activity_ctx(live: bool) -> Value {
    let event = activity::EventView {
        seq: 7,
        at: when_ms(1_796_312_407_123),
        kind: "pat.created".into(),
        label: activity::kind_label("pat.created"),
        outcome: "success",
        by: Some("this site, in a browser".into()),
        target: Some("pat_1".into()),
        ip: None,
        details: vec![("scope".into(), "<script>alert(1)</script>".into())],
    };
    context! {
        filter => context! { kind => "pat.created", from => "2026-12-01", to => "", query => "/account/activity?kind=pat.created" },
        events => ser(vec![event]),
        kinds => activity::KINDS.to_vec(),
        latest => false,
        continued => false,
        next => "/account/activity?kind=pat.created&cursor=7",
        newest => "/account/activity?kind=pat.created&latest=1",
        live,
        last_seq => 7,
    }
}

#[test]
fn the_activity_page_filters_pages_and_runs_its_script_only_when_live() {
    let html = render("account_activity.html", ACTIVITY, Flash::default(), activity_ctx(true));
    for needle in [
        r#"<form method="get" action="/account/activity" class="filters">"#,
        r#"<input id="f-kind" type="text" name="kind" value="pat.created" list="kinds""#,
        r#"<option value="auth.signin" label="Signed in"></option>"#,
        r#"<input id="f-from" type="date" name="from" value="2026-12-01">"#,
        r#"<ol class="events" id="events" data-last-seq="7""#,
        r#"<time datetime="2026-12-03T15:40:07Z">2026-12-03 15:40:07 UTC</time>"#,
        r#"<span class="event-label">Personal access token created</span>"#,
        "by this site, in a browser",
        "&lt;script&gt;alert(1)&lt;&#x2f;script&gt;",
        r#"<a href="&#x2f;account&#x2f;activity?kind=pat.created&amp;cursor=7">Next page</a>"#,
        r#"<section id="live" aria-labelledby="live-h" data-kind="pat.created">"#,
        r#"<script src="/static/dashboard.js" defer></script>"#,
    ] {
        assert!(html.contains(needle), "missing {needle:?} in:\n{html}");
    }
    assert!(!html.contains("<script>alert"), "details are escaped");
    assert_inputs_are_labelled(&html);
    let still = render("account_activity.html", ACTIVITY, Flash::default(), activity_ctx(false));
    assert!(!still.contains("<script"), "no script when the page is not the newest: {still}");
    assert!(!still.contains(r#"id="live""#));
}

fn security_ctx(verified: bool) -> Value {
    context! {
        sessions => ser(vec![
            context! { handle => "h-this", browser => "Firefox on Linux", user_agent => "Mozilla/5.0 Firefox/140.0", current => true,
                signed_in => at(1_796_312_400), expires => at(1_796_355_600), last_seen => at(1_796_312_500) },
            context! { handle => "h-other", browser => "Chrome on Android", user_agent => None::<String>, current => false,
                signed_in => at(1_796_300_000), expires => at(1_796_343_200), last_seen => None::<Value> },
        ]),
        account_email => "alice@example.com",
        email_verified => verified,
        has_password => true,
    }
}

#[test]
fn the_security_page_lists_browsers_and_holds_the_account_forms() {
    let flash = security::flash_of(Some("verification_sent"), None, "alice@example.com");
    let html = render("account_security.html", SECURITY, flash, security_ctx(false));
    for needle in [
        r#"<p class="notice" role="status">We sent a verification link to alice@example.com. It works for 24 hours.</p>"#,
        r#"Firefox on Linux <span class="badge badge-ok">This browser</span>"#,
        r#"<form method="post" action="/account/sessions/h-this/end">"#,
        "Sign out this browser</button>",
        r#"<form method="post" action="/account/sessions/h-other/end">"#,
        r#"End<span class="vh"> the session of Chrome on Android signed in 2026-12-03 12:13 UTC</span>"#,
        r#"<form method="post" action="/account/sessions/end-all" class="end-all">"#,
        ">Sign out everywhere</button>",
        r#"<span class="badge badge-warn">Not verified</span>"#,
        r#"<form method="post" action="/account/email/verify">"#,
        "Send the verification link again</button>",
        r#"<form method="post" action="/account/password" class="stack">"#,
        r#"<input id="current-password" type="password" name="current_password" autocomplete="current-password" required>"#,
        r#"<input id="new-password" type="password" name="new_password" autocomplete="new-password" required minlength="8""#,
    ] {
        assert!(html.contains(needle), "missing {needle:?} in:\n{html}");
    }
    assert_forms_carry_the_token(&html);
    assert_inputs_are_labelled(&html);
    let verified = render("account_security.html", SECURITY, Flash::default(), security_ctx(true));
    assert!(!verified.contains("/account/email/verify"), "no verification form once verified");
    assert!(verified.contains(r#"<span class="badge badge-ok">Verified</span>"#));
    let wrong = render(
        "account_security.html",
        SECURITY,
        security::flash_of(None, Some("wrong_password"), "x"),
        security_ctx(true),
    );
    assert!(wrong.contains(r#"<p class="error" role="alert">The current password is not correct.</p>"#), "{wrong}");
}

#[test]
fn the_home_page_links_to_the_dashboard_when_signed_in() {
    let env = crate::templates();
    let home = env.get_template("home.html").unwrap();
    let signed_in =
        home.render(context! { email => "a@b.co", csrf_token => "t", issuer => "https://bk.example" }).unwrap();
    assert!(signed_in.contains(r#"<a href="/account">Your account</a>"#), "{signed_in}");
    let anonymous = home.render(context! { email => None::<String>, csrf_token => "t", issuer => "x" }).unwrap();
    assert!(!anonymous.contains(r#"href="/account""#), "{anonymous}");
}

#[test]
fn times_and_dates_are_utc() {
    assert_eq!(when(1_796_312_400), When { text: "2026-12-03 15:40 UTC".into(), iso: "2026-12-03T15:40:00Z".into() });
    assert_eq!(when_ms(1_796_312_407_999).text, "2026-12-03 15:40:07 UTC");
    assert_eq!(parse_date("2026-12-03"), Some(1_796_256_000));
    assert_eq!(date_of(1_796_312_400), "2026-12-03");
    assert_eq!(parse_date("2000-02-29"), Some(951_782_400));
    for bad in ["2026-02-30", "2025-02-29", "2026-13-01", "26-01-01", "2026-1-01", "", "1969-12-31", "x"] {
        assert_eq!(parse_date(bad), None, "{bad}");
    }
    for day in [0, 1, 59, 365, 10_957, 20_000, 2_932_896] {
        assert_eq!(parse_date(&date_of(day * 86_400)), Some(day * 86_400), "day {day}");
    }
}

#[test]
fn last_use_is_the_newest_event_of_each_session() {
    use bk_domain::audit::{AuditEvent, Outcome};
    let event = |seq: i64, at: i64, session: Option<&str>| StoredAuditEvent {
        seq,
        event: match session {
            Some(s) => AuditEvent::new("mcp.tools_call", Outcome::Success, at).session(s),
            None => AuditEvent::new("auth.signin", Outcome::Success, at),
        },
        prev_hash: String::new(),
        hash: String::new(),
        redacted_at: None,
    };
    let used = last_used_of(&[
        event(3, 300, Some("a")),
        event(2, 500, Some("a")),
        event(1, 100, Some("b")),
        event(4, 900, None),
    ]);
    assert_eq!(used.get("a"), Some(&500));
    assert_eq!(used.get("b"), Some(&100));
    assert_eq!(used.len(), 2);
}

#[test]
fn restrictions_read_as_words() {
    let open = restrictions_view(&Restrictions::unrestricted(), str::to_owned);
    assert_eq!(open.others, "read and write");
    assert!(open.agents.all && open.knowledge_bases.all && open.providers.is_empty());
    let closed = restrictions();
    assert_eq!(closed.providers, vec![("GitHub".to_owned(), "read only")]);
    assert_eq!(closed.others, "no access");
    assert_eq!((closed.agents.all, closed.agents.ids.clone()), (false, vec!["agt_1".to_owned()]));
}

#[test]
fn problems_read_as_sentences() {
    assert_eq!(
        sentence(&Problem::invalid("name", "name must be 1 to 100 printable characters")),
        "Name must be 1 to 100 printable characters."
    );
}
