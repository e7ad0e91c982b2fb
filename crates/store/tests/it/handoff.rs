//! The white-label handoff code store's contract on every backend: a code is taken once, even by
//! many takers at the same moment; it is found only by its digest; it belongs to its tenant; and
//! the purge removes it once expired.

use std::sync::Arc;

use bk_domain::account::Account;
use bk_domain::handoff::{HANDOFF_TTL_SECS, HandoffCode, HandoffIntent};
use bk_domain::ids::{AccountId, ClientId};
use bk_domain::ports::{AccountStore, HandoffCodeStore, Store, StoreError};
use bridgekeeper_store::SqlStore;

shared_store_tests!(handoff_code_is_taken_once_under_concurrency, handoff_code_belongs_to_its_tenant_and_expires);

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

fn code(account: &AccountId, hash: u8, created_at: i64) -> HandoffCode {
    HandoffCode {
        code_hash: vec![hash; 32],
        account_id: account.clone(),
        client_id: ClientId::from_string("cli_app"),
        intent: HandoffIntent::Connections,
        redirect_uri: "https://app.example/settings?tab=1".into(),
        created_at,
        expires_at: created_at + HANDOFF_TTL_SECS,
    }
}

async fn handoff_code_is_taken_once_under_concurrency(store: Arc<SqlStore>) {
    let a = account(&store).await;
    store.insert_handoff_code(&a, &code(&a, 7, 1000)).await.unwrap();
    let takers: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take_handoff_code(&[7; 32], 1001).await.unwrap() })
        })
        .collect();
    let mut taken = Vec::new();
    for t in takers {
        if let Some(c) = t.await.unwrap() {
            taken.push(c);
        }
    }
    assert_eq!(taken.len(), 1, "one taker of sixteen gets the code");
    let c = &taken[0];
    assert_eq!(c.account_id, a);
    assert_eq!(c.client_id.as_str(), "cli_app");
    assert_eq!(c.intent, HandoffIntent::Connections);
    assert_eq!(c.redirect_uri, "https://app.example/settings?tab=1");
    assert_eq!((c.created_at, c.expires_at), (1000, 1030));
    assert!(store.take_handoff_code(&[7; 32], 1002).await.unwrap().is_none(), "used");
    assert!(store.take_handoff_code(&[8; 32], 1002).await.unwrap().is_none(), "unknown");
}

async fn handoff_code_belongs_to_its_tenant_and_expires(store: Arc<SqlStore>) {
    let a = account(&store).await;
    let b = account(&store).await;
    let err = store.insert_handoff_code(&b, &code(&a, 1, 1000)).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    store.insert_handoff_code(&a, &code(&a, 2, 1000)).await.unwrap();
    store.insert_handoff_code(&a, &code(&a, 3, 5000)).await.unwrap();
    // The taker checks expiry (the row is still taken, so an expired code is never usable later).
    let late = store.take_handoff_code(&[2; 32], 1030).await.unwrap().unwrap();
    assert!(!late.is_current(1030));
    store.purge_expired(5000).await.unwrap();
    assert!(store.take_handoff_code(&[3; 32], 5001).await.unwrap().is_some(), "a current code survives the purge");
}
