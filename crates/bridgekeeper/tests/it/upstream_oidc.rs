//! Sign-in through an upstream OpenID Connect provider, against the real binary and a provider run
//! by the test (`harness::idp`: discovery, an authorization endpoint that signs its person in at once, a token
//! endpoint that checks the client secret, the code and the PKCE verifier, and ES256 ID tokens
//! whose keys the test rotates). What is proved: a verified new person gets an account and signs
//! in again to it, back at the pending authorization request; an account holding the email is
//! never linked by sign-in (verified or not) and is linked only while signed in; the state works
//! once and only in the browser that started it; a wrong nonce, an unknown key, a foreign domain,
//! a disabled account are refused; rotated keys are followed (the key set fetched again once);
//! the last way to sign in is never unlinked; a white-label client names the provider its login
//! page shows; a bad provider configuration stops the start naming its field.

use serde_json::{Value, json};

use crate::harness::idp::{CLIENT_SECRET, Person, TestIdp, continue_with, new_key, start_at, urlenc};
use crate::harness::{Flow, Server, bin, challenge, client, input, location, operator_token, query_param};

async fn home(http: &reqwest::Client, server: &Server) -> String {
    http.get(server.url("/")).send().await.unwrap().text().await.unwrap()
}

async fn methods_page(http: &reqwest::Client, server: &Server) -> String {
    let res = http.get(server.url("/account/security/sign-in-methods")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// The operator's view of the account holding `email`.
pub(crate) async fn account(server: &Server, op: &str, email: &str) -> Option<Value> {
    let v: Value = reqwest::Client::new()
        .get(server.url(&format!("/api/v1/admin/accounts?email={}", urlenc(email))))
        .bearer_auth(op)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["accounts"].as_array().unwrap().iter().find(|a| a["email"] == email).cloned()
}

#[tokio::test]
async fn a_verified_new_person_gets_an_account_and_returns_to_the_pending_authorization() {
    let idp = TestIdp::start().await;
    let server = idp.server(&[]);
    let op = operator_token(&server);
    let http = client();
    // A pending authorization request: sign-in through the provider goes back to it.
    let owner = Flow::signup(&server, "someone@example.com").await;
    let client_id = owner.register("http://127.0.0.1:53682/cb", "universal-mcp-read").await;
    let authorize = owner.authorize_url(&client_id, "http://127.0.0.1:53682/cb", "universal-mcp-read", "st1");
    let res = http.get(&authorize).send().await.unwrap();
    let login_at = location(&res);
    assert!(login_at.starts_with("/login?next="), "{login_at}");
    let next = query_param(&server.url(&login_at), "next").unwrap();
    let (_, res) = continue_with(&http, &server, &next).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    assert_eq!(location(&res), next, "back to the pending authorization request");
    let consent = http.get(server.url(&next)).send().await.unwrap();
    let consent = http.get(server.url(&location(&consent))).send().await.unwrap().text().await.unwrap();
    assert!(consent.contains("wants to access your account"), "{consent}");

    let created = account(&server, &op, "new.person@acme.example").await.expect("an account was created");
    assert_eq!(created["emailVerified"], json!(true), "the provider vouched for the address");
    let page = methods_page(&http, &server).await;
    assert!(page.contains("Acme SSO · new.person@acme.example"), "{page}");

    // A fresh browser signs in again to the same account (no second account).
    let again = client();
    let (_, res) = continue_with(&again, &server, "/").await;
    assert_eq!(res.status(), 303);
    assert!(home(&again, &server).await.contains("new.person@acme.example"));
    let v: Value = reqwest::Client::new()
        .get(server.url("/api/v1/admin/accounts?email=new.person%40acme.example"))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["accounts"].as_array().unwrap().len(), 1);
    // It has no password: the password form cannot sign it in.
    assert!(!server.logs().contains(CLIENT_SECRET), "the client secret never reaches the log");
}

#[tokio::test]
async fn security_an_unverified_email_never_signs_in_or_links_an_existing_account() {
    let idp = TestIdp::start().await;
    let server = idp.server(&[]);
    let alice = Flow::signup(&server, "alice@acme.example").await;
    for verified in [json!(false), Value::Null, json!("yes")] {
        idp.sign_in_as(Person {
            email_verified: verified.clone(),
            ..Person::verified("attacker-sub", "alice@acme.example")
        });
        let http = client();
        let (_, res) = continue_with(&http, &server, "/").await;
        assert_eq!(res.status(), 403, "{verified}");
        let page = res.text().await.unwrap();
        assert!(page.contains("does not vouch for your email address"), "{page}");
        assert!(!home(&http, &server).await.contains("alice@acme.example"), "not signed in");
    }
    let page = methods_page(&alice.http, &server).await;
    assert!(page.contains("No identity provider is linked"), "nothing was linked: {page}");
}

#[tokio::test]
async fn security_a_verified_email_of_an_existing_account_is_linked_only_while_signed_in() {
    let idp = TestIdp::start().await;
    let server = idp.server(&[]);
    let alice = Flow::signup(&server, "alice@acme.example").await;
    idp.sign_in_as(Person::verified("alice-at-acme", "alice@acme.example"));
    let http = client();
    let (_, res) = continue_with(&http, &server, "/").await;
    assert_eq!(res.status(), 409);
    let page = res.text().await.unwrap();
    assert!(page.contains("Sign in the usual way"), "{page}");
    assert!(page.contains("Linked sign-in methods"), "{page}");
    assert!(!home(&http, &server).await.contains("alice@acme.example"), "not signed in");
    assert!(methods_page(&alice.http, &server).await.contains("No identity provider is linked"));

    // Signed in, Alice links the provider from her security page.
    let page = methods_page(&alice.http, &server).await;
    assert!(page.contains("Link Acme SSO"), "{page}");
    let (_, res) = start_at(&alice.http, &server, "/account/security/sign-in-methods/link", &page, "").await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/security/sign-in-methods?notice=linked");
    let page = methods_page(&alice.http, &server).await;
    assert!(page.contains("Acme SSO · alice@acme.example"), "{page}");

    // The next sign-in through the provider lands in her account.
    let fresh = client();
    let (_, res) = continue_with(&fresh, &server, "/").await;
    assert_eq!(res.status(), 303);
    assert!(home(&fresh, &server).await.contains("alice@acme.example"));

    // Her password still works, and the identity can be unlinked (the password remains a way in).
    let page = methods_page(&alice.http, &server).await;
    let res = alice
        .http
        .post(server.url("/account/security/sign-in-methods/unlink"))
        .form(&[("csrf_token", input(&page, "csrf_token")), ("identity", input(&page, "identity"))])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&res), "/account/security/sign-in-methods?notice=unlinked");
    let (_, res) = continue_with(&client(), &server, "/").await;
    assert_eq!(res.status(), 409, "unlinked: the provider no longer signs her in");
}

#[tokio::test]
async fn security_idp_state_works_once_and_only_in_the_browser_that_started_it() {
    let idp = TestIdp::start().await;
    let server = idp.server(&[]);
    // Another browser finishing someone's sign-in (login CSRF with the attacker's code) is refused.
    let victim = client();
    let attacker = client();
    let login = attacker.get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    let res = attacker
        .post(server.url("/login/idp"))
        .form(&[("csrf_token", input(&login, "csrf_token")), ("idp", "acme".into()), ("next", "/".into())])
        .send()
        .await
        .unwrap();
    let callback = location(&attacker.get(location(&res)).send().await.unwrap());
    let _ = victim.get(server.url("/login")).send().await.unwrap();
    let res = victim.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 400, "another browser");
    assert!(!home(&victim, &server).await.contains("new.person@acme.example"));
    // The state was spent by that attempt: even its own browser cannot use it now.
    let res = attacker.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 400);

    // A callback replayed after a successful sign-in finds nothing.
    let http = client();
    let (callback, res) = continue_with(&http, &server, "/").await;
    assert_eq!(res.status(), 303);
    let res = http.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 400, "a replayed state");
    assert!(res.text().await.unwrap().contains("already used"));
    // A made-up state, or none.
    for q in ["?state=made-up&code=x", "?code=x"] {
        let res = http.get(server.url(&format!("/login/idp/callback{q}"))).send().await.unwrap();
        assert_eq!(res.status(), 400, "{q}");
    }
}

#[tokio::test]
async fn security_an_id_token_with_another_nonce_is_refused() {
    let idp = TestIdp::start().await;
    let server = idp.server(&[]);
    idp.state.lock().unwrap().nonce_override = Some("a-nonce-of-another-sign-in".into());
    let http = client();
    let (_, res) = continue_with(&http, &server, "/").await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("nonce"));
    assert!(!home(&http, &server).await.contains("new.person@acme.example"));
    let op = operator_token(&server);
    assert!(account(&server, &op, "new.person@acme.example").await.is_none(), "no account was created");
}

#[tokio::test]
async fn security_rotated_idp_keys_are_followed_and_unknown_keys_refused_with_bounded_refetching() {
    let idp = TestIdp::start().await;
    let server = idp.server(&[]);
    let (_, res) = continue_with(&client(), &server, "/").await;
    assert_eq!(res.status(), 303);
    assert_eq!(idp.state.lock().unwrap().jwks_fetches, 1);
    // The provider rotates: a new key first, the old one still published. Its key set is cached
    // for an hour, yet the new kid makes Bridgekeeper fetch it again at once.
    idp.state.lock().unwrap().keys.insert(0, ("key-2".into(), new_key()));
    let http = client();
    let (_, res) = continue_with(&http, &server, "/").await;
    assert_eq!(res.status(), 303, "a token signed by the new key is accepted");
    assert!(home(&http, &server).await.contains("new.person@acme.example"));
    assert_eq!(idp.state.lock().unwrap().jwks_fetches, 2);
    // A token signed by a key the provider does not publish is refused; asking again and again
    // within the refetch interval does not make us fetch the key set each time.
    idp.state.lock().unwrap().sign_with_unpublished = Some(("forged".into(), new_key()));
    for _ in 0..4 {
        let (_, res) = continue_with(&client(), &server, "/").await;
        assert_eq!(res.status(), 400);
    }
    let fetches = idp.state.lock().unwrap().jwks_fetches;
    // At most one refetch per 10 s: the rotation's refetch a moment ago may be the only one.
    assert!(fetches <= 3, "{fetches}: refetches for unknown key ids are rate limited, not one per attempt");
    // A token signed with the published key's id but another key fails its signature.
    idp.state.lock().unwrap().sign_with_unpublished = Some(("key-2".into(), new_key()));
    let (_, res) = continue_with(&client(), &server, "/").await;
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn security_allowed_email_domains_and_disabled_accounts_are_enforced() {
    let idp = TestIdp::start().await;
    let server = idp.server(&[("BRIDGEKEEPER_IDP__PROVIDERS__ACME__ALLOWED_EMAIL_DOMAINS", "acme.example")]);
    let op = operator_token(&server);
    idp.sign_in_as(Person::verified("outsider", "bob@evil.example"));
    let (_, res) = continue_with(&client(), &server, "/").await;
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("limited to addresses in acme.example"));
    assert!(account(&server, &op, "bob@evil.example").await.is_none());

    idp.sign_in_as(Person::verified("insider", "carol@acme.example"));
    let (_, res) = continue_with(&client(), &server, "/").await;
    assert_eq!(res.status(), 303);
    let id = account(&server, &op, "carol@acme.example").await.unwrap()["id"].as_str().unwrap().to_owned();
    let res = reqwest::Client::new()
        .post(server.url(&format!("/api/v1/admin/accounts/{id}/disable")))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let http = client();
    let (_, res) = continue_with(&http, &server, "/").await;
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("disabled"));
    assert!(!home(&http, &server).await.contains("carol@acme.example"));
}

#[tokio::test]
async fn security_the_last_sign_in_method_is_never_unlinked() {
    let idp = TestIdp::start().await;
    let server = idp.server(&[]);
    let http = client();
    let (_, res) = continue_with(&http, &server, "/").await;
    assert_eq!(res.status(), 303);
    let page = methods_page(&http, &server).await;
    let res = http
        .post(server.url("/account/security/sign-in-methods/unlink"))
        .form(&[("csrf_token", input(&page, "csrf_token")), ("identity", input(&page, "identity"))])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&res), "/account/security/sign-in-methods?error=last_sign_in_method");
    let said = http.get(server.url(&location(&res))).send().await.unwrap().text().await.unwrap();
    assert!(said.contains("only way to sign in"), "{said}");
    let page = methods_page(&http, &server).await;
    assert!(page.contains("Acme SSO · new.person@acme.example"), "still linked");
    // Someone else's identity handle is answered like an unknown one.
    let res = http
        .post(server.url("/account/security/sign-in-methods/unlink"))
        .form(&[("csrf_token", input(&page, "csrf_token")), ("identity", "idi_someone_elses".into())])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&res), "/account/security/sign-in-methods?error=not_found");
}

#[tokio::test]
async fn a_whitelabel_client_names_the_identity_provider_its_login_page_shows() {
    let idp = TestIdp::start().await;
    // A second provider, which the white-label client's page must not offer.
    let server = idp.server(&[
        ("BRIDGEKEEPER_IDP__PROVIDERS__OTHER__ISSUER", "https://other-idp.example"),
        ("BRIDGEKEEPER_IDP__PROVIDERS__OTHER__DISPLAY_NAME", "Other Login"),
        ("BRIDGEKEEPER_IDP__PROVIDERS__OTHER__CLIENT_ID", "c"),
        ("BRIDGEKEEPER_IDP__PROVIDERS__OTHER__CLIENT_SECRET", "s"),
    ]);
    let op = operator_token(&server);
    let cb = "http://127.0.0.1:53682/callback";
    let body = |idp: &str| {
        json!({
            "name": "Acme Portal", "type": "confidential", "roles": ["whitelabel-customer"],
            "domains": ["acme.example"], "redirectUris": ["https://acme.example/cb", cb], "allowedScopes": ["account"],
            "branding": {"description": "Acme's portal", "brandColor": "#4F46E5"},
            "identityProvider": idp,
        })
    };
    let post =
        |b: Value| reqwest::Client::new().post(server.url("/api/v1/auth-clients")).bearer_auth(&op).json(&b).send();
    let res = post(body("nope")).await.unwrap();
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert!(v.to_string().contains("identityProvider"), "{v}");
    let mut third = body("acme");
    third["roles"] = json!(["third-party"]);
    third.as_object_mut().unwrap().remove("branding");
    assert_eq!(post(third).await.unwrap().status(), 400, "only white-label clients name one");

    let res = post(body("acme")).await.unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["client"]["identityProvider"], "acme", "{v}");
    assert!(v["client"]["branding"].get("identityProvider").is_none(), "said once, at the top: {v}");
    let client_id = v["clientId"].as_str().unwrap().to_owned();

    let http = client();
    let mut authorize = url::Url::parse(&server.url("/api/v1/auth/authorize")).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", cb)
        .append_pair("scope", "account")
        .append_pair("state", "s")
        .append_pair("code_challenge", &challenge("v-0123456789012345678901234567890123456789"))
        .append_pair("code_challenge_method", "S256");
    let res = http.get(authorize.as_str()).send().await.unwrap();
    let login = http.get(server.url(&location(&res))).send().await.unwrap().text().await.unwrap();
    assert!(login.contains("Acme Portal"), "the client's branding: {login}");
    assert!(login.contains("Continue with Acme SSO"), "{login}");
    assert!(!login.contains("Continue with Other Login"), "only the client's provider: {login}");
    assert!(
        login.find("Continue with Acme SSO").unwrap() < login.find("action=\"/login\"").unwrap(),
        "the provider comes first"
    );
    // The plain login page offers both.
    let plain = client().get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    assert!(plain.contains("Continue with Acme SSO") && plain.contains("Continue with Other Login"));
}

#[test]
fn a_bad_identity_provider_configuration_stops_the_start_naming_the_field() {
    for (key, value, field) in [
        ("BRIDGEKEEPER_IDP__PROVIDERS__ACME__ISSUER", "ftp://idp.example", "idp.providers.acme.issuer"),
        ("BRIDGEKEEPER_IDP__PROVIDERS__ACME__SCOPES", "email profile", "idp.providers.acme.scopes"),
        ("BRIDGEKEEPER_IDP__PROVIDERS__ACME__TEMPLATE", "okta", "idp.providers.acme.template"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("BRIDGEKEEPER_IDP__PROVIDERS__ACME__ISSUER", "https://idp.example")
            .env("BRIDGEKEEPER_IDP__PROVIDERS__ACME__CLIENT_ID", "c")
            .env("BRIDGEKEEPER_IDP__PROVIDERS__ACME__CLIENT_SECRET", "never-printed-secret")
            .env(key, value);
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{key}={value} must stop the start");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(field), "{key}: {text}");
        assert!(!text.contains("never-printed-secret"), "{text}");
    }
}

#[tokio::test]
async fn security_an_idp_sign_in_still_asks_for_the_second_factor() {
    let idp = TestIdp::start().await;
    let server = idp.server(&[]);
    let dana = Flow::signup(&server, "dana@acme.example").await;
    let (_app, _step, recovery) = crate::second_factor::enrol(&server, &dana).await;
    // Dana links the provider while signed in.
    idp.sign_in_as(Person::verified("dana-at-acme", "dana@acme.example"));
    let page = methods_page(&dana.http, &server).await;
    let (_, res) = start_at(&dana.http, &server, "/account/security/sign-in-methods/link", &page, "").await;
    assert_eq!(location(&res), "/account/security/sign-in-methods?notice=linked");
    // Through the provider, a fresh browser is sent to the second factor, not signed in yet.
    let http = client();
    let (_, res) = continue_with(&http, &server, "/").await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/login/second-factor?"), "{}", location(&res));
    assert!(!home(&http, &server).await.contains("dana@acme.example"), "not signed in before the second factor");
    assert_eq!(crate::second_factor::second_factor(&server, &http, &recovery[0]).await, 303);
    assert!(home(&http, &server).await.contains("dana@acme.example"));
}

#[tokio::test]
async fn security_the_google_template_sends_hd_and_requires_the_tokens_hd() {
    let idp = TestIdp::start().await;
    // The Google template, pointed at the test's provider (the issuer set beside it wins).
    let server = idp.server(&[
        ("BRIDGEKEEPER_IDP__PROVIDERS__ACME__TEMPLATE", "google"),
        ("BRIDGEKEEPER_IDP__PROVIDERS__ACME__ALLOWED_EMAIL_DOMAINS", "acme.example"),
    ]);
    // A consumer account whose address merely looks like the Workspace domain: no hd claim.
    idp.sign_in_as(Person::verified("consumer", "erin@acme.example"));
    let (_, res) = continue_with(&client(), &server, "/").await;
    assert_eq!(res.status(), 403);
    let asked = idp.state.lock().unwrap().last_authorize.clone();
    assert_eq!(asked.get("hd").map(String::as_str), Some("acme.example"), "hd is sent: {asked:?}");
    assert_eq!(asked.get("scope").map(String::as_str), Some("openid email profile"));
    // The Workspace account: hd names the domain.
    idp.sign_in_as(Person { hd: Some("acme.example".into()), ..Person::verified("workspace", "erin@acme.example") });
    let http = client();
    let (_, res) = continue_with(&http, &server, "/").await;
    assert_eq!(res.status(), 303);
    assert!(home(&http, &server).await.contains("erin@acme.example"));
}

#[tokio::test]
async fn sign_ins_links_and_unlinks_are_audited_without_secrets() {
    let idp = TestIdp::start().await;
    let server = idp.server(&[]);
    let op = operator_token(&server);
    let frank = Flow::signup(&server, "frank@acme.example").await;
    idp.sign_in_as(Person::verified("frank-at-acme", "frank@acme.example"));
    let page = methods_page(&frank.http, &server).await;
    let (_, res) = start_at(&frank.http, &server, "/account/security/sign-in-methods/link", &page, "").await;
    assert_eq!(res.status(), 303);
    let (_, res) = continue_with(&client(), &server, "/").await;
    assert_eq!(res.status(), 303);
    let page = methods_page(&frank.http, &server).await;
    let res = frank
        .http
        .post(server.url("/account/security/sign-in-methods/unlink"))
        .form(&[("csrf_token", input(&page, "csrf_token")), ("identity", input(&page, "identity"))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    idp.sign_in_as(Person { email_verified: json!(false), ..Person::verified("other", "frank@acme.example") });
    let (_, res) = continue_with(&client(), &server, "/").await;
    assert_eq!(res.status(), 403);
    let kinds = ["account.idp_linked", "account.idp_unlinked", "auth.signin"];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let rows = loop {
        let v: Value = reqwest::Client::new()
            .get(server.url("/api/v1/admin/audit?limit=1000"))
            .bearer_auth(&op)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = v["events"].as_array().cloned().unwrap_or_default();
        let refused = rows.iter().any(|r| r.to_string().contains("email_unverified"));
        if refused || std::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let text = Value::Array(rows.clone()).to_string();
    for kind in kinds {
        assert!(rows.iter().any(|r| r.to_string().contains(kind)), "{kind} in {text}");
    }
    assert!(text.contains("oidc_sign_in"), "the sign-in through the provider: {text}");
    assert!(text.contains("email_unverified"), "the refusal and its reason: {text}");
    assert!(!text.contains(CLIENT_SECRET), "no client secret in the audit");
}

#[tokio::test]
async fn security_email_verified_vouches_only_for_the_email_claim_not_another_configured_claim() {
    let idp = TestIdp::start().await;
    let server = idp.server(&[("BRIDGEKEEPER_IDP__PROVIDERS__ACME__EMAIL_CLAIM", "upn")]);
    let op = operator_token(&server);
    // The provider verified `email`, not the `upn` the operator reads the address from.
    let upn = |v: &str| vec![("upn".to_owned(), json!(v))];
    idp.sign_in_as(Person {
        extra: upn("the.boss@acme.example"),
        ..Person::verified("sub-upn", "someone.else@acme.example")
    });
    let http = client();
    let (_, res) = continue_with(&http, &server, "/").await;
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("does not vouch for your email address"));
    assert!(account(&server, &op, "the.boss@acme.example").await.is_none(), "no account for an unvouched upn");
    assert!(account(&server, &op, "someone.else@acme.example").await.is_none());
    // The same address in both claims is vouched for.
    idp.sign_in_as(Person {
        extra: upn("The.Boss@acme.example"),
        ..Person::verified("sub-upn", "the.boss@acme.example")
    });
    let (_, res) = continue_with(&http, &server, "/").await;
    assert_eq!(res.status(), 303);
    let made = account(&server, &op, "the.boss@acme.example").await.expect("an account was created");
    assert_eq!(made["emailVerified"], json!(true));
}
