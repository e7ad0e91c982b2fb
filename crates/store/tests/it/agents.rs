//! The agent store's contract on every backend: the daily message limit holds under concurrency;
//! concurrent first uses make one default agent; agents, counters and conversations belong to
//! their tenant; the default agent cannot be deleted.

use std::sync::Arc;

use bk_domain::account::Account;
use bk_domain::agent::{Agent, ClientBilling, UsageLimits};
use bk_domain::client::{Client, ClientCapabilities, ClientOrigin, ClientRole, ClientType};
use bk_domain::ids::{AccountId, ClientId};
use bk_domain::ports::{AccountStore, AgentCreation, AgentStore, ClientStore};
use bk_domain::scope::ScopeSet;
use bridgekeeper_store::SqlStore;
use serde_json::json;

shared_store_tests!(
    daily_message_limit_holds_under_concurrency,
    one_default_agent_however_many_first_uses,
    agents_belong_to_their_tenant,
    a_clients_billing_account_is_read_with_whether_it_can_pay,
);

async fn account(store: &SqlStore) -> AccountId {
    let id = AccountId::generate();
    let a = Account {
        id: id.clone(),
        email: format!("{id}@example.com"),
        password_hash: None,
        created_at: 1,
        email_verified_at: None,
        disabled_at: None,
        deleted_at: None,
    };
    store.create_account(&a).await.unwrap();
    id
}

fn agent(account: &AccountId, name: &str) -> Agent {
    let mut a = Agent::default_for(account, 10);
    a.is_default = false;
    a.name = name.into();
    a.temperature = Some(0.5);
    a.usage_limits = UsageLimits {
        daily_messages_per_user: Some(5),
        monthly_credits_cap: Some(100),
        limit_reached_message: Some("later".into()),
    };
    a
}

async fn daily_message_limit_holds_under_concurrency(store: Arc<SqlStore>) {
    let acc = account(&store).await;
    let a = agent(&acc, "limited");
    assert_eq!(store.create_agent(&a, 10).await.unwrap(), AgentCreation::Created);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, acc, id) = (store.clone(), acc.clone(), a.id.clone());
            tokio::spawn(async move { store.count_agent_message(&acc, &id, &acc, 20_000, Some(5)).await.unwrap() })
        })
        .collect();
    let mut passed = 0;
    for t in tasks {
        passed += usize::from(t.await.unwrap());
    }
    assert_eq!(passed, 5, "exactly the limit passes");
    // Another day starts afresh; no limit still counts.
    assert!(store.count_agent_message(&acc, &a.id, &acc, 20_001, Some(5)).await.unwrap());
    assert!(store.count_agent_message(&acc, &a.id, &acc, 20_000, None).await.unwrap());
    // Credits add up per month.
    store.add_agent_credits(&acc, &a.id, 202612, 40).await.unwrap();
    store.add_agent_credits(&acc, &a.id, 202612, 2).await.unwrap();
    assert_eq!(store.agent_credits(&acc, &a.id, 202612).await.unwrap(), 42);
    assert_eq!(store.agent_credits(&acc, &a.id, 202701).await.unwrap(), 0);
    // Stored as given.
    let back = store.agent(&acc, &a.id).await.unwrap().unwrap();
    assert_eq!(back, a);
}

async fn one_default_agent_however_many_first_uses(store: Arc<SqlStore>) {
    let acc = account(&store).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, acc) = (store.clone(), acc.clone());
            tokio::spawn(async move { store.default_agent(&acc, &Agent::default_for(&acc, 10)).await.unwrap().id })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(store.agents(&acc).await.unwrap().len(), 1);
    assert!(!store.delete_agent(&acc, &ids[0]).await.unwrap(), "the default agent is not deleted");
}

async fn agents_belong_to_their_tenant(store: Arc<SqlStore>) {
    let (a, b) = (account(&store).await, account(&store).await);
    let ag = agent(&a, "mine");
    store.create_agent(&ag, 10).await.unwrap();
    assert!(store.agent(&b, &ag.id).await.unwrap().is_none());
    assert!(store.agents(&b).await.unwrap().is_empty());
    let mut changed = ag.clone();
    changed.name = "theirs".into();
    assert!(!store.update_agent(&b, &changed).await.unwrap());
    assert!(!store.delete_agent(&b, &ag.id).await.unwrap());
    assert!(!store.count_agent_message(&b, &ag.id, &b, 1, None).await.unwrap(), "no counter on another's agent");
    store.add_agent_credits(&b, &ag.id, 202612, 99).await.unwrap();
    assert_eq!(store.agent_credits(&a, &ag.id, 202612).await.unwrap(), 0, "another tenant cannot bill it");
    let msgs = [json!({"role": "user", "content": "hi"})];
    store.save_conversation(&a, &ag.id, &a, "c1", &msgs, 5).await.unwrap();
    assert_eq!(store.conversation(&a, &ag.id, &a, "c1").await.unwrap().unwrap(), msgs);
    assert!(store.conversation(&b, &ag.id, &b, "c1").await.unwrap().is_none());
    changed.billing_owner = Some(b.clone());
    changed.created_by_client = Some(bk_domain::ids::ClientId::from_string("cli_other"));
    assert!(store.update_agent(&a, &changed).await.unwrap());
    assert_eq!(store.agent(&a, &ag.id).await.unwrap().unwrap(), changed, "every setting, the billed owner too");
    // The quota counts the tenant's own agents.
    assert_eq!(store.create_agent(&agent(&a, "second"), 2).await.unwrap(), AgentCreation::Created);
    assert_eq!(store.create_agent(&agent(&a, "third"), 2).await.unwrap(), AgentCreation::QuotaReached);
    assert_eq!(store.create_agent(&agent(&b, "b1"), 2).await.unwrap(), AgentCreation::Created);
    assert!(store.delete_agent(&a, &ag.id).await.unwrap());
    assert!(store.conversation(&a, &ag.id, &a, "c1").await.unwrap().is_none(), "its conversations go with it");
}

async fn a_clients_billing_account_is_read_with_whether_it_can_pay(store: Arc<SqlStore>) {
    let saas = account(&store).await;
    let client = Client {
        id: ClientId::generate(),
        name: "SaaS app".into(),
        client_type: ClientType::Public,
        role: ClientRole::WhitelabelCustomer,
        origin: ClientOrigin::Manual,
        redirect_uris: vec!["https://saas.example/cb".into()],
        allowed_scopes: ScopeSet::parse_lenient("agents-all"),
        allowed_providers: None,
        domains: vec![],
        branding: None,
        secret: None,
        owner: None,
        created_at: 5,
        updated_at: 5,
    };
    let billed = ClientCapabilities { billing_account: Some(saas.clone()), ..Default::default() };
    assert!(store.insert_capable_client(&client, &billed, None, 10).await.unwrap());
    assert_eq!(store.capable_client(&client.id).await.unwrap().unwrap().1, billed);
    let usable = ClientBilling { account: saas.clone(), usable: true };
    assert_eq!(store.client_billing(&client.id).await.unwrap(), Some(usable.clone()));
    assert_eq!(store.client_billing(&ClientId::generate()).await.unwrap(), None, "an unknown client has none");
    // Cleared: none.
    assert!(store.update_capable_client(&client, &ClientCapabilities::default(), 6).await.unwrap());
    assert_eq!(store.client_billing(&client.id).await.unwrap(), None);
    // Set again, then the account is disabled: still named, but it cannot pay.
    assert!(store.update_capable_client(&client, &billed, 7).await.unwrap());
    store.disable_account(&saas, 8).await.unwrap();
    assert_eq!(
        store.client_billing(&client.id).await.unwrap(),
        Some(ClientBilling { usable: false, ..usable.clone() })
    );
    // A deleted client's billing account cannot pay either (nobody is charged instead).
    let other = account(&store).await;
    let c2 = Client { id: ClientId::generate(), ..client.clone() };
    let caps = ClientCapabilities { billing_account: Some(other.clone()), ..Default::default() };
    assert!(store.insert_capable_client(&c2, &caps, None, 10).await.unwrap());
    assert!(store.delete_client(&c2.id, 9).await.unwrap());
    assert_eq!(store.client_billing(&c2.id).await.unwrap(), Some(ClientBilling { account: other, usable: false }));
}
