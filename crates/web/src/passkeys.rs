//! Passkeys (WebAuthn, through `webauthn-rs`): added on `/account/security/passkeys` by a signed-in
//! person (discoverable credentials with user verification), used to sign in without a password
//! (the login page's "Sign in with a passkey": the device names the account, so the page never
//! tells which emails have passkeys) or as the second factor after the password. Each ceremony's
//! challenge state stays in the database between its two requests and is taken once (five minutes);
//! a signature counter that does not move forward refuses the passkey (a cloned authenticator).
//!
//! The two-step ceremonies are JSON requests from `/static/passkeys.js` (the only script: CSP
//! `script-src 'self'`), CSRF-bound through the `X-CSRF-Token` header. Passkeys need the issuer to
//! be a domain name (`localhost` included): WebAuthn refuses IP addresses as relying-party ids.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_access::browser::BrowserSession;
use bk_crypto::secret::{b64url, random_bytes, sha256};
use bk_domain::account::Account;
use bk_domain::audit::Outcome;
use bk_domain::ids::AccountId;
use bk_domain::passkey::{
    CEREMONY_TTL_SECS, CeremonyPurpose, MAX_PASSKEYS_PER_ACCOUNT, StoredCeremony, StoredPasskey, passkey_name,
};
use bk_domain::ports::{PasskeyRemoval, StoreError};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Value, json};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

use crate::pages::{session_of, signed_in};
use crate::{WebState, safe_next, see_other};

pub(crate) const PAGE: &str = "/account/security/passkeys";
pub(crate) const REGISTER_OPTIONS: &str = "/account/security/passkeys/options";
pub(crate) const DELETE: &str = "/account/security/passkeys/{id}/delete";
pub(crate) const SIGN_IN_OPTIONS: &str = "/login/passkey/options";
pub(crate) const SIGN_IN: &str = "/login/passkey";
/// Passkey sign-in attempts (options asked) per source address per minute.
const SIGN_INS_PER_SOURCE_PER_MINUTE: u32 = 30;

/// The relying party of `issuer`: its host must be a domain name; `None` (passkeys off) otherwise.
pub fn relying_party(issuer: &str) -> Option<Webauthn> {
    let url = Url::parse(issuer).ok()?;
    let url::Host::Domain(host) = url.host()? else { return None };
    let origin = Url::parse(&url.origin().ascii_serialization()).ok()?;
    WebauthnBuilder::new(host, &origin).ok()?.rp_name("Bridgekeeper").build().ok()
}

/// The opaque, stable user handle of an account on its authenticators (no email, no account id).
fn user_handle(account: &AccountId) -> Uuid {
    let digest = sha256(format!("bridgekeeper-user-handle|{account}").as_bytes());
    Uuid::from_slice(&digest[..16]).unwrap_or_default()
}

/// A JSON error the script shows as it is.
fn error(status: StatusCode, message: &str) -> Response {
    (status, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(json!({ "error": message })))
        .into_response()
}

fn ok_json(v: Value) -> Response {
    ([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(v)).into_response()
}

fn no_passkeys() -> Response {
    error(StatusCode::NOT_FOUND, "Passkeys are not available on this server (its address is not a domain name).")
}

/// The browser session of a JSON request, with its CSRF header checked.
/// A refusal before anything was done: its status and the sentence the script shows.
type Refused = (StatusCode, &'static str);

fn json_session(state: &WebState, headers: &HeaderMap) -> Result<BrowserSession, Refused> {
    const STALE: Refused = (StatusCode::BAD_REQUEST, "This page is out of date: reload it and try again.");
    let now = state.auth.clock.now();
    let s = BrowserSession::read(headers, &state.auth.cookie_keys, now).ok_or(STALE)?;
    let token = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !s.csrf_ok(&state.auth.cookie_keys, token) {
        return Err(STALE);
    }
    Ok(s)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refused> {
    serde_json::from_slice(body).map_err(|_| (StatusCode::BAD_REQUEST, "The request is not understood."))
}

/// Stores a ceremony's state; the id the browser sends back.
async fn begin(
    state: &WebState,
    account: Option<&AccountId>,
    purpose: CeremonyPurpose,
    ceremony_state: &impl serde::Serialize,
) -> Result<String, Response> {
    let now = state.auth.clock.now();
    let id = b64url(&random_bytes::<24>());
    let stored = StoredCeremony {
        id_hash: sha256(id.as_bytes()).to_vec(),
        account_id: account.cloned(),
        purpose,
        state: serde_json::to_string(ceremony_state)
            .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "Try again."))?,
        created_at: now,
        expires_at: now + CEREMONY_TTL_SECS,
    };
    state.passkeys.create_ceremony(&stored).await.map_err(|e| unavailable(&e))?;
    Ok(id)
}

/// Takes the ceremony the browser names (once), if it is for `purpose` and still running.
async fn take<T: serde::de::DeserializeOwned>(
    state: &WebState,
    id: &str,
    purpose: CeremonyPurpose,
) -> Result<(Option<AccountId>, T), Response> {
    let now = state.auth.clock.now();
    let found =
        state.passkeys.take_ceremony(&sha256(id.as_bytes()), purpose, now).await.map_err(|e| unavailable(&e))?;
    let Some(c) = found else {
        return Err(error(StatusCode::BAD_REQUEST, "This took too long or was already used: try again."));
    };
    let st = serde_json::from_str(&c.state).map_err(|_| error(StatusCode::BAD_REQUEST, "Try again."))?;
    Ok((c.account_id, st))
}

fn unavailable(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "passkey storage failed");
    error(StatusCode::SERVICE_UNAVAILABLE, "The server could not do this right now. Try again in a moment.")
}

fn passkey_of(stored: &StoredPasskey) -> Option<Passkey> {
    serde_json::from_str(&stored.credential).ok()
}

/// `GET /account/security/passkeys`.
pub async fn page(State(state): State<Arc<WebState>>, headers: HeaderMap, Query(q): Query<NoticeQuery>) -> Response {
    let (s, _) = session_of(&state, &headers);
    let Some((account, _)) = signed_in(&state, &s).await else {
        return see_other("/login?next=%2Faccount%2Fsecurity%2Fpasskeys");
    };
    render(&state, &s, &account, StatusCode::OK, q.notice.as_deref(), None).await
}

#[derive(Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

async fn render(
    state: &WebState,
    s: &BrowserSession,
    account: &Account,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> Response {
    let keys = match state.passkeys.passkeys_of(&account.id).await {
        Ok(k) => k,
        Err(e) => return unavailable(&e),
    };
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({
                "id": k.credential_id, "name": k.name,
                "created": crate::connections_page::utc(k.created_at),
                "last_used": k.last_used_at.map(crate::connections_page::utc),
            })
        })
        .collect();
    let notice = match notice {
        Some("added") => Some("Passkey added. You can sign in with it instead of your password."),
        Some("removed") => Some("Passkey removed."),
        _ => None,
    };
    state.page(
        status,
        "passkeys.html",
        context! {
            csrf_token => s.csrf_token(&state.auth.cookie_keys), notice, error,
            full => keys.len() as i64 >= MAX_PASSKEYS_PER_ACCOUNT,
            keys => minijinja::Value::from(minijinja::value::Serde(&keys)), available => state.webauthn.is_some(),
        },
    )
}

/// `POST /account/security/passkeys/options`: starts adding a passkey.
pub async fn register_options(State(state): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    let Some(webauthn) = state.webauthn.as_ref() else { return no_passkeys() };
    let s = match json_session(&state, &headers) {
        Ok(s) => s,
        Err((status, why)) => return error(status, why),
    };
    let Some((account, _)) = signed_in(&state, &s).await else {
        return error(StatusCode::UNAUTHORIZED, "Sign in again.");
    };
    let existing = match state.passkeys.passkeys_of(&account.id).await {
        Ok(k) => k,
        Err(e) => return unavailable(&e),
    };
    if existing.len() as i64 >= MAX_PASSKEYS_PER_ACCOUNT {
        return error(StatusCode::CONFLICT, "This account has 20 passkeys, the most it may hold: remove one first.");
    }
    let exclude: Vec<_> = existing.iter().filter_map(passkey_of).map(|p| p.cred_id().clone()).collect();
    // The name the authenticator shows for the account (never a wallet account's placeholder).
    let label = crate::siwe::account_label(&state, &account).await;
    let (options, reg) =
        match webauthn.start_passkey_registration(user_handle(&account.id), &label, &label, Some(exclude)) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "starting a passkey registration failed");
                return error(StatusCode::INTERNAL_SERVER_ERROR, "Try again.");
            }
        };
    // Discoverable, so that it can sign in without the email being typed first (the state does
    // not bind this: the library verifies the same way either way).
    let mut options = serde_json::to_value(&options).unwrap_or(Value::Null);
    options["publicKey"]["authenticatorSelection"]["residentKey"] = json!("required");
    options["publicKey"]["authenticatorSelection"]["requireResidentKey"] = json!(true);
    match begin(&state, Some(&account.id), CeremonyPurpose::Register, &reg).await {
        Ok(ceremony) => ok_json(json!({ "ceremony": ceremony, "options": options })),
        Err(res) => res,
    }
}

#[derive(Deserialize)]
struct Finish<C> {
    ceremony: String,
    credential: C,
    #[serde(default)]
    name: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /account/security/passkeys`: the authenticator's answer; the passkey is stored.
pub async fn register(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(webauthn) = state.webauthn.as_ref() else { return no_passkeys() };
    let s = match json_session(&state, &headers) {
        Ok(s) => s,
        Err((status, why)) => return error(status, why),
    };
    let Some((account, _)) = signed_in(&state, &s).await else {
        return error(StatusCode::UNAUTHORIZED, "Sign in again.");
    };
    let req: Finish<RegisterPublicKeyCredential> = match parse(&body) {
        Ok(r) => r,
        Err((status, why)) => return error(status, why),
    };
    let name = match passkey_name(&req.name) {
        Ok(n) => n,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let (owner, reg): (_, PasskeyRegistration) = match take(&state, &req.ceremony, CeremonyPurpose::Register).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    if owner.as_ref() != Some(&account.id) {
        return error(StatusCode::BAD_REQUEST, "This took too long or was already used: try again.");
    }
    let passkey = match webauthn.finish_passkey_registration(&req.credential, &reg) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(error = %e, account = %account.id, "a passkey registration was refused");
            return error(StatusCode::BAD_REQUEST, "The passkey could not be verified. Try again.");
        }
    };
    let now = state.auth.clock.now();
    let stored = StoredPasskey {
        credential_id: b64url(passkey.cred_id().as_ref()),
        account_id: account.id.clone(),
        name: name.clone(),
        credential: match serde_json::to_string(&passkey) {
            Ok(c) => c,
            Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "Try again."),
        },
        created_at: now,
        last_used_at: None,
    };
    match state.passkeys.add_passkey(&stored, MAX_PASSKEYS_PER_ACCOUNT).await {
        Ok(true) => {}
        Ok(false) => return error(StatusCode::CONFLICT, "This account holds the most passkeys it may."),
        Err(StoreError::Conflict(_)) => return error(StatusCode::CONFLICT, "This passkey is registered already."),
        Err(e) => return unavailable(&e),
    }
    state.auth.emit(
        state
            .auth
            .event("account.second_factor_added", Outcome::Success)
            .account(&account.id)
            .ip(peer.ip())
            .detail("method", "passkey")
            .detail("name", name.clone()),
    );
    crate::account_email::notify(
        &state,
        &account.email,
        "A passkey was added to your account",
        &format!("a passkey named “{name}” was added to your account; it can sign in without the password."),
    );
    ok_json(json!({ "redirect": format!("{PAGE}?notice=added") }))
}

/// `POST /account/security/passkeys/{id}/delete` (a form: works without the script).
pub async fn delete(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (account, s, _) = match crate::pages::signed_in_form(&state, &headers, &body, PAGE).await {
        Ok(found) => found,
        Err(res) => return res,
    };
    match state.passkeys.delete_passkey(&account.id, &id).await {
        Ok(PasskeyRemoval::LastSignInMethod) => {
            let why = "This passkey is your last way to sign in: add a password, another passkey or a wallet first.";
            render(&state, &s, &account, StatusCode::CONFLICT, None, Some(why)).await
        }
        Ok(PasskeyRemoval::Removed) => {
            state.auth.emit(
                state
                    .auth
                    .event("account.second_factor_removed", Outcome::Success)
                    .account(&account.id)
                    .ip(peer.ip())
                    .detail("method", "passkey"),
            );
            crate::account_email::notify(
                &state,
                &account.email,
                "A passkey was removed from your account",
                "a passkey was removed from your account.",
            );
            see_other(&format!("{PAGE}?notice=removed"))
        }
        // Another account's id is answered like an unknown one.
        Ok(PasskeyRemoval::NotFound) => {
            render(&state, &s, &account, StatusCode::NOT_FOUND, None, Some("No such passkey.")).await
        }
        Err(e) => unavailable(&e),
    }
}

#[derive(Deserialize)]
struct SignInOptions {
    purpose: String,
}

/// `POST /login/passkey/options`: a challenge to sign in with a passkey (`purpose: sign_in`), or to
/// give it as the second factor after the password (`second_factor`, for the account the password
/// named: only its passkeys are asked for).
pub async fn sign_in_options(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(webauthn) = state.webauthn.as_ref() else { return no_passkeys() };
    let s = match json_session(&state, &headers) {
        Ok(s) => s,
        Err((status, why)) => return error(status, why),
    };
    let req: SignInOptions = match parse(&body) {
        Ok(r) => r,
        Err((status, why)) => return error(status, why),
    };
    let source = crate::sign_in_limits::source_key(peer.ip());
    if state.auth.limiter.acquire("passkey_sign_ins", &source, SIGN_INS_PER_SOURCE_PER_MINUTE, 60).await.is_err() {
        return error(StatusCode::TOO_MANY_REQUESTS, "Too many attempts from this network. Wait a minute.");
    }
    match req.purpose.as_str() {
        "sign_in" => {
            let (options, auth): (_, DiscoverableAuthentication) = match webauthn.start_discoverable_authentication() {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(error = %e, "starting a passkey sign-in failed");
                    return error(StatusCode::INTERNAL_SERVER_ERROR, "Try again.");
                }
            };
            match begin(&state, None, CeremonyPurpose::SignIn, &auth).await {
                Ok(ceremony) => ok_json(json!({ "ceremony": ceremony, "options": options })),
                Err(res) => res,
            }
        }
        "second_factor" => {
            let Some(account) = crate::second_factor::pending_account(&state, &headers, &s) else {
                return error(StatusCode::BAD_REQUEST, "Sign in again with your email and password.");
            };
            let keys: Vec<Passkey> = match state.passkeys.passkeys_of(&account).await {
                Ok(k) => k.iter().filter_map(passkey_of).collect(),
                Err(e) => return unavailable(&e),
            };
            if keys.is_empty() {
                return error(StatusCode::BAD_REQUEST, "This account has no passkey.");
            }
            let (options, auth): (_, PasskeyAuthentication) = match webauthn.start_passkey_authentication(&keys) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(error = %e, "starting a passkey second factor failed");
                    return error(StatusCode::INTERNAL_SERVER_ERROR, "Try again.");
                }
            };
            match begin(&state, Some(&account), CeremonyPurpose::SecondFactor, &auth).await {
                Ok(ceremony) => ok_json(json!({ "ceremony": ceremony, "options": options })),
                Err(res) => res,
            }
        }
        _ => error(StatusCode::BAD_REQUEST, "The request is not understood."),
    }
}

/// `POST /login/passkey`: the authenticator's answer; signed in (its cookie set) and where to go.
pub async fn sign_in(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(webauthn) = state.webauthn.as_ref() else { return no_passkeys() };
    let s = match json_session(&state, &headers) {
        Ok(s) => s,
        Err((status, why)) => return error(status, why),
    };
    let req: Finish<PublicKeyCredential> = match parse(&body) {
        Ok(r) => r,
        Err((status, why)) => return error(status, why),
    };
    let next = safe_next(req.next.as_deref());
    let refused = |why: &str, account: Option<&AccountId>| {
        let mut e = state
            .auth
            .event("auth.signin", Outcome::Failure)
            .ip(peer.ip())
            .detail("method", "passkey")
            .detail("reason", why.to_owned());
        if let Some(a) = account {
            e = e.account(a);
        }
        state.auth.emit(e);
        error(StatusCode::UNAUTHORIZED, "The passkey was not accepted. Try again, or sign in with your password.")
    };
    let credential_id = b64url(&req.credential.raw_id);
    let stored = match state.passkeys.passkey(&credential_id).await {
        Ok(Some(k)) => k,
        Ok(None) => {
            // Still spend the ceremony, so that an unknown key cannot probe with one challenge forever.
            let _ = state
                .passkeys
                .take_ceremony(&sha256(req.ceremony.as_bytes()), CeremonyPurpose::SignIn, state.auth.clock.now())
                .await;
            return refused("unknown_passkey", None);
        }
        Err(e) => return unavailable(&e),
    };
    let Some(mut passkey) = passkey_of(&stored) else { return unavailable(&"a stored passkey does not parse") };
    let (result, factor) = if let Ok((_, auth)) =
        take::<DiscoverableAuthentication>(&state, &req.ceremony, CeremonyPurpose::SignIn).await
    {
        // The device named the account: its user handle must be that passkey's account's.
        let handle_ok = req.credential.get_user_unique_id().and_then(|b| Uuid::from_slice(b).ok())
            == Some(user_handle(&stored.account_id));
        if !handle_ok {
            return refused("user_handle_mismatch", Some(&stored.account_id));
        }
        (webauthn.finish_discoverable_authentication_v2(&req.credential, auth, &passkey), None)
    } else {
        let (owner, auth): (_, PasskeyAuthentication) =
            match take(&state, &req.ceremony, CeremonyPurpose::SecondFactor).await {
                Ok(x) => x,
                Err(res) => return res,
            };
        // The second factor is for the account whose password this browser gave.
        let pending = crate::second_factor::pending_account(&state, &headers, &s);
        if owner.as_ref() != Some(&stored.account_id) || pending.as_ref() != Some(&stored.account_id) {
            return refused("another_account", owner.as_ref());
        }
        (webauthn.finish_passkey_authentication(&req.credential, &auth), Some("passkey"))
    };
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(error = %e, account = %stored.account_id, "a passkey assertion was refused");
            return refused("assertion_refused", Some(&stored.account_id));
        }
    };
    // (The library refuses a signature counter that did not move forward: a cloned authenticator.)
    passkey.update_credential(&result);
    let now = state.auth.clock.now();
    if let Ok(json) = serde_json::to_string(&passkey)
        && let Err(e) = state.passkeys.passkey_used(&stored.account_id, &credential_id, &json, now).await
    {
        return unavailable(&e);
    }
    let account = match state.auth.store.account(&stored.account_id).await {
        Ok(Some(a)) if a.is_disabled() => return refused("disabled", Some(&stored.account_id)),
        Ok(Some(a)) => a,
        Ok(None) => return refused("no_account", None),
        Err(e) => return unavailable(&e),
    };
    let how = factor.unwrap_or("passkey_sign_in");
    let answer = crate::pages::complete_sign_in(&state, &s, &account, &next, peer.ip(), Some(how), &headers).await;
    // The sign-in's cookies ride on the JSON answer; the script goes where it says.
    let mut res = ok_json(json!({ "redirect": next }));
    for v in answer.headers().get_all(header::SET_COOKIE) {
        res.headers_mut().append(header::SET_COOKIE, v.clone());
    }
    if answer.status() != StatusCode::SEE_OTHER {
        return answer;
    }
    res.headers_mut().append(header::SET_COOKIE, crate::second_factor::clear_marker_cookie(&state));
    res
}
