//! Credits: the unit LLM use is billed in (1 credit = $0.0001), the price of a model, and the rules
//! that turn token counts into credits. Pure integer arithmetic: no rounding drift, no floats.

use serde::{Deserialize, Serialize};

use crate::ids::AccountId;

/// Credits per US dollar (1 credit = $0.0001).
pub const CREDITS_PER_USD: u64 = 10_000;

/// What a model costs, in credits per million tokens (`$1` per million tokens = 10 000).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub prompt_per_million: u64,
    pub completion_per_million: u64,
}

impl Price {
    /// `ceil((prompt × prompt_rate + completion × completion_rate) / 1e6)`, exact (u128, saturating
    /// at `i64::MAX`, which no balance reaches).
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> i64 {
        let micro = (u128::from(prompt_tokens) * u128::from(self.prompt_per_million))
            .saturating_add(u128::from(completion_tokens) * u128::from(self.completion_per_million));
        i64::try_from(micro.div_ceil(1_000_000)).unwrap_or(i64::MAX)
    }

    /// The most completion tokens `credits` pay for after a prompt of `prompt_tokens` (an unpriced
    /// completion: unbounded, `u64::MAX`).
    pub fn affordable_completion(&self, credits: i64, prompt_tokens: u64) -> u64 {
        let budget = u128::from(u64::try_from(credits.max(0)).unwrap_or(0)) * 1_000_000;
        let prompt = u128::from(prompt_tokens) * u128::from(self.prompt_per_million);
        let Some(left) = budget.checked_sub(prompt) else {
            return 0;
        };
        if self.completion_per_million == 0 {
            return u64::MAX;
        }
        u64::try_from(left / u128::from(self.completion_per_million)).unwrap_or(u64::MAX)
    }
}

/// Why the ledger moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CreditKind {
    /// The configured grant every account gets once.
    SignupGrant,
    /// An operator's grant (positive) or correction.
    Grant,
    /// A chat completion (negative).
    Completion,
}

impl CreditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CreditKind::SignupGrant => "signup_grant",
            CreditKind::Grant => "grant",
            CreditKind::Completion => "completion",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "signup_grant" => Some(CreditKind::SignupGrant),
            "grant" => Some(CreditKind::Grant),
            "completion" => Some(CreditKind::Completion),
            _ => None,
        }
    }
}

/// One row of the append-only ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditTransaction {
    /// `ctx_…`, time-ordered.
    pub id: String,
    pub account_id: AccountId,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    pub kind: CreditKind,
    /// Signed: grants add, completions take.
    pub amount: i64,
    /// The balance right after this row.
    pub balance_after: i64,
    /// The public model id (completions).
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    /// Why (an operator's reason, or what a completion could not be billed).
    pub note: Option<String>,
}

impl CreditTransaction {
    /// A new ledger id (time-ordered, so newest first is id order).
    pub fn new_id() -> String {
        format!("ctx_{}", uuid::Uuid::now_v7().simple())
    }

    /// A new id for a reservation (hold).
    pub fn new_hold_id() -> String {
        format!("hold_{}", uuid::Uuid::now_v7().simple())
    }
}

/// What a completion used, to be written with its charge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompletionUsage {
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The price of that use (the charge is this, unless the upstream used more than was reserved
    /// and the balance cannot cover the rest).
    pub cost: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_rounds_up_to_whole_credits_exactly() {
        let p = Price { prompt_per_million: 1_500, completion_per_million: 6_000 };
        // 1000 × 1500 + 500 × 6000 = 4 500 000 micro-credits = 4.5 → 5
        assert_eq!(p.cost(1000, 500), 5);
        assert_eq!(p.cost(0, 0), 0);
        assert_eq!(p.cost(1, 0), 1);
        assert_eq!(Price { prompt_per_million: 1_000_000, completion_per_million: 0 }.cost(7, 9), 7);
        assert_eq!(
            Price { prompt_per_million: u64::MAX, completion_per_million: u64::MAX }.cost(u64::MAX, u64::MAX),
            i64::MAX
        );
    }

    #[test]
    fn affordable_completion_never_exceeds_the_credits() {
        let p = Price { prompt_per_million: 1_000_000, completion_per_million: 2_000_000 };
        assert_eq!(p.affordable_completion(10, 4), 3);
        assert!(p.cost(4, 3) <= 10 && p.cost(4, 4) > 10);
        assert_eq!(p.affordable_completion(3, 4), 0);
        assert_eq!(p.affordable_completion(-5, 0), 0);
        assert_eq!(Price { prompt_per_million: 1, completion_per_million: 0 }.affordable_completion(1, 1), u64::MAX);
    }

    #[test]
    fn kinds_round_trip() {
        for k in [CreditKind::SignupGrant, CreditKind::Grant, CreditKind::Completion] {
            assert_eq!(CreditKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(CreditKind::parse("x"), None);
    }
}
