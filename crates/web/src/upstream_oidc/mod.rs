//! Sign-in through operator-configured upstream OpenID Connect providers ("Continue with Google").
//!
//! `POST /login/idp {idp, next}` (the login page's buttons, CSRF-checked) starts an authorization
//! code flow with PKCE S256 at the provider: a random `state` is kept server-side by digest, bound
//! to the browser session that started it (by digest), single use, [`LOGIN_TTL_SECS`]; the PKCE
//! verifier and the `nonce` are derived from the state with a server key, so nothing secret is
//! stored. `GET /login/idp/callback` spends the state (a replay finds nothing), checks it is the
//! same browser, exchanges the code and verifies the ID token (`provider`), then:
//!
//! - a known (issuer, subject): signs its account in exactly like a password would (disabled
//!   accounts refused; a second factor asked for when the account has one; back to `next`, the
//!   pending authorization request);
//! - a new one: creates an account only when the provider vouches for the email
//!   (`email_verified`), it is in an allowed domain, and no account holds it. When an account does
//!   hold it, nothing is linked: the person is told to sign in the usual way and link the provider
//!   from the account's sign-in methods page — linking happens only while signed in, which proves
//!   control of the account. An unverified email never creates or links anything.
//!
//! `/account/security/sign-in-methods` lists the account's linked identities, links another
//! (`POST …/link {idp}`: the same flow, its state carrying the signed-in account, finished only
//! by that account's live session) and unlinks one (`POST …/unlink {identity}`), never the last
//! way to sign in. Every sign-in, refusal, link and unlink is audited; the client secret never
//! reaches a log, a page or `Debug`.

pub mod provider;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bk_access::browser::BrowserSession;
use bk_crypto::secret::{b64url, random_bytes, sha256, sha256_parts};
use bk_domain::UnixTime;
use bk_domain::account::Account;
use bk_domain::audit::Outcome;
use bk_domain::ids::AccountId;
use bk_domain::ports::idp_identities::IdpIdentityStore;
use bk_domain::upstream_identity::{
    IdpEmailRefusal, IdpIdentity, IdpLink, IdpLoginState, IdpSignUp, IdpUnlink, LOGIN_TTL_SECS, new_idp_account,
    vouched_email,
};
use bk_outbound::SafeFetcher;
use serde::Deserialize;
use serde_json::Value;

use crate::pages::{field, session_of, signed_in, with_cookie};
use crate::sign_in_limits::source_key;
use crate::{WebState, safe_next, see_other};
use provider::{Provider, ProviderError, VerifiedIdentity};

pub(crate) const START_PATH: &str = "/login/idp";
pub(crate) const CALLBACK_PATH: &str = "/login/idp/callback";
pub(crate) const PAGE: &str = "/account/security/sign-in-methods";
pub(crate) const LINK_PATH: &str = "/account/security/sign-in-methods/link";
pub(crate) const UNLINK_PATH: &str = "/account/security/sign-in-methods/unlink";
/// Sign-ins one source may start per minute (each writes a row).
const STARTS_PER_MINUTE: u32 = 30;
const STARTS_BUCKET: &str = "idp_sign_in_starts";

/// A client secret: never printed (`Debug` says it is there, not what it is).
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(secret: String) -> Self {
        Self(secret)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(…)")
    }
}

/// One configured provider.
#[derive(Clone, Debug)]
pub struct IdpSettings {
    /// Its id in URLs, forms and white-label clients (`google`, `acme-sso`).
    pub id: String,
    /// "Continue with {display_name}".
    pub display_name: String,
    /// Exactly as the provider's discovery document names itself.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: ClientSecret,
    pub scopes: Vec<String>,
    /// Only addresses in these domains sign in (empty: any).
    pub allowed_email_domains: Vec<String>,
    /// The claims that hold the email address and the name.
    pub email_claim: String,
    pub name_claim: String,
    /// Google's rules: `hd` sent when domains are restricted, and the token's `hd` must match.
    pub hosted_domain: bool,
    /// Whether a new verified person gets an account (otherwise only linked accounts sign in).
    pub create_accounts: bool,
}

/// The configured providers and what their sign-ins need.
pub struct UpstreamIdps {
    providers: Vec<Provider>,
    fetcher: SafeFetcher,
    store: Arc<dyn IdpIdentityStore>,
}

impl UpstreamIdps {
    pub fn new(settings: Vec<IdpSettings>, fetcher: SafeFetcher, store: Arc<dyn IdpIdentityStore>) -> Self {
        Self { providers: settings.into_iter().map(Provider::new).collect(), fetcher, store }
    }

    fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.settings.id == id)
    }
}

impl WebState {
    /// Turns on sign-in through `idps` (none configured: nothing changes).
    pub fn with_upstream_idps(mut self, idps: UpstreamIdps) -> Self {
        if idps.providers.is_empty() {
            return self;
        }
        let buttons: Vec<Value> = idps
            .providers
            .iter()
            .map(|p| serde_json::json!({ "id": p.settings.id, "name": p.settings.display_name }))
            .collect();
        self.templates.add_global("idps", minijinja::Value::from(minijinja::value::Serde(&buttons)));
        self.templates
            .add_template("sign_in_methods.html", include_str!("../templates/sign_in_methods.html"))
            .unwrap_or_else(|e| panic!("template sign_in_methods.html: {e}"));
        self.idps = Some(Arc::new(idps));
        self
    }
}

/// The browser binding of a sign-in: the digest of the session id that started it.
fn browser_hash(s: &BrowserSession) -> Vec<u8> {
    sha256_parts(&[b"bk-idp-browser|", s.sid.as_bytes()]).to_vec()
}

/// The PKCE verifier (43 characters of base64url) and the nonce of a state, derived with a server
/// key: only this server can compute them, and they need no storage.
fn verifier_and_nonce(state: &WebState, raw_state: &str) -> (String, String) {
    let key = &state.auth.cookie_keys.csrf;
    (
        b64url(&key.sign(format!("bk-idp-pkce|{raw_state}").as_bytes())),
        b64url(&key.sign(format!("bk-idp-nonce|{raw_state}").as_bytes())),
    )
}

fn redirect_uri(state: &WebState) -> String {
    format!("{}{CALLBACK_PATH}", state.auth.issuer)
}

fn unavailable(state: &WebState, name: &str, brand: Option<minijinja::Value>) -> Response {
    state.branded_message(
        StatusCode::BAD_GATEWAY,
        "Sign-in is unavailable",
        &format!("{name} cannot be reached right now, or answered in a way this server cannot use. Try again later."),
        brand,
    )
}

/// Sends the browser to the provider, with a fresh state bound to its session.
async fn begin(
    state: &WebState,
    idps: &UpstreamIdps,
    provider: &Provider,
    s: &BrowserSession,
    next: &str,
    link: Option<AccountId>,
    peer: SocketAddr,
) -> Response {
    let source = source_key(peer.ip());
    let brand = crate::brand_of_next(state, next).await;
    if let Err(wait) = state.auth.limiter.acquire(STARTS_BUCKET, &source, STARTS_PER_MINUTE, 60).await {
        state
            .auth
            .emit(state.auth.event("ratelimit.refused", Outcome::Denied).ip(peer.ip()).detail("limit", STARTS_BUCKET));
        return state.branded_message(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-ins",
            &format!("Too many sign-ins were started from this network. Try again in {wait} seconds."),
            brand,
        );
    }
    let now = state.auth.clock.now();
    let d = match provider.discovery(&idps.fetcher, now).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(idp = %provider.settings.id, error = %e, "identity provider discovery failed");
            return unavailable(state, &provider.settings.display_name, brand);
        }
    };
    let raw_state = b64url(&random_bytes::<32>());
    let record = IdpLoginState {
        state_hash: sha256(raw_state.as_bytes()).to_vec(),
        idp_id: provider.settings.id.clone(),
        browser_hash: browser_hash(s),
        next: next.to_owned(),
        link_account: link,
        created_at: now,
        expires_at: now + LOGIN_TTL_SECS,
    };
    if let Err(e) = idps.store.create_idp_login_state(&record).await {
        tracing::error!(error = %e, "storing an identity provider sign-in failed");
        let msg = "The server could not start the sign-in.";
        return state.branded_message(StatusCode::SERVICE_UNAVAILABLE, "Try again", msg, brand);
    }
    let (verifier, nonce) = verifier_and_nonce(state, &raw_state);
    let set = &provider.settings;
    let mut url = d.authorization_endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &set.client_id)
            .append_pair("redirect_uri", &redirect_uri(state))
            .append_pair("scope", &set.scopes.join(" "))
            .append_pair("state", &raw_state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &b64url(&sha256(verifier.as_bytes())))
            .append_pair("code_challenge_method", "S256");
        // Google shows only accounts of the hosted domain (a hint: the ID token's hd is checked).
        if set.hosted_domain && !set.allowed_email_domains.is_empty() {
            let hd = match set.allowed_email_domains.as_slice() {
                [one] => one.as_str(),
                _ => "*",
            };
            q.append_pair("hd", hd);
        }
    }
    see_other(url.as_str())
}

/// `POST /login/idp {csrf_token, idp, next}`: the login page's "Continue with …" buttons.
pub async fn start(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, pairs) = match crate::pages::csrf_form(&state, &headers, &body) {
        Ok(found) => found,
        Err(res) => return *res,
    };
    let next = safe_next(field(&pairs, "next"));
    let Some(idps) = state.idps.clone() else {
        return no_such_provider(&state, crate::brand_of_next(&state, &next).await);
    };
    let Some(provider) = field(&pairs, "idp").and_then(|id| idps.provider(id)) else {
        return no_such_provider(&state, crate::brand_of_next(&state, &next).await);
    };
    begin(&state, &idps, provider, &s, &next, None, peer).await
}

fn no_such_provider(state: &WebState, brand: Option<minijinja::Value>) -> Response {
    let msg = "This server offers no such identity provider.";
    state.branded_message(StatusCode::NOT_FOUND, "No such sign-in", msg, brand)
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

/// A refused callback: audited, counted against the source, shown.
struct Refusal<'a> {
    state: &'a WebState,
    peer: SocketAddr,
    idp: Option<&'a str>,
    account: Option<AccountId>,
    linking: bool,
    /// The brand of the authorization request the sign-in was started for, once its record is found.
    brand: Option<minijinja::Value>,
}

impl Refusal<'_> {
    async fn page(&self, status: StatusCode, reason: &str, title: &str, message: &str) -> Response {
        // A provider's outage is nobody's failed attempt.
        if !status.is_server_error() {
            let limits = self.state.sign_in_limits;
            limits.record_failure(self.state.auth.limiter.as_ref(), None, &source_key(self.peer.ip())).await;
        }
        let outcome = if status.is_server_error() { Outcome::Failure } else { Outcome::Denied };
        let kind = if self.linking { "account.idp_link" } else { "auth.signin" };
        let mut event =
            self.state.auth.event(kind, outcome).ip(self.peer.ip()).detail("method", "oidc").detail("reason", reason);
        if let Some(idp) = self.idp {
            event = event.detail("idp", idp);
        }
        if let Some(a) = &self.account {
            event = event.account(a);
        }
        self.state.auth.emit(event);
        tracing::info!(reason, "an identity provider sign-in was refused");
        self.state.branded_message(status, title, message, self.brand.clone())
    }
}

/// `GET /login/idp/callback?code&state`: where the provider sends the browser back.
pub async fn callback(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let mut refusal = Refusal { state: &state, peer, idp: None, account: None, linking: false, brand: None };
    let source = source_key(peer.ip());
    if let Some(wait) = state.sign_in_limits.source_refused(state.auth.limiter.as_ref(), &source).await {
        return state.message(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            &format!("Too many failed sign-in attempts from this network. Try again in {wait} seconds."),
        );
    }
    let Some(idps) = state.idps.clone() else { return no_such_provider(&state, None) };
    let start_again = "This sign-in has expired, was already used, or was not started here. Start again from the \
                       sign-in page.";
    let Some(raw_state) = q.state.as_deref().filter(|s| !s.is_empty() && s.len() <= 128) else {
        return refusal.page(StatusCode::BAD_REQUEST, "state_missing", "Sign-in failed", start_again).await;
    };
    let now = state.auth.clock.now();
    // Spent here, whatever follows: a replayed callback finds nothing.
    let record = match idps.store.take_idp_login_state(&sha256(raw_state.as_bytes()), now).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return refusal.page(StatusCode::BAD_REQUEST, "state_unknown", "Sign-in failed", start_again).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "reading an identity provider sign-in failed");
            return state.message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The server could not finish the sign-in.",
            );
        }
    };
    // From here on the pages carry the brand of the authorization request the sign-in was started for.
    refusal.brand = crate::brand_of_next(&state, &record.next).await;
    let Some(provider) = idps.provider(&record.idp_id) else {
        return no_such_provider(&state, refusal.brand.clone());
    };
    refusal.idp = Some(&provider.settings.id);
    refusal.linking = record.link_account.is_some();
    refusal.account = record.link_account.clone();
    let (s, _) = session_of(&state, &headers);
    // Only the browser that started the sign-in may finish it (no login CSRF with someone else's code).
    if !bk_crypto::secret::ct_eq(&browser_hash(&s), &record.browser_hash) {
        return refusal.page(StatusCode::BAD_REQUEST, "browser_mismatch", "Sign-in failed", start_again).await;
    }
    let name = provider.settings.display_name.clone();
    if let Some(error) = q.error.as_deref() {
        let error: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        let msg = format!("{name} did not sign you in ({error}). Start again from the sign-in page.");
        return refusal.page(StatusCode::FORBIDDEN, "idp_error", "Sign-in cancelled", &msg).await;
    }
    // RFC 9207: a provider that names itself must name itself rightly (no mix-up).
    if q.iss.as_deref().is_some_and(|iss| iss != provider.settings.issuer) {
        let msg = "The answer came from another identity provider than the one asked. Start again.";
        return refusal.page(StatusCode::BAD_REQUEST, "iss_mismatch", "Sign-in failed", msg).await;
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return refusal.page(StatusCode::BAD_REQUEST, "code_missing", "Sign-in failed", start_again).await;
    };
    let (verifier, nonce) = verifier_and_nonce(&state, raw_state);
    let identity = match provider.redeem(&idps.fetcher, &redirect_uri(&state), code, &verifier, &nonce, now).await {
        Ok(i) => i,
        Err(e @ (ProviderError::Unavailable(_) | ProviderError::Discovery(_))) => {
            tracing::warn!(idp = %provider.settings.id, error = %e, "identity provider sign-in failed");
            let msg = format!(
                "{name} cannot be reached right now, or answered in a way this server cannot use. Try again later."
            );
            return refusal.page(StatusCode::BAD_GATEWAY, e.code(), "Sign-in is unavailable", &msg).await;
        }
        Err(e) => {
            tracing::warn!(idp = %provider.settings.id, error = %e, "identity provider sign-in refused");
            let msg = format!("The sign-in through {name} could not be verified: {e}. Start again.");
            return refusal.page(StatusCode::BAD_REQUEST, e.code(), "Sign-in failed", &msg).await;
        }
    };
    let set = &provider.settings;
    let claim = |name: &str| identity.claims.get(name).and_then(Value::as_str);
    // `email_verified` vouches for the `email` claim (OpenID Connect Core §5.1) and nothing else:
    // an address read from another claim (`upn`, `preferred_username`) counts as vouched only when
    // it is that same address. Whatever is taken here becomes an account's verified address, which
    // bridge mode sends to a backend that trusts it.
    let same_as_email = |c: &str| claim("email").is_some_and(|e| e.trim().eq_ignore_ascii_case(c.trim()));
    let email_verified = match claim(&set.email_claim) {
        _ if set.email_claim == "email" => identity.claims.get("email_verified"),
        Some(c) if same_as_email(c) => identity.claims.get("email_verified"),
        _ => None,
    };
    let email = match vouched_email(
        claim(&set.email_claim),
        email_verified,
        claim("hd"),
        &set.allowed_email_domains,
        set.hosted_domain,
    ) {
        Ok(e) => e,
        Err(r) => {
            let msg = match &r {
                IdpEmailRefusal::Unverified => format!(
                    "{name} does not vouch for your email address (it is not verified there), so it cannot sign you \
                     in here. Verify the address at {name}, or sign in another way."
                ),
                IdpEmailRefusal::NoEmail => {
                    format!("{name} did not give an email address, so it cannot sign you in here.")
                }
                IdpEmailRefusal::DomainNotAllowed(d) => {
                    format!("Sign-in through {name} is limited to addresses in {d}.")
                }
            };
            return refusal.page(StatusCode::FORBIDDEN, r.code(), "Sign-in refused", &msg).await;
        }
    };
    let ctx = Finish { state: &state, idps: &idps, provider, identity: &identity, email, peer, headers: &headers, now };
    match record.link_account {
        Some(account) => ctx.link(&refusal, &s, &account).await,
        None => ctx.sign_in(&refusal, &s, &record.next).await,
    }
}

/// A verified callback, finishing.
struct Finish<'a> {
    state: &'a WebState,
    idps: &'a UpstreamIdps,
    provider: &'a Provider,
    identity: &'a VerifiedIdentity,
    email: String,
    peer: SocketAddr,
    headers: &'a HeaderMap,
    now: UnixTime,
}

impl Finish<'_> {
    fn new_identity(&self, account: AccountId) -> IdpIdentity {
        let s = &self.provider.settings;
        IdpIdentity::new(&s.id, &s.issuer, &self.identity.subject, account, Some(self.email.clone()), self.now)
    }

    fn failed(&self, what: &str, e: &dyn std::fmt::Display) -> Response {
        tracing::error!(error = %e, "{what} failed");
        self.state.message(StatusCode::SERVICE_UNAVAILABLE, "Try again", "The server could not finish the sign-in.")
    }

    /// Links the identity to the signed-in account that started the link.
    async fn link(&self, refusal: &Refusal<'_>, s: &BrowserSession, account_id: &AccountId) -> Response {
        let state = self.state;
        let name = &self.provider.settings.display_name;
        let account = match signed_in(state, s).await {
            Some((a, _)) if &a.id == account_id => a,
            _ => {
                let msg =
                    "You are no longer signed in to the account that asked for this link. Sign in and link again.";
                return refusal.page(StatusCode::FORBIDDEN, "not_signed_in", "Link failed", msg).await;
            }
        };
        let identity = self.new_identity(account.id.clone());
        match self.idps.store.link_idp_identity(&identity, self.now).await {
            Ok(IdpLink::Linked) => {
                tracing::info!(account = %account.id, idp = %identity.idp_id, "an identity provider was linked");
                state.auth.emit(
                    state
                        .auth
                        .event("account.idp_linked", Outcome::Success)
                        .account(&account.id)
                        .ip(self.peer.ip())
                        .detail("idp", identity.idp_id.clone())
                        .detail("email", self.email.clone()),
                );
                if !bk_domain::wallet::is_placeholder_email(&account.email) {
                    crate::account_email::notify(
                        state,
                        &account.email,
                        &format!("{name} sign-in was added to your account"),
                        &format!("{name} ({}) was linked to your account; it can now sign in to it.", self.email),
                    );
                }
                see_other(&format!("{PAGE}?notice=linked"))
            }
            Ok(IdpLink::AlreadyLinked) => see_other(&format!("{PAGE}?notice=already_linked")),
            Ok(IdpLink::HeldByAnother) => {
                let msg = format!(
                    "This {name} account is linked to another account here. Unlink it there first (signed in to that \
                     account), then link it to this one."
                );
                refusal.page(StatusCode::CONFLICT, "identity_held_by_another", "Link refused", &msg).await
            }
            Err(e) => self.failed("linking an identity", &e),
        }
    }

    /// Signs in the identity's account, or creates one for a new verified person.
    async fn sign_in(&self, refusal: &Refusal<'_>, s: &BrowserSession, next: &str) -> Response {
        let state = self.state;
        let set = &self.provider.settings;
        let name = &set.display_name;
        let known = match self.idps.store.idp_identity(&set.issuer, &self.identity.subject).await {
            Ok(k) => k,
            Err(e) => return self.failed("reading an identity", &e),
        };
        let account = match known {
            Some(identity) => {
                let account = match state.auth.store.account(&identity.account_id).await {
                    Ok(Some(a)) => a,
                    Ok(None) => return self.failed("reading an identity's account", &"the account is gone"),
                    Err(e) => return self.failed("reading an identity's account", &e),
                };
                if account.is_disabled() {
                    let r = Refusal { account: Some(account.id.clone()), ..refusal.clone_for() };
                    let msg = "This account is disabled. Ask the operator of this server.";
                    return r.page(StatusCode::FORBIDDEN, "account_disabled", "Sign-in refused", msg).await;
                }
                if let Err(e) = self.idps.store.touch_idp_identity(&identity.id, self.now).await {
                    tracing::warn!(error = %e, "noting an identity's use failed");
                }
                account
            }
            None => match self.sign_up(refusal, name).await {
                Ok(a) => a,
                Err(res) => return res,
            },
        };
        // The provider stands where the password does: a second factor may still be due.
        match crate::second_factor::after_password(state, s, &account, next, self.now).await {
            Ok(Some(ask)) => ask,
            Ok(None) => {
                let res = crate::pages::complete_sign_in(
                    state,
                    s,
                    &account,
                    next,
                    self.peer.ip(),
                    Some("oidc_sign_in"),
                    self.headers,
                )
                .await;
                with_cookie(res, crate::second_factor::clear_marker_cookie(state))
            }
            Err(res) => res,
        }
    }

    /// A new (issuer, subject): an account for it, unless one holds the email (never linked here).
    async fn sign_up(&self, refusal: &Refusal<'_>, name: &str) -> Result<Account, Response> {
        let state = self.state;
        let taken = || async {
            let holder = state.auth.store.account_by_email(&self.email).await.ok().flatten().map(|a| a.id);
            let r = Refusal { account: holder, ..refusal.clone_for() };
            let msg = format!(
                "An account here already uses {}. Sign in the usual way (password, passkey or wallet), then link \
                 {name} from your account's Security page, under \"Linked sign-in methods\". It is not linked \
                 automatically, so that nobody can take over an account through another identity provider.",
                self.email
            );
            r.page(StatusCode::CONFLICT, "email_taken_not_linked", "Sign in the usual way first", &msg).await
        };
        match state.auth.store.account_by_email(&self.email).await {
            Ok(Some(_)) => return Err(taken().await),
            Ok(None) => {}
            Err(e) => return Err(self.failed("looking up an email", &e)),
        }
        if !self.provider.settings.create_accounts {
            let msg = format!(
                "No account here is linked to this {name} account, and this server does not create accounts through {name}."
            );
            return Err(refusal.page(StatusCode::FORBIDDEN, "sign_up_closed", "Sign-in refused", &msg).await);
        }
        let account = new_idp_account(AccountId::generate(), self.email.clone(), self.now);
        let identity = self.new_identity(account.id.clone());
        match self.idps.store.sign_up_with_idp(&account, &identity).await {
            Ok(IdpSignUp::Created) => {
                tracing::info!(account = %account.id, idp = %identity.idp_id, "account created by an identity provider");
                state.auth.emit(
                    state
                        .auth
                        .event("account.signup", Outcome::Success)
                        .account(&account.id)
                        .ip(self.peer.ip())
                        .detail("method", "oidc")
                        .detail("idp", identity.idp_id.clone()),
                );
                Ok(account)
            }
            Ok(IdpSignUp::EmailTaken) => Err(taken().await),
            Ok(IdpSignUp::IdentityTaken) => Err(state.branded_message(
                StatusCode::CONFLICT,
                "Try again",
                "An account was created for this sign-in just now. Sign in again.",
                refusal.brand.clone(),
            )),
            Err(e) => Err(self.failed("creating an account", &e)),
        }
    }
}

impl<'a> Refusal<'a> {
    fn clone_for(&self) -> Refusal<'a> {
        Refusal {
            state: self.state,
            peer: self.peer,
            idp: self.idp,
            account: self.account.clone(),
            linking: self.linking,
            brand: self.brand.clone(),
        }
    }
}

#[derive(Deserialize)]
pub struct PageQuery {
    notice: Option<String>,
    error: Option<String>,
}

/// `GET /account/security/sign-in-methods`: the account's linked identities, and a link button per provider.
pub async fn page(State(state): State<Arc<WebState>>, headers: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    let (s, _) = session_of(&state, &headers);
    let Some((account, _)) = signed_in(&state, &s).await else {
        return see_other("/login?next=%2Faccount%2Fsecurity%2Fsign-in-methods");
    };
    let Some(idps) = state.idps.clone() else { return see_other("/account/security") };
    let linked: Vec<Value> = match idps.store.idp_identities_of(&account.id).await {
        Ok(list) => list
            .iter()
            .map(|i| {
                let name = idps.provider(&i.idp_id).map_or(i.idp_id.as_str(), |p| p.settings.display_name.as_str());
                serde_json::json!({
                    "id": i.id, "name": name, "email": i.email,
                    "linked": crate::connections_page::utc(i.created_at),
                    "last_used": i.last_used_at.map(crate::connections_page::utc),
                })
            })
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "listing identities failed");
            return state.message(StatusCode::SERVICE_UNAVAILABLE, "Try again", "The server could not list them.");
        }
    };
    let notice = match q.notice.as_deref() {
        Some("linked") => Some("Linked: it can now sign in to this account."),
        Some("already_linked") => Some("That sign-in was linked to this account already."),
        Some("unlinked") => Some("Removed: it can no longer sign in to this account."),
        _ => None,
    };
    let error = match q.error.as_deref() {
        Some("not_found") => Some("There is no such linked sign-in in this account."),
        Some("last_sign_in_method") => Some(
            "That is this account's only way to sign in: set a password or add a passkey or another sign-in first.",
        ),
        _ => None,
    };
    state.page(
        StatusCode::OK,
        "sign_in_methods.html",
        minijinja::context! {
            csrf_token => s.csrf_token(&state.auth.cookie_keys), notice, error,
            linked => minijinja::Value::from(minijinja::value::Serde(&linked)),
        },
    )
}

/// `POST /account/security/sign-in-methods/link {idp}`: links a provider to the signed-in account.
pub async fn link(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (account, s, pairs) = match crate::pages::signed_in_form(&state, &headers, &body, PAGE).await {
        Ok(found) => found,
        Err(res) => return res,
    };
    let Some(idps) = state.idps.clone() else { return no_such_provider(&state, None) };
    let Some(provider) = field(&pairs, "idp").and_then(|id| idps.provider(id)) else {
        return no_such_provider(&state, None);
    };
    begin(&state, &idps, provider, &s, PAGE, Some(account.id), peer).await
}

/// `POST /account/security/sign-in-methods/unlink {identity}`.
pub async fn unlink(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (account, _, pairs) = match crate::pages::signed_in_form(&state, &headers, &body, PAGE).await {
        Ok(found) => found,
        Err(res) => return res,
    };
    let Some(idps) = state.idps.clone() else { return see_other(&format!("{PAGE}?error=not_found")) };
    let id = field(&pairs, "identity").unwrap_or_default();
    match idps.store.unlink_idp_identity(&account.id, id).await {
        Ok((IdpUnlink::Unlinked, Some(identity))) => {
            tracing::info!(account = %account.id, idp = %identity.idp_id, "an identity provider was unlinked");
            state.auth.emit(
                state
                    .auth
                    .event("account.idp_unlinked", Outcome::Success)
                    .account(&account.id)
                    .ip(peer.ip())
                    .detail("idp", identity.idp_id.clone()),
            );
            if !bk_domain::wallet::is_placeholder_email(&account.email) {
                let name = idps
                    .provider(&identity.idp_id)
                    .map_or(identity.idp_id.clone(), |p| p.settings.display_name.clone());
                crate::account_email::notify(
                    &state,
                    &account.email,
                    &format!("{name} sign-in was removed from your account"),
                    &format!("{name} was unlinked from your account; it can no longer sign in to it."),
                );
            }
            see_other(&format!("{PAGE}?notice=unlinked"))
        }
        Ok((IdpUnlink::LastSignInMethod, _)) => see_other(&format!("{PAGE}?error=last_sign_in_method")),
        Ok(_) => see_other(&format!("{PAGE}?error=not_found")),
        Err(e) => {
            tracing::error!(error = %e, "unlinking an identity failed");
            state.message(StatusCode::SERVICE_UNAVAILABLE, "Try again", "The server could not do this right now.")
        }
    }
}
