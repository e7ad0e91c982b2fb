//! Machine clients: a client's capabilities (grant types, keys, bound account) beside the client,
//! and the session a bound `client_credentials` client's tokens hang off, which ends when the
//! client changes so that it may no longer act for that account.

use std::sync::Arc;

use bk_domain::account::Account;
use bk_domain::client::{Client, ClientCapabilities, ClientKeys, ClientOrigin, ClientRole, ClientType, GrantType};
use bk_domain::grant::{Grant, GrantKind};
use bk_domain::ids::{AccountId, ClientId, SessionId};
use bk_domain::ports::{AccountStore, ClientStore, SessionStore};
use bk_domain::registration::{Registration, RegistrationMetadata};
use bk_domain::restrictions::Restrictions;
use bk_domain::scope::ScopeSet;
use bridgekeeper_store::SqlStore;

shared_store_tests!(
    capabilities_round_trip_and_default_to_the_code_flow,
    a_capable_client_counts_against_its_owners_quota,
    a_registration_is_inserted_with_its_capable_client,
    a_bound_machine_client_reuses_one_session,
    machine_sessions_end_when_the_binding_or_the_grant_goes,
    no_machine_session_opens_for_an_account_the_client_is_not_bound_to,
);

async fn account(store: &SqlStore, email: &str) -> AccountId {
    let a = Account {
        id: AccountId::generate(),
        email: email.into(),
        password_hash: None,
        created_at: 1,
        email_verified_at: None,
        disabled_at: None,
        deleted_at: None,
    };
    store.create_account(&a).await.unwrap();
    a.id
}

fn machine(owner: Option<AccountId>) -> Client {
    Client {
        id: ClientId::generate(),
        name: "nightly sync".into(),
        client_type: ClientType::Confidential,
        role: ClientRole::ThirdParty,
        origin: ClientOrigin::Manual,
        redirect_uris: vec![],
        allowed_scopes: ScopeSet::parse_lenient("universal-mcp-read"),
        allowed_providers: None,
        domains: vec![],
        branding: None,
        secret: None,
        owner,
        created_at: 5,
        updated_at: 5,
    }
}

fn bound_to(account: &AccountId) -> ClientCapabilities {
    ClientCapabilities {
        grant_types: Some(vec![GrantType::ClientCredentials]),
        keys: Some(ClientKeys::Jwks(
            serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc"}]}),
        )),
        bound_account: Some(account.clone()),
        billing_account: None,
    }
}

fn machine_grant(account: &AccountId, client: &ClientId, at: i64) -> Grant {
    Grant {
        id: SessionId::generate(),
        account_id: account.clone(),
        client_id: client.clone(),
        scopes: ScopeSet::parse_lenient("universal-mcp-read"),
        restrictions: Restrictions::unrestricted(),
        kind: GrantKind::OAuth,
        resource: "http://x/mcp".into(),
        auth_time: at,
        created_at: at,
        revoked_at: None,
        dpop_jkt: None,
    }
}

async fn capabilities_round_trip_and_default_to_the_code_flow(store: Arc<SqlStore>) {
    let acc = account(&store, "mc-round@example.com").await;
    // A client stored the old way has no recorded capabilities: the code flow only.
    let plain = machine(None);
    store.insert_client(&plain).await.unwrap();
    let (c, caps) = store.capable_client(&plain.id).await.unwrap().unwrap();
    assert_eq!(c.id, plain.id);
    assert_eq!(caps, ClientCapabilities::default());
    assert!(caps.allows(GrantType::AuthorizationCode) && !caps.allows(GrantType::ClientCredentials));

    let m = machine(None);
    assert!(store.insert_capable_client(&m, &bound_to(&acc), None, 1).await.unwrap());
    let (_, caps) = store.capable_client(&m.id).await.unwrap().unwrap();
    assert_eq!(caps, bound_to(&acc));
    let by_uri = ClientCapabilities {
        grant_types: Some(vec![GrantType::TokenExchange, GrantType::ClientCredentials]),
        keys: Some(ClientKeys::JwksUri("https://keys.example/jwks.json".into())),
        bound_account: None,
        billing_account: None,
    };
    assert!(store.set_client_capabilities(&m.id, &by_uri, 10).await.unwrap());
    assert_eq!(store.capable_client(&m.id).await.unwrap().unwrap().1, by_uri);
    assert!(store.delete_client(&m.id, 11).await.unwrap());
    assert!(store.capable_client(&m.id).await.unwrap().is_none(), "a deleted client has none");
    assert!(!store.set_client_capabilities(&m.id, &by_uri, 12).await.unwrap(), "nor can it get any");
    assert!(!store.update_capable_client(&m, &by_uri, 12).await.unwrap());
}

async fn a_capable_client_counts_against_its_owners_quota(store: Arc<SqlStore>) {
    let owner = account(&store, "mc-quota@example.com").await;
    let caps = ClientCapabilities { grant_types: Some(vec![GrantType::AuthorizationCode]), ..Default::default() };
    assert!(store.insert_capable_client(&machine(Some(owner.clone())), &caps, None, 2).await.unwrap());
    assert!(store.insert_capable_client(&machine(Some(owner.clone())), &caps, None, 2).await.unwrap());
    let third = machine(Some(owner.clone()));
    assert!(!store.insert_capable_client(&third, &caps, None, 2).await.unwrap(), "over the quota");
    assert!(store.capable_client(&third.id).await.unwrap().is_none(), "nothing stored");
    assert_eq!(store.list_clients(Some(&owner)).await.unwrap().len(), 2);
}

async fn a_registration_is_inserted_with_its_capable_client(store: Arc<SqlStore>) {
    let mut c = machine(None);
    c.origin = ClientOrigin::Dynamic;
    let reg = Registration {
        client_id: c.id.clone(),
        source: "127.0.0.1".into(),
        fingerprint: "f".into(),
        metadata: RegistrationMetadata {
            client_name: c.name.clone(),
            redirect_uris: vec!["https://a.example/cb".into()],
            grant_types: vec!["authorization_code".into()],
            response_types: vec!["code".into()],
            token_endpoint_auth_method: "private_key_jwt".into(),
            scope: "universal-mcp-read".into(),
            application_type: None,
            software_id: None,
            software_version: None,
        },
        token_hash: vec![7; 32],
        created_at: 5,
        updated_at: 5,
    };
    let caps = ClientCapabilities {
        grant_types: None,
        keys: Some(ClientKeys::JwksUri("https://keys.example/jwks.json".into())),
        bound_account: None,
        billing_account: None,
    };
    assert!(store.insert_capable_client(&c, &caps, Some(&reg), 0).await.unwrap());
    assert_eq!(
        store.registration(&c.id).await.unwrap().unwrap().metadata.token_endpoint_auth_method,
        "private_key_jwt"
    );
    assert_eq!(store.capable_client(&c.id).await.unwrap().unwrap().1, caps);
}

async fn a_bound_machine_client_reuses_one_session(store: Arc<SqlStore>) {
    let acc = account(&store, "mc-reuse@example.com").await;
    let m = machine(None);
    store.insert_capable_client(&m, &bound_to(&acc), None, 1).await.unwrap();
    let first = store.open_machine_grant(&machine_grant(&acc, &m.id, 20)).await.unwrap().unwrap();
    let again = store.open_machine_grant(&machine_grant(&acc, &m.id, 30)).await.unwrap().unwrap();
    assert_eq!(first.id, again.id, "the open session is reused");
    let status = store.session_status(&first.id).await.unwrap().unwrap();
    assert!(status.active);
    assert_eq!((status.account_id, status.client_id), (acc.clone(), m.id.clone()));
    // The person sees it among their apps, and may end it; the next request opens a new one.
    assert!(store.list_sessions(&acc).await.unwrap().iter().any(|s| s.grant.id == first.id));
    assert!(store.revoke_session(&first.id, bk_domain::grant::RevocationReason::RevokedByUser, 40).await.unwrap());
    let next = store.open_machine_grant(&machine_grant(&acc, &m.id, 50)).await.unwrap().unwrap();
    assert_ne!(next.id, first.id);
    // Deleting the client ends it, like every session of the client.
    assert!(store.delete_client(&m.id, 60).await.unwrap());
    assert!(!store.session_status(&next.id).await.unwrap().unwrap().active);
    assert!(store.open_machine_grant(&machine_grant(&acc, &m.id, 70)).await.unwrap().is_none(), "a deleted client");
}

async fn machine_sessions_end_when_the_binding_or_the_grant_goes(store: Arc<SqlStore>) {
    let alice = account(&store, "mc-alice@example.com").await;
    let bob = account(&store, "mc-bob@example.com").await;
    let m = machine(None);
    store.insert_capable_client(&m, &bound_to(&alice), None, 1).await.unwrap();
    let s1 = store.open_machine_grant(&machine_grant(&alice, &m.id, 20)).await.unwrap().unwrap();
    // Changing something else (the keys) keeps the session.
    let mut caps = bound_to(&alice);
    caps.keys = Some(ClientKeys::JwksUri("https://keys.example/jwks.json".into()));
    assert!(store.set_client_capabilities(&m.id, &caps, 25).await.unwrap());
    assert!(store.session_status(&s1.id).await.unwrap().unwrap().active, "same binding, same session");
    // Rebinding to bob ends alice's session.
    assert!(store.set_client_capabilities(&m.id, &bound_to(&bob), 30).await.unwrap());
    assert!(!store.session_status(&s1.id).await.unwrap().unwrap().active, "alice's session ended");
    let s2 = store.open_machine_grant(&machine_grant(&bob, &m.id, 40)).await.unwrap().unwrap();
    // Taking client_credentials away (through a full update) ends bob's.
    let mut renamed = m.clone();
    renamed.name = "renamed".into();
    let no_cc = ClientCapabilities { grant_types: Some(vec![GrantType::TokenExchange]), ..bound_to(&bob) };
    assert!(store.update_capable_client(&renamed, &no_cc, 50).await.unwrap());
    assert!(!store.session_status(&s2.id).await.unwrap().unwrap().active, "bob's session ended");
    assert_eq!(store.client(&m.id).await.unwrap().unwrap().name, "renamed");
    // … and so does unbinding.
    assert!(store.set_client_capabilities(&m.id, &bound_to(&bob), 60).await.unwrap());
    let s3 = store.open_machine_grant(&machine_grant(&bob, &m.id, 70)).await.unwrap().unwrap();
    let unbound = ClientCapabilities { bound_account: None, ..bound_to(&bob) };
    assert!(store.set_client_capabilities(&m.id, &unbound, 80).await.unwrap());
    assert!(!store.session_status(&s3.id).await.unwrap().unwrap().active, "unbound: no machine session lives");
}

async fn no_machine_session_opens_for_an_account_the_client_is_not_bound_to(store: Arc<SqlStore>) {
    let alice = account(&store, "mc-not-a@example.com").await;
    let bob = account(&store, "mc-not-b@example.com").await;
    let m = machine(None);
    store.insert_capable_client(&m, &bound_to(&alice), None, 1).await.unwrap();
    assert!(store.open_machine_grant(&machine_grant(&bob, &m.id, 20)).await.unwrap().is_none());
    let not_allowed = ClientCapabilities { grant_types: Some(vec![GrantType::TokenExchange]), ..bound_to(&alice) };
    store.set_client_capabilities(&m.id, &not_allowed, 30).await.unwrap();
    assert!(store.open_machine_grant(&machine_grant(&alice, &m.id, 40)).await.unwrap().is_none());
    let plain = machine(None);
    store.insert_client(&plain).await.unwrap();
    assert!(store.open_machine_grant(&machine_grant(&alice, &plain.id, 50)).await.unwrap().is_none());
}
