//! Bridge mode (reference 002, "a company puts its own API behind Bridgekeeper"): a `token_exchange`
//! provider marked `bridge = true` is crossed by every authorization-code grant that can reach it.
//! At consent, before a code is issued, the company backend's verify endpoint is asked about the
//! account's verified email (a refusal ends the request with `access_denied`); the scoped API token
//! it answers is sealed and held for the code, moves onto the session when the code is redeemed,
//! is what the provider's tools send for that session, is kept by refreshes, is verified again at
//! the next refresh after the backend refused it on a tool call, and is destroyed with the session.
//!
//! This module holds what the authorization server needs to know of it (the port it calls); the
//! implementation (backend calls, vault) lives in `bridgekeeper-connections`.

use std::fmt;

use async_trait::async_trait;

use crate::UnixTime;
use crate::grant::Grant;
use crate::ids::AccountId;
use crate::ports::StoreError;
use crate::restrictions::ProviderReach;

/// The associated data a bridge-mode token is sealed with: its tenant and row (a ciphertext
/// copied to another row or tenant does not open), under a purpose of its own.
pub fn bridge_binding(account: &AccountId, row: &str) -> Vec<u8> {
    format!("session-bridge:{account}:{row}").into_bytes()
}

/// A backend's scoped token for one session (or, before redemption, one code), sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBridge {
    /// The row id; with the account, the associated data of the seal.
    pub id: String,
    pub provider_id: String,
    /// The vault envelope of the scoped token.
    pub sealed: Vec<u8>,
    /// The user's id in the backend, when it said.
    pub backend_user_id: Option<String>,
    /// The backend refused the token on a tool call: verify again at the next refresh.
    pub reverify: bool,
}

impl fmt::Debug for SealedBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedBridge")
            .field("id", &self.id)
            .field("provider_id", &self.provider_id)
            .field("reverify", &self.reverify)
            .finish_non_exhaustive()
    }
}

/// Why the bridge was not crossed.
#[derive(Debug, thiserror::Error)]
pub enum BridgeRefusal {
    /// The backend refused the user (or the account's email is not verified): `access_denied` at
    /// consent, `invalid_grant` (and the session ends) at a refresh.
    #[error("{provider} does not grant this account access: {why}")]
    Denied { provider: String, why: String },
    /// The backend failed or could not be reached: `temporarily_unavailable`; nothing changes.
    #[error("{provider} could not verify the account now: {why}")]
    Unavailable { provider: String, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the authorization server asks of bridge mode.
#[async_trait]
pub trait SignInBridge: Send + Sync {
    /// At consent, before a code is issued: the sealed scoped tokens of every bridged provider the
    /// grant can reach (empty when it reaches none), or why the account may not pass.
    async fn at_consent(&self, account: &AccountId, reach: &ProviderReach) -> Result<Vec<SealedBridge>, BridgeRefusal>;
    /// Holds what `at_consent` answered for the code just stored (its hash); the code's redemption
    /// moves it onto the new session.
    async fn hold(
        &self,
        account: &AccountId,
        code_hash: &[u8],
        held: &[SealedBridge],
        now: UnixTime,
    ) -> Result<(), StoreError>;
    /// At a refresh of `grant`: verifies again the tokens the backend refused since (a new token
    /// sealed in place); the others are kept as they are.
    async fn at_refresh(&self, grant: &Grant) -> Result<(), BridgeRefusal>;
}
