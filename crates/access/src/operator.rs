//! Operator API tokens (`bko_…`, created with `bridgekeeper admin token create`): looked up by
//! digest; a revoked or unknown token is refused.

use bk_crypto::secret::token_hash;
use bk_domain::ports::{OperatorTokenStore, StoreError};

pub const OPERATOR_TOKEN_PREFIX: &str = "bko_";

/// Is this credential an operator token (rather than an access token or PAT)?
pub fn is_operator_token(token: &str) -> bool {
    token.starts_with(OPERATOR_TOKEN_PREFIX)
}

/// The id of the live operator token `token`, or `None` when it is unknown or revoked.
pub async fn verify_operator_token(store: &dyn OperatorTokenStore, token: &str) -> Result<Option<String>, StoreError> {
    Ok(match store.operator_token_by_hash(&token_hash(token)).await? {
        Some(t) if t.revoked_at.is_none() => Some(t.id),
        _ => None,
    })
}
