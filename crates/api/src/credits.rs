//! The credits ledger on the REST face: `GET /api/v1/credit-transactions` (scope `account`: the
//! caller's own rows only, newest first) and the operators' grant,
//! `POST /api/v1/admin/accounts/{id}/credits` (an operator token; audited as `credits.granted`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bk_domain::audit::Outcome;
use bk_domain::credits::{CreditKind, CreditTransaction};
use bk_domain::ids::AccountId;
use bk_domain::ports::MAX_CREDIT_PAGE;
use bk_domain::scope::Scope;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::Api;
use crate::caller::{Caller, caller};
use crate::problem::{Body, PathParam, Problem, QueryParams, json_body, number_param};

/// The largest grant in one request (a typo guard: $100 000 000).
const MAX_GRANT: i64 = 1_000_000_000_000;
/// The longest reason kept with a grant.
const MAX_REASON_BYTES: usize = 200;
/// The longest ledger id accepted as a cursor.
const MAX_CURSOR_BYTES: usize = 64;

/// One ledger row.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditTransactionView {
    pub id: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    pub kind: CreditKind,
    /// Signed credits: grants add, completions take (1 credit = $0.0001).
    pub amount: i64,
    /// The balance right after this row.
    pub balance_after: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl CreditTransactionView {
    fn of(t: CreditTransaction) -> Self {
        Self {
            id: t.id,
            created_at_ms: t.created_at_ms,
            kind: t.kind,
            amount: t.amount,
            balance_after: t.balance_after,
            model: t.model,
            prompt_tokens: t.prompt_tokens,
            completion_tokens: t.completion_tokens,
            note: t.note,
        }
    }
}

/// A page of the ledger, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditTransactionPage {
    /// The balance now (reservations of completions in flight excluded).
    pub balance: i64,
    pub transactions: Vec<CreditTransactionView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LedgerParams {
    /// 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Rows older than this row id (the previous page's `nextBefore`).
    before: Option<String>,
}

/// The caller's credit ledger.
#[utoipa::path(
    get,
    path = "/api/v1/credit-transactions",
    operation_id = "listCreditTransactions",
    summary = "Lists the account's credit transactions",
    tag = "credits",
    description = "The caller's append-only credit ledger, newest first, and its balance (1 credit = $0.0001): the \
        signup grant, operators' grants and each chat completion's charge. Scope `account`.",
    params(LedgerParams),
    security(("bearer" = ["account"])),
    responses(
        (status = 200, description = "A page of the ledger", body = CreditTransactionPage),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn list(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    QueryParams(p): QueryParams<LedgerParams>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let (account, _) = who.person_with(Scope::Account)?;
    let limit = match number_param::<u32>("limit", p.limit.as_deref(), "a whole number from 1 to 100")? {
        None => 20,
        Some(n) if (1..=MAX_CREDIT_PAGE).contains(&n) => n,
        Some(_) => return Err(Problem::invalid("limit", "limit must be a whole number from 1 to 100")),
    };
    let before = match p.before {
        Some(b) if b.is_empty() || b.len() > MAX_CURSOR_BYTES || !b.starts_with("ctx_") => {
            return Err(Problem::invalid("before", "before must be a transaction id from a previous page"));
        }
        b => b,
    };
    let balance = server.llm.balance(account).await.map_err(|e| match e {
        bk_llm::LlmError::Store(s) => Problem::from(s),
        other => {
            tracing::error!(error = %other, "reading a balance failed");
            Problem::server_error()
        }
    })?;
    let rows = server.store.credit_transactions(account, before.as_deref(), limit).await?;
    let next_before = (rows.len() == limit as usize).then(|| rows.last().map(|t| t.id.clone())).flatten();
    let transactions = rows.into_iter().map(CreditTransactionView::of).collect();
    Ok(Json(CreditTransactionPage { balance, transactions, next_before }).into_response())
}

/// An operator's grant.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// Credits to add, 1 to 1 000 000 000 000 (1 credit = $0.0001).
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: i64,
    /// Why (kept in the ledger row and the audit event), at most 200 bytes.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The grant as written.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantView {
    pub account_id: AccountId,
    pub transaction: CreditTransactionView,
    pub balance: i64,
}

/// Grants credits to an account.
#[utoipa::path(
    post,
    path = "/api/v1/admin/accounts/{id}/credits",
    operation_id = "adminGrantCredits",
    summary = "Grants credits to an account",
    tag = "admin",
    description = "Adds credits to an account's balance with a `grant` row in its ledger; audited as \
        `credits.granted`. An operator token.",
    params(("id" = String, Path, description = "The account id")),
    request_body(content = GrantRequest, content_type = "application/json"),
    security(("operator" = [])),
    responses(
        (status = 201, description = "Granted", body = GrantView),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 415, response = crate::problem::UnsupportedMediaType),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn grant(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
    Body(body): Body,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    if !matches!(who, Caller::Operator { .. }) {
        return Err(Problem::forbidden("granting credits needs an operator token"));
    }
    let req: GrantRequest = json_body(&headers, &body)?;
    if !(1..=MAX_GRANT).contains(&req.amount) {
        return Err(Problem::invalid("amount", "amount must be a whole number of credits from 1 to 1000000000000"));
    }
    let reason = req.reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON_BYTES) {
        return Err(Problem::invalid("reason", "reason is at most 200 bytes"));
    }
    if reason.as_ref().is_some_and(|r| r.chars().any(char::is_control)) {
        return Err(Problem::invalid("reason", "reason must be one line of text without control characters"));
    }
    if id.is_empty() || id.len() > 64 {
        return Err(Problem::not_found("account"));
    }
    let account = AccountId::from_string(id);
    let granted = server
        .store
        .grant_credits(&account, req.amount, reason.as_deref(), server.llm.signup_grant(), server.clock.now_ms())
        .await?;
    let Some(t) = granted else {
        return Err(Problem::not_found("account"));
    };
    let event = who
        .stamp(server.event("credits.granted", Outcome::Success))
        .account(&account)
        .target(&t.id)
        .detail("amount", req.amount)
        .detail("balance_after", t.balance_after)
        .detail("reason", reason.unwrap_or_default());
    server.emit(event);
    let balance = t.balance_after;
    Ok((
        StatusCode::CREATED,
        Json(GrantView { account_id: account, transaction: CreditTransactionView::of(t), balance }),
    )
        .into_response())
}
