//! Bridge mode (reference 002): a company puts its own API behind Bridgekeeper and every sign-in
//! carries the backend's token. For each `token_exchange` provider marked `bridge = true`:
//!
//! - at **consent**, before a code is issued, the verify endpoint is posted the account's
//!   **verified** email with the operator's admin token (an unverified address is never sent: the
//!   backend trusts it); a refusal is `access_denied`, a failure `temporarily_unavailable`;
//! - the scoped token it answers is sealed (vault envelope, tenant and row as associated data) and
//!   held for the code; the redemption moves it onto the session (the store does that in the
//!   redemption's own transaction). It is never in a JWT, a tool's arguments, or a log;
//! - the provider's declarative HTTP tools send the token of the calling session (found by the
//!   session id of the request's access context), never another session's nor a connection's;
//! - a refresh keeps it; after the backend answered 401 on a tool call it is marked, and the next
//!   refresh verifies the account again (a new token sealed in place; a refusal ends the grant);
//! - revoking the session deletes it (a trigger on the session row).
//!
//! Verifying once at consent and carrying the result to the session, rather than again at the
//! redemption as the reference does, is deliberate: the refusal reaches the person at the redirect
//! (RFC 6749 §4.1.2.1) instead of surfacing as an opaque `invalid_grant` in the client, and the
//! backend is asked once per sign-in.

use std::sync::Arc;

use async_trait::async_trait;
use bk_crypto::secret::{b64url, random_bytes};
use bk_domain::UnixTime;
use bk_domain::access::Clock;
use bk_domain::bridge::{BridgeRefusal, SealedBridge, SignInBridge};
use bk_domain::grant::Grant;
use bk_domain::ids::{AccountId, SessionId, TenantId};
use bk_domain::ports::{AccountStore, BridgeStore, StoreError};
use bk_domain::restrictions::ProviderReach;
use zeroize::Zeroizing;

use crate::catalog::{Catalog, Provider, TokenExchange};
use crate::oauth2::{Upstream, UpstreamError};
use crate::vault::{Credential, Vault};

/// Bridge mode, built once at start when the catalog bridges a provider.
pub struct Bridge {
    store: Arc<dyn BridgeStore>,
    accounts: Arc<dyn AccountStore>,
    vault: Vault,
    upstream: Arc<Upstream>,
    catalog: Arc<Catalog>,
    clock: Arc<dyn Clock>,
}

/// The scoped token of one session for one provider, opened for one call.
pub struct SessionToken {
    /// The row, to mark for verification when the backend refuses the token.
    pub id: String,
    /// Zeroed when dropped.
    pub token: Zeroizing<String>,
    /// The backend refused it on an earlier call and the client has not refreshed since.
    pub reverify: bool,
}

/// Why a session's token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SessionTokenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the session's token does not open (wrong key, row or tenant, or tampered)")]
    Open,
}

impl Bridge {
    /// Bridge mode over `catalog`; `None` when no provider is bridged.
    pub fn new(
        store: Arc<dyn BridgeStore>,
        accounts: Arc<dyn AccountStore>,
        vault: Vault,
        upstream: Arc<Upstream>,
        catalog: Arc<Catalog>,
        clock: Arc<dyn Clock>,
    ) -> Option<Self> {
        let any = catalog.iter().any(|p| p.bridged().is_some());
        any.then(|| Self { store, accounts, vault, upstream, catalog, clock })
    }

    /// The bridged providers, in id order.
    pub fn providers(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.catalog.iter().filter(|p| p.bridged().is_some())
    }

    /// The token `session` of `tenant` holds for `provider` (none when it holds none, or the
    /// session is revoked or another tenant's).
    pub async fn session_token(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        provider: &str,
    ) -> Result<Option<SessionToken>, SessionTokenError> {
        let rows = self.store.session_bridges(tenant, session).await?;
        let Some(row) = rows.into_iter().find(|b| b.provider_id == provider) else { return Ok(None) };
        let opened = self.vault.open_bridge(tenant, &row.id, &row.sealed).map_err(|_| SessionTokenError::Open)?;
        match &opened {
            Credential::Exchanged { token } => Ok(Some(SessionToken {
                id: row.id.clone(),
                token: Zeroizing::new(token.clone()),
                reverify: row.reverify,
            })),
            _ => Err(SessionTokenError::Open),
        }
    }

    /// The backend refused the token: verify the account again at the session's next refresh.
    pub async fn mark_for_reverification(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        self.store.mark_bridge_reverify(tenant, id).await
    }

    /// Asks the verify endpoint of `provider` about `account` (its verified email only).
    async fn verify(&self, account: &AccountId, provider: &str, t: &TokenExchange) -> Result<Verified, BridgeRefusal> {
        let denied = |why: &str| BridgeRefusal::Denied { provider: provider.to_owned(), why: why.to_owned() };
        let Some(a) = self.accounts.account(account).await? else {
            return Err(denied("the account no longer exists"));
        };
        // The backend trusts the address it is sent: only one the person proved is ever sent.
        if !a.email_verified() || bk_domain::wallet::is_placeholder_email(&a.email) {
            return Err(denied("the account's email address is not verified"));
        }
        match self.upstream.exchange_email(t, &a.email).await {
            Ok(x) => {
                let token = match &x.credential {
                    Credential::Exchanged { token } => Zeroizing::new(token.clone()),
                    _ => return Err(denied("the verify endpoint answered no token")),
                };
                Ok(Verified { token, user_id: x.user_id })
            }
            Err(UpstreamError::Refused { error, .. }) => {
                Err(denied(&format!("the verify endpoint refused the user ({error})")))
            }
            Err(UpstreamError::Unavailable(why)) => {
                Err(BridgeRefusal::Unavailable { provider: provider.to_owned(), why })
            }
            Err(UpstreamError::Malformed(why)) => {
                Err(BridgeRefusal::Unavailable { provider: provider.to_owned(), why: why.to_owned() })
            }
        }
    }

    fn seal(&self, account: &AccountId, row: &str, token: &str) -> Result<Vec<u8>, BridgeRefusal> {
        let credential = Credential::Exchanged { token: token.to_owned() };
        self.vault
            .seal_bridge(account, row, &credential)
            .map_err(|e| BridgeRefusal::Store(StoreError::Corrupt(e.to_string())))
    }
}

/// What a verify endpoint answered for a user.
struct Verified {
    token: Zeroizing<String>,
    user_id: Option<String>,
}

#[async_trait]
impl SignInBridge for Bridge {
    async fn at_consent(&self, account: &AccountId, reach: &ProviderReach) -> Result<Vec<SealedBridge>, BridgeRefusal> {
        let mut held = Vec::new();
        for p in self.providers().filter(|p| reach.allows(&p.id)) {
            let Some(t) = p.bridged() else { continue };
            let v = self.verify(account, &p.id, t).await?;
            let id = format!("brg_{}", b64url(&random_bytes::<16>()));
            let sealed = self.seal(account, &id, &v.token)?;
            tracing::info!(account = %account, provider = %p.id, "bridge mode: the backend verified the account");
            held.push(SealedBridge {
                id,
                provider_id: p.id.clone(),
                sealed,
                backend_user_id: v.user_id,
                reverify: false,
            });
        }
        Ok(held)
    }

    async fn hold(
        &self,
        account: &AccountId,
        code_hash: &[u8],
        held: &[SealedBridge],
        now: UnixTime,
    ) -> Result<(), StoreError> {
        if held.is_empty() {
            return Ok(());
        }
        self.store.hold_bridges(account, code_hash, held, now).await
    }

    async fn at_refresh(&self, grant: &Grant) -> Result<(), BridgeRefusal> {
        let rows = self.store.session_bridges(&grant.account_id, &grant.id).await?;
        for row in rows.into_iter().filter(|b| b.reverify) {
            let Some(t) = self.catalog.get(&row.provider_id).and_then(|p| p.bridged()) else {
                // No longer bridged: nothing will use the token; it goes with the session.
                continue;
            };
            let v = self.verify(&grant.account_id, &row.provider_id, t).await?;
            let sealed = self.seal(&grant.account_id, &row.id, &v.token)?;
            let now = self.clock.now();
            self.store.replace_bridge(&grant.account_id, &row.id, &sealed, v.user_id.as_deref(), now).await?;
            tracing::info!(session = %grant.id, provider = %row.provider_id, "bridge mode: the backend verified the account again; new token sealed");
        }
        Ok(())
    }
}
