//! Reference 002 end to end, step by step, through the real binary: people sign in through an
//! upstream OpenID Connect provider (the test's, `harness::idp`, standing for Google), an MCP client
//! registered by DCR (as Claude does) gets its token through authorize and consent, and the
//! company backend in the reference's shape (`bridge_mode`'s "Nexus") is asked at consent about
//! the account's verified email and answers the scoped token that the bridged provider's
//! `search_leads` then carries. What is proved: a person who never used Bridgekeeper reaches the
//! backend with their own scoped token, and a second person with theirs (also through a white-label
//! client that names the provider); an address the provider does not vouch for — or an account's
//! unverified one, whatever its linked provider vouches for — never reaches the backend; the
//! backend refusing a person is `access_denied` at consent; the bridged tools are offered only to
//! sessions a sign-in crossed (and to tokens exchanged from them), never to a machine client's
//! session or a personal access token.

use serde_json::{Value, json};

use crate::bridge_mode::{
    ADMIN_TOKEN, REDIRECT, SCOPE, Shared, assert_no_token_logged, bridge_rows, env_for, nexus, search, text_of,
};
use crate::harness::idp::{Person, TestIdp, continue_with, start_at};
use crate::harness::{Flow, Server, client, location, operator_token, query_param};
use crate::machine_clients::{account_id, browser_pat, operator_client, post_form};
use crate::upstream_oidc::account;

/// Bridgekeeper with the test's provider as `acme` ("Acme SSO") and Nexus bridged, Nexus knowing
/// `users` (email, user id).
async fn reference_setup(users: &[(&str, &str)]) -> (TestIdp, Server, Shared) {
    let idp = TestIdp::start().await;
    let (base, n) = nexus().await;
    n.lock().unwrap().users.extend(users.iter().map(|(e, u)| ((*e).to_owned(), (*u).to_owned())));
    let mut env = idp.env(&[]);
    env.extend(env_for(&base));
    let server = Server::start_with(&env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>());
    (idp, server, n)
}

/// A person with a fresh browser who has no account yet (no password: the provider signs them in).
fn newcomer(server: &Server, email: &str) -> Flow {
    Flow { http: client(), base: server.base.clone(), email: email.to_owned(), password: String::new() }
}

/// The client's authorization request opened in the person's browser: the login page, "Continue
/// with Acme SSO", the provider, back at the pending request, consent approved. The redirect back
/// to the client (a code, or an error).
async fn sign_in_through_idp(flow: &Flow, server: &Server, authorize: &str) -> String {
    let res = flow.http.get(authorize).send().await.unwrap();
    let login_at = location(&res);
    assert!(login_at.starts_with("/login?next="), "not signed in yet: {login_at}");
    let next = query_param(&server.url(&login_at), "next").unwrap();
    let (_, res) = continue_with(&flow.http, server, &next).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    assert_eq!(location(&res), next, "back to the pending authorization request");
    flow.approve(&server.url(&next)).await
}

/// Links the provider's current person to the account signed in in `flow`'s browser.
async fn link_the_idp(flow: &Flow, server: &Server) {
    let page = flow.http.get(server.url("/account/security/sign-in-methods")).send().await.unwrap();
    let page = page.text().await.unwrap();
    let (_, res) = start_at(&flow.http, server, "/account/security/sign-in-methods/link", &page, "").await;
    assert_eq!(location(&res), "/account/security/sign-in-methods?notice=linked");
}

/// The names `tools/list` shows `token`.
async fn tool_names(flow: &Flow, token: &str) -> Vec<String> {
    let res = flow.mcp(token, "tools/list", json!({})).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let tools = v["result"]["tools"].as_array().unwrap_or_else(|| panic!("{v}"));
    tools.iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn reference_002_people_new_here_sign_in_through_the_idp_and_search_leads_with_their_own_scoped_token() {
    let (idp, server, n) =
        reference_setup(&[("new.person@acme.example", "u-new"), ("second.person@acme.example", "u-second")]).await;
    let op = operator_token(&server);
    // Flow 1: the MCP client finds the authorization server from /mcp's 401 and registers itself.
    let res = reqwest::Client::new().post(server.url("/mcp")).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    let first = newcomer(&server, "new.person@acme.example");
    let client_id = first.register(REDIRECT, SCOPE).await;

    // Flow 2: the person signs in through the provider (an account is made for the address it
    // vouches for), approves, and the backend is asked about that address with the admin token.
    let back = sign_in_through_idp(&first, &server, &first.authorize_url(&client_id, REDIRECT, SCOPE, "s1")).await;
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code: {back}"));
    assert_eq!(query_param(&back, "state").as_deref(), Some("s1"));
    {
        let g = n.lock().unwrap();
        assert_eq!(
            g.verify_calls,
            [(format!("Bearer {ADMIN_TOKEN}"), "new.person@acme.example".to_owned())],
            "verified once, at consent, with the address the provider vouched for"
        );
    }
    let made = account(&server, &op, "new.person@acme.example").await.expect("an account was made");
    assert_eq!(made["emailVerified"], json!(true), "for the address the provider vouched for: {made}");
    // The MCP token is only a session handle; the scoped token stays on the server.
    let t = first.exchange_code(&client_id, REDIRECT, &code).await;
    let scoped = n.lock().unwrap().issued[0].clone();
    assert!(!t.access.contains(&scoped) && !crate::harness::jwt_parts(&t.access).1.to_string().contains(&scoped));
    assert!(tool_names(&first, &t.access).await.iter().any(|n| n == "nexus_search_leads"));
    let r = search(&first, &t.access, "initech").await;
    assert!(text_of(&r).contains("lead-of-u-new"), "{r}");
    assert!(!r.to_string().contains("nexus_scoped_"), "the token is not in the answer: {r}");
    assert_eq!(n.lock().unwrap().lead_calls.last().unwrap(), &(format!("Bearer {scoped}"), "initech".to_owned()));

    // A second person through the same provider and the same client: their own account and token.
    idp.sign_in_as(Person::verified("sub-2", "second.person@acme.example"));
    let second = newcomer(&server, "second.person@acme.example");
    let back = sign_in_through_idp(&second, &server, &second.authorize_url(&client_id, REDIRECT, SCOPE, "s2")).await;
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code: {back}"));
    let t2 = second.exchange_code(&client_id, REDIRECT, &code).await;
    let scoped2 = n.lock().unwrap().issued[1].clone();
    assert_ne!(scoped, scoped2);
    assert_eq!(n.lock().unwrap().verify_calls[1].1, "second.person@acme.example");
    let r2 = search(&second, &t2.access, "initech").await;
    assert!(text_of(&r2).contains("lead-of-u-second") && !text_of(&r2).contains("u-new"), "{r2}");
    assert_eq!(n.lock().unwrap().lead_calls.last().unwrap().0, format!("Bearer {scoped2}"));
    // The first person's calls still carry the first person's token.
    let r = search(&first, &t.access, "globex").await;
    assert!(text_of(&r).contains("lead-of-u-new"), "{r}");
    assert_eq!(n.lock().unwrap().lead_calls.last().unwrap().0, format!("Bearer {scoped}"));
    assert_eq!(bridge_rows(&server).await, 2, "one sealed token per session");
    assert_no_token_logged(&server, &n);
}

#[tokio::test]
async fn reference_002_a_whitelabel_client_naming_the_idp_carries_the_persons_scoped_token() {
    let (idp, server, n) = reference_setup(&[("portal.user@acme.example", "u-portal")]).await;
    idp.sign_in_as(Person::verified("portal-sub", "portal.user@acme.example"));
    let op = operator_token(&server);
    // Nexus's own portal, white-label, signing its customers in through Acme SSO.
    let (client_id, secret) = operator_client(
        &server,
        &op,
        json!({"name": "Nexus Portal", "type": "confidential", "roles": ["whitelabel-customer"],
            "domains": ["acme.example"], "redirectUris": [REDIRECT], "allowedScopes": [SCOPE],
            "branding": {"description": "Nexus for your agents"}, "identityProvider": "acme"}),
    )
    .await;
    let secret = secret.unwrap();
    let person = newcomer(&server, "portal.user@acme.example");
    let authorize = person.authorize_url(&client_id, REDIRECT, SCOPE, "wl");
    let res = person.http.get(&authorize).send().await.unwrap();
    let login = person.http.get(server.url(&location(&res))).send().await.unwrap().text().await.unwrap();
    assert!(login.contains("Nexus Portal") && login.contains("Continue with Acme SSO"), "{login}");
    let back = sign_in_through_idp(&person, &server, &authorize).await;
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code: {back}"));
    assert_eq!(n.lock().unwrap().verify_calls.last().unwrap().1, "portal.user@acme.example");
    let (status, v) = post_form(
        &server,
        "/api/v1/auth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", crate::harness::VERIFIER),
        ],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let access = v["access_token"].as_str().unwrap();
    let r = search(&person, access, "initech").await;
    assert!(text_of(&r).contains("lead-of-u-portal"), "{r}");
    let scoped = n.lock().unwrap().issued[0].clone();
    assert_eq!(n.lock().unwrap().lead_calls.last().unwrap().0, format!("Bearer {scoped}"));
    assert_no_token_logged(&server, &n);
}

#[tokio::test]
async fn security_reference_002_an_address_nobody_vouched_for_never_reaches_the_backend() {
    let (idp, server, n) =
        reference_setup(&[("victim@acme.example", "u-victim"), ("linked@acme.example", "u-linked")]).await;
    let op = operator_token(&server);
    // The provider does not vouch for the address: no account, no sign-in, nothing sent.
    idp.sign_in_as(Person { email_verified: json!(false), ..Person::verified("sub-x", "victim@acme.example") });
    let someone = newcomer(&server, "victim@acme.example");
    let client_id = someone.register(REDIRECT, SCOPE).await;
    let res = someone.http.get(someone.authorize_url(&client_id, REDIRECT, SCOPE, "u1")).send().await.unwrap();
    let next = query_param(&server.url(&location(&res)), "next").unwrap();
    let (_, res) = continue_with(&someone.http, &server, &next).await;
    assert_eq!(res.status(), 403, "refused at the callback");
    let res = someone.http.get(server.url(&next)).send().await.unwrap();
    assert!(location(&res).starts_with("/login?"), "still not signed in");
    assert!(account(&server, &op, "victim@acme.example").await.is_none(), "no account");

    // An account whose own address is unverified links a provider that vouches for another
    // address: signing in through it reaches that account, whose address is still unverified — the
    // backend is asked about neither address.
    let unverified = Flow::signup(&server, "victim@acme.example").await;
    idp.sign_in_as(Person::verified("sub-linked", "linked@acme.example"));
    link_the_idp(&unverified, &server).await;
    let fresh = newcomer(&server, "linked@acme.example");
    let back = sign_in_through_idp(&fresh, &server, &fresh.authorize_url(&client_id, REDIRECT, SCOPE, "u2")).await;
    assert_eq!(query_param(&back, "error").as_deref(), Some("access_denied"), "{back}");
    assert!(query_param(&back, "code").is_none());
    let g = n.lock().unwrap();
    assert!(g.verify_calls.is_empty(), "nothing was sent: {:?}", g.verify_calls);
    assert!(g.issued.is_empty());
}

#[tokio::test]
async fn security_reference_002_a_verified_account_sends_its_own_address_not_its_linked_providers() {
    let (idp, server, n) =
        reference_setup(&[("owner@acme.example", "u-owner"), ("other.claim@acme.example", "u-other")]).await;
    // The account's own address, verified by its mail; a provider linked that vouches for another.
    let owner = crate::bridge_mode::person(&server, "owner@acme.example", true).await;
    idp.sign_in_as(Person::verified("sub-owner", "other.claim@acme.example"));
    link_the_idp(&owner, &server).await;
    let fresh = newcomer(&server, "owner@acme.example");
    let client_id = fresh.register(REDIRECT, SCOPE).await;
    let back = sign_in_through_idp(&fresh, &server, &fresh.authorize_url(&client_id, REDIRECT, SCOPE, "o1")).await;
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code: {back}"));
    let emails: Vec<String> = n.lock().unwrap().verify_calls.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(emails, ["owner@acme.example"], "the account's verified address, not the provider's claim");
    let t = fresh.exchange_code(&client_id, REDIRECT, &code).await;
    let r = search(&fresh, &t.access, "initech").await;
    assert!(text_of(&r).contains("lead-of-u-owner"), "{r}");
}

#[tokio::test]
async fn security_reference_002_the_backend_refusing_an_idp_person_is_access_denied_at_consent() {
    let (idp, server, n) = reference_setup(&[("someone.else@acme.example", "u-else")]).await;
    idp.sign_in_as(Person::verified("sub-stranger", "stranger@acme.example"));
    let stranger = newcomer(&server, "stranger@acme.example");
    let client_id = stranger.register(REDIRECT, SCOPE).await;
    let back =
        sign_in_through_idp(&stranger, &server, &stranger.authorize_url(&client_id, REDIRECT, SCOPE, "r1")).await;
    assert!(back.starts_with(REDIRECT), "back to the client: {back}");
    assert_eq!(query_param(&back, "error").as_deref(), Some("access_denied"), "{back}");
    assert_eq!(query_param(&back, "state").as_deref(), Some("r1"));
    assert!(query_param(&back, "code").is_none(), "no code: {back}");
    assert_eq!(
        n.lock().unwrap().verify_calls,
        [(format!("Bearer {ADMIN_TOKEN}"), "stranger@acme.example".to_owned())],
        "asked, and refused"
    );
    assert_eq!(bridge_rows(&server).await, 0, "nothing held");
}

#[tokio::test]
async fn bridged_tools_are_offered_only_to_sessions_a_sign_in_crossed_and_tokens_exchanged_from_them() {
    let (_idp, server, n) = reference_setup(&[("new.person@acme.example", "u-new")]).await;
    let op = operator_token(&server);
    let person = newcomer(&server, "new.person@acme.example");
    let client_id = person.register(REDIRECT, SCOPE).await;
    let back = sign_in_through_idp(&person, &server, &person.authorize_url(&client_id, REDIRECT, SCOPE, "k1")).await;
    let t = person.exchange_code(&client_id, REDIRECT, &query_param(&back, "code").unwrap()).await;
    let scoped = n.lock().unwrap().issued[0].clone();
    assert!(tool_names(&person, &t.access).await.iter().any(|n| n == "nexus_search_leads"));

    // RFC 8693: a token exchanged from the sign-in's token shares its session, so its token too.
    let exchange = "urn:ietf:params:oauth:grant-type:token-exchange";
    let (exchanger, secret) = operator_client(
        &server,
        &op,
        json!({"name": "downstream gateway", "grantTypes": [exchange], "allowedScopes": [SCOPE]}),
    )
    .await;
    let secret = secret.unwrap();
    let (status, v) = post_form(
        &server,
        "/api/v1/auth/token",
        &[
            ("grant_type", exchange),
            ("subject_token", &t.access),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ],
        Some((&exchanger, &secret)),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let exchanged = v["access_token"].as_str().unwrap().to_owned();
    assert!(tool_names(&person, &exchanged).await.iter().any(|n| n == "nexus_search_leads"));
    let r = search(&person, &exchanged, "initech").await;
    assert!(text_of(&r).contains("lead-of-u-new"), "{r}");
    assert_eq!(n.lock().unwrap().lead_calls.last().unwrap().0, format!("Bearer {scoped}"));

    // A machine client bound to the same account: no sign-in crossed its session, so no tool.
    let account = account_id(&server, &op, "new.person%40acme.example").await;
    let (machine, machine_secret) = operator_client(
        &server,
        &op,
        json!({"name": "tenant backend", "grantTypes": ["client_credentials"], "allowedScopes": [SCOPE],
            "boundAccountId": account}),
    )
    .await;
    let (status, v) = post_form(
        &server,
        "/api/v1/auth/token",
        &[("grant_type", "client_credentials")],
        Some((&machine, &machine_secret.unwrap())),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let cc = v["access_token"].as_str().unwrap().to_owned();
    // A token exchanged from the machine's token is no different.
    let (status, v) = post_form(
        &server,
        "/api/v1/auth/token",
        &[
            ("grant_type", exchange),
            ("subject_token", &cc),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ],
        Some((&exchanger, &secret)),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let cc_exchanged = v["access_token"].as_str().unwrap().to_owned();
    // Nor a personal access token.
    let pat = browser_pat(&person).await;
    let calls = n.lock().unwrap().lead_calls.len();
    for token in [&cc, &cc_exchanged, &pat] {
        let names = tool_names(&person, token).await;
        assert!(names.iter().any(|n| n == "whoami"), "{names:?}");
        assert!(!names.iter().any(|n| n.starts_with("nexus_")), "no bridged tool offered: {names:?}");
        let r = search(&person, token, "initech").await;
        assert!(r.get("error").is_some() || r["result"]["isError"] == true, "{r}");
        assert!(!r.to_string().contains("lead-of"), "{r}");
    }
    assert_eq!(n.lock().unwrap().lead_calls.len(), calls, "the backend was not called");
    assert_no_token_logged(&server, &n);
}
