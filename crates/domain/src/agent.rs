//! Agents: account-owned assistants that answer with a language model over the caller's own tools
//! (the `use-agent` loop and `/api/v1/agents/{id}/chat/completions`). What an agent is, how it bills,
//! its usage limits and the bounds on every field a person sets; the loop lives in `bk-agents`.

use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, ClientId};

/// The model an agent uses when none is named (the default agent's).
pub const DEFAULT_MODEL: &str = "default";
/// Bounds on what a person sets (checked before anything is stored).
pub const MAX_NAME: usize = 100;
pub const MAX_MODEL: usize = 200;
pub const MAX_PERSONALITY: usize = 8_000;
pub const MAX_DESCRIPTION: usize = 2_000;
pub const MAX_FIRST_PROMPT: usize = 4_000;
pub const MAX_LIMIT_MESSAGE: usize = 1_000;
pub const MAX_BUILT_IN_TOOLS: usize = 32;
/// Agents one account may own.
pub const MAX_AGENTS_PER_ACCOUNT: u32 = 100;
/// Messages kept per conversation (the oldest are dropped first).
pub const MAX_CONVERSATION_MESSAGES: usize = 200;
/// What the limit message says when the agent sets none.
pub const DEFAULT_LIMIT_MESSAGE: &str = "This agent has reached its usage limit. Try again later.";

/// Whose credits a run of the agent spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BillingAccountType {
    /// The agent's owner absorbs the cost: the account that owns the white-label client the agent
    /// was created (or last changed) through (the agent's own account when that client has no owner).
    Owner,
    /// The caller pays.
    #[default]
    User,
}

impl BillingAccountType {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingAccountType::Owner => "owner",
            BillingAccountType::User => "user",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Self::Owner),
            "user" => Some(Self::User),
            _ => None,
        }
    }
}

/// Per-agent usage limits (`None`: unlimited).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageLimits {
    /// Messages one user (account) may send the agent per UTC day.
    #[serde(default)]
    pub daily_messages_per_user: Option<u32>,
    /// Credits the agent may spend per UTC month, over all its users.
    #[serde(default)]
    pub monthly_credits_cap: Option<i64>,
    /// What the agent answers once a limit is reached (no model call is made).
    #[serde(default)]
    pub limit_reached_message: Option<String>,
}

impl UsageLimits {
    pub fn message(&self) -> &str {
        self.limit_reached_message.as_deref().unwrap_or(DEFAULT_LIMIT_MESSAGE)
    }
}

/// An agent as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Agent {
    pub id: String,
    pub account_id: AccountId,
    pub name: String,
    /// The model id (`llm`).
    pub llm: String,
    pub personality: Option<String>,
    pub description: Option<String>,
    pub temperature: Option<f64>,
    pub first_prompt: Option<String>,
    /// Which of the gateway's own tools the agent may use (never `use-agent`).
    pub enabled_built_in_tools: Vec<String>,
    pub billing_account_type: BillingAccountType,
    /// Who `owner` billing charges (the white-label client's owner; `None`: the agent's account).
    pub billing_owner: Option<AccountId>,
    /// The client the agent was created through.
    pub created_by_client: Option<ClientId>,
    pub usage_limits: UsageLimits,
    /// The account's default agent (`default` names it; created on first need).
    pub is_default: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Agent {
    /// A new agent id.
    pub fn generate_id() -> String {
        format!("agt_{}", uuid::Uuid::now_v7().simple())
    }

    /// The account's default agent, as it is first created: the loop's defaults.
    pub fn default_for(account_id: &AccountId, now: i64) -> Self {
        Self {
            id: Self::generate_id(),
            account_id: account_id.clone(),
            name: "Default agent".to_owned(),
            llm: DEFAULT_MODEL.to_owned(),
            personality: None,
            description: Some("Answers with the tools this session may use.".to_owned()),
            temperature: None,
            first_prompt: None,
            enabled_built_in_tools: vec!["list-connections".to_owned(), "whoami".to_owned()],
            billing_account_type: BillingAccountType::User,
            billing_owner: None,
            created_by_client: None,
            usage_limits: UsageLimits::default(),
            is_default: true,
            created_at: now,
            updated_at: now,
        }
    }

    /// The account a run is billed to, given the caller's account and the billing account an
    /// operator set on the client that created or last changed the agent, as read at run time.
    /// `owner` billing charges that billing account when the client has one (refused when it cannot
    /// pay: the customer is never charged instead), else the client's owner, else the agent's own
    /// account; `user` billing charges the caller.
    pub fn bill_to<'a>(
        &'a self,
        caller: &'a AccountId,
        client_billing: Option<&'a ClientBilling>,
    ) -> Result<&'a AccountId, BillingUnavailable> {
        match (self.billing_account_type, client_billing) {
            (BillingAccountType::User, _) => Ok(caller),
            (BillingAccountType::Owner, Some(b)) if b.usable => Ok(&b.account),
            (BillingAccountType::Owner, Some(_)) => Err(BillingUnavailable),
            (BillingAccountType::Owner, None) => Ok(self.billing_owner.as_ref().unwrap_or(&self.account_id)),
        }
    }
}

/// The billing account an operator set on a white-label client, as read when an agent runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientBilling {
    pub account: AccountId,
    /// The account is active and the client not deleted.
    pub usable: bool,
}

/// An `owner`-billed agent's run that its client's billing account cannot pay for.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the account that pays for this agent's runs (the billing account of the client it was set up through) \
     is disabled or gone; nobody else is charged instead"
)]
pub struct BillingUnavailable;

/// Whether an agent id is within a grant's `allowedAgentIds` (`None`: unrestricted).
pub fn agent_allowed(allowed: &Option<Vec<String>>, id: &str) -> bool {
    allowed.as_ref().is_none_or(|a| a.iter().any(|x| x == id))
}

/// Why a field of an agent is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidAgent(pub String);

fn bounded(field: &str, v: &Option<String>, max: usize) -> Result<(), InvalidAgent> {
    match v {
        Some(s) if s.chars().count() > max => Err(InvalidAgent(format!("{field} is longer than {max} characters"))),
        _ => Ok(()),
    }
}

/// Checks every field a person sets (`known_tools`: the built-in tools an agent may enable).
pub fn validate(agent: &Agent, known_tools: &[&str]) -> Result<(), InvalidAgent> {
    let name = agent.name.trim();
    if name.is_empty() {
        return Err(InvalidAgent("name must not be empty".into()));
    }
    if agent.name.chars().count() > MAX_NAME {
        return Err(InvalidAgent(format!("name is longer than {MAX_NAME} characters")));
    }
    if agent.llm.trim().is_empty() || agent.llm.len() > MAX_MODEL || agent.llm.chars().any(char::is_control) {
        return Err(InvalidAgent(format!("llm must be a model id of 1 to {MAX_MODEL} characters")));
    }
    bounded("personality", &agent.personality, MAX_PERSONALITY)?;
    bounded("description", &agent.description, MAX_DESCRIPTION)?;
    bounded("firstPrompt", &agent.first_prompt, MAX_FIRST_PROMPT)?;
    bounded("usageLimits.limitReachedMessage", &agent.usage_limits.limit_reached_message, MAX_LIMIT_MESSAGE)?;
    if let Some(t) = agent.temperature
        && !(t.is_finite() && (0.0..=2.0).contains(&t))
    {
        return Err(InvalidAgent("temperature must be between 0 and 2".into()));
    }
    if agent.enabled_built_in_tools.len() > MAX_BUILT_IN_TOOLS {
        return Err(InvalidAgent(format!("enabledBuiltInTools holds more than {MAX_BUILT_IN_TOOLS} names")));
    }
    for t in &agent.enabled_built_in_tools {
        if !known_tools.contains(&t.as_str()) {
            return Err(InvalidAgent(format!(
                "enabledBuiltInTools: {} is not a built-in tool an agent may use (one of {})",
                t.chars().take(64).collect::<String>(),
                known_tools.join(", ")
            )));
        }
    }
    if agent.usage_limits.monthly_credits_cap.is_some_and(|c| c < 0) {
        return Err(InvalidAgent("usageLimits.monthlyCreditsCap must not be negative".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_billing_charges_the_owner_and_user_billing_the_caller() {
        let owner = AccountId::from_string("acc_owner");
        let caller = AccountId::from_string("acc_caller");
        let mut a = Agent::default_for(&caller, 0);
        assert_eq!(a.bill_to(&caller, None), Ok(&caller));
        a.billing_account_type = BillingAccountType::Owner;
        assert_eq!(a.bill_to(&caller, None), Ok(&caller), "no owner: the agent's own account");
        a.billing_owner = Some(owner.clone());
        assert_eq!(a.bill_to(&caller, None), Ok(&owner));
    }

    #[test]
    fn owner_billing_charges_the_clients_billing_account_and_never_falls_back_when_it_cannot_pay() {
        let saas = AccountId::from_string("acc_saas");
        let customer = AccountId::from_string("acc_customer");
        let mut a = Agent::default_for(&customer, 0);
        let usable = ClientBilling { account: saas.clone(), usable: true };
        let disabled = ClientBilling { account: saas.clone(), usable: false };
        assert_eq!(a.bill_to(&customer, Some(&usable)), Ok(&customer), "user billing: the caller");
        assert_eq!(a.bill_to(&customer, Some(&disabled)), Ok(&customer));
        a.billing_account_type = BillingAccountType::Owner;
        assert_eq!(a.bill_to(&customer, Some(&usable)), Ok(&saas));
        assert_eq!(a.bill_to(&customer, Some(&disabled)), Err(BillingUnavailable));
    }

    #[test]
    fn validation_names_the_field() {
        let mut a = Agent::default_for(&AccountId::from_string("acc_a"), 0);
        assert!(validate(&a, &["whoami", "list-connections"]).is_ok());
        a.temperature = Some(3.0);
        assert!(validate(&a, &[]).unwrap_err().0.contains("temperature"));
        a.temperature = None;
        a.enabled_built_in_tools = vec!["use-agent".into()];
        assert!(validate(&a, &["whoami"]).unwrap_err().0.contains("use-agent"));
        a.enabled_built_in_tools.clear();
        a.name = " ".into();
        assert!(validate(&a, &[]).unwrap_err().0.contains("name"));
    }

    #[test]
    fn allowed_agent_ids_none_is_unrestricted() {
        assert!(agent_allowed(&None, "agt_x"));
        assert!(!agent_allowed(&Some(vec!["agt_y".into()]), "agt_x"));
        assert!(agent_allowed(&Some(vec!["agt_x".into()]), "agt_x"));
    }
}
