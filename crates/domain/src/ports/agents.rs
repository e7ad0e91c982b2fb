//! Agents, their conversations and their usage counters. Every method takes the tenant (the
//! account that owns the agent) first.

use async_trait::async_trait;
use serde_json::Value;

use super::Result;
use crate::agent::{Agent, ClientBilling};
use crate::ids::{AccountId, ClientId};

/// The outcome of creating an agent.
#[derive(Debug, PartialEq, Eq)]
pub enum AgentCreation {
    Created,
    /// The account owns as many agents as it may.
    QuotaReached,
}

#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Stores a new agent unless the account already owns `max` of them.
    async fn create_agent(&self, agent: &Agent, max: u32) -> Result<AgentCreation>;
    /// The account's agents, oldest first.
    async fn agents(&self, account: &AccountId) -> Result<Vec<Agent>>;
    async fn agent(&self, account: &AccountId, id: &str) -> Result<Option<Agent>>;
    /// The account's default agent, created from `fresh` if it has none yet (two concurrent first
    /// uses create one).
    async fn default_agent(&self, account: &AccountId, fresh: &Agent) -> Result<Agent>;
    /// Replaces the agent's settings (who `owner` billing charges included); `false` when it does
    /// not exist.
    async fn update_agent(&self, account: &AccountId, agent: &Agent) -> Result<bool>;
    /// Deletes an agent that is not the default one, with its conversations and counters; `false`
    /// when there is no such (non-default) agent.
    async fn delete_agent(&self, account: &AccountId, id: &str) -> Result<bool>;

    /// Counts one message of `user` to the agent on `day` (UTC days since the epoch) unless that
    /// would exceed `limit` (`None`: no limit, still counted); atomic, so concurrent messages cannot
    /// pass the limit together. `false`: the limit is reached, nothing counted.
    async fn count_agent_message(
        &self,
        account: &AccountId,
        agent_id: &str,
        user: &AccountId,
        day: i64,
        limit: Option<u32>,
    ) -> Result<bool>;
    /// Adds `credits` to the agent's spend in `month` (UTC, `yyyymm`).
    async fn add_agent_credits(&self, account: &AccountId, agent_id: &str, month: i64, credits: i64) -> Result<()>;
    /// The agent's spend in `month`.
    async fn agent_credits(&self, account: &AccountId, agent_id: &str, month: i64) -> Result<i64>;

    /// The messages of a conversation of `user` with the agent (`None`: no such conversation).
    async fn conversation(
        &self,
        account: &AccountId,
        agent_id: &str,
        user: &AccountId,
        id: &str,
    ) -> Result<Option<Vec<Value>>>;
    /// Creates or replaces a conversation's messages.
    async fn save_conversation(
        &self,
        account: &AccountId,
        agent_id: &str,
        user: &AccountId,
        id: &str,
        messages: &[Value],
        now: i64,
    ) -> Result<()>;

    /// The billing account an operator set on `client` (who pays for the runs of the `owner`-billed
    /// agents created or last changed through it) and whether it can pay now (the account active,
    /// the client not deleted); `None`: the client has none.
    async fn client_billing(&self, client: &ClientId) -> Result<Option<ClientBilling>>;
}
