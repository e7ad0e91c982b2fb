//! What can go wrong: the caller's side (no credits, no such model, a bad request) is kept apart
//! from the upstream's (unreachable, slow, an error status, a malformed answer), so that a client is
//! never blamed for a backend failure. No variant carries a secret or an upstream's raw body.

use bk_domain::ports::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The balance does not cover the request (`balance`: what is left; `needed`: the least this
    /// request must be able to pay).
    #[error("credits exhausted: the balance is {balance} credits, this request needs up to {needed}")]
    CreditsExhausted { balance: i64, needed: i64 },
    #[error("the model {0:?} is not offered")]
    UnknownModel(String),
    #[error("{field}: {detail}")]
    InvalidRequest { field: &'static str, detail: String },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// The upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream could not be reached: {0}")]
    Unreachable(String),
    #[error("the upstream did not answer in time")]
    Timeout,
    /// The upstream refused the request as malformed (400, 404, 422): the client's request is at
    /// fault; `message` is the upstream's `error.message`, bounded.
    #[error("the upstream refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// The upstream is busy (429) or failing (5xx), or refused Bridgekeeper's key (401, 403).
    #[error("the upstream answered {status}")]
    Status { status: u16, retry_after: Option<u64> },
    #[error("the upstream's answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the upstream's answer is not a chat completion: {0}")]
    Malformed(String),
}
