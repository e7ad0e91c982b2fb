//! The second-factor store on every backend: a TOTP step is accepted once and never an earlier
//! one (no replay within the window), a recovery code works once even when used twice at the same
//! instant, enabling twice changes nothing, disabling removes both.

use std::sync::Arc;

use bk_domain::account::Account;
use bk_domain::ids::AccountId;
use bk_domain::ports::{AccountStore, SecondFactorStore, StoredTotp};
use bridgekeeper_store::SqlStore;

shared_store_tests!(
    a_totp_step_is_accepted_once_and_never_an_earlier_one,
    a_recovery_code_works_once_under_concurrency,
    enabling_is_once_and_disabling_removes_everything,
);

async fn account(store: &SqlStore) -> AccountId {
    let id = AccountId::generate();
    let mut a = Account::with_password(id.clone(), format!("{id}@example.com"), "$argon2id$x".into(), 1);
    a.email_verified_at = None;
    store.create_account(&a).await.unwrap();
    id
}

fn totp(account: &AccountId, last_step: i64) -> StoredTotp {
    StoredTotp { account_id: account.clone(), sealed_secret: vec![7; 48], created_at: 1, last_step }
}

async fn a_totp_step_is_accepted_once_and_never_an_earlier_one(store: Arc<SqlStore>) {
    let a = account(&store).await;
    assert!(store.enable_totp(&totp(&a, 100), &[]).await.unwrap());
    assert!(!store.use_totp_step(&a, 100).await.unwrap(), "the enrolment's own step");
    assert!(!store.use_totp_step(&a, 99).await.unwrap(), "an earlier step");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, a) = (store.clone(), a.clone());
        tasks.push(tokio::spawn(async move { store.use_totp_step(&a, 101).await.unwrap() }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1, "one use of one code");
    assert!(!store.use_totp_step(&a, 101).await.unwrap(), "replay");
    assert!(store.use_totp_step(&a, 103).await.unwrap());
    assert!(!store.use_totp_step(&a, 102).await.unwrap(), "a step before one accepted");
    assert_eq!(store.totp(&a).await.unwrap().unwrap().last_step, 103);
    let other = account(&store).await;
    assert!(!store.use_totp_step(&other, 500).await.unwrap(), "no authenticator");
}

async fn a_recovery_code_works_once_under_concurrency(store: Arc<SqlStore>) {
    let a = account(&store).await;
    let codes: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 32]).collect();
    assert!(store.enable_totp(&totp(&a, 0), &codes).await.unwrap());
    assert_eq!(store.recovery_codes_left(&a).await.unwrap(), 10);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, a) = (store.clone(), a.clone());
        tasks.push(tokio::spawn(async move { store.use_recovery_code(&a, &[3; 32], 5).await.unwrap() }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
    assert_eq!(store.recovery_codes_left(&a).await.unwrap(), 9);
    assert!(!store.use_recovery_code(&a, &[3; 32], 6).await.unwrap(), "used");
    assert!(!store.use_recovery_code(&a, &[99; 32], 6).await.unwrap(), "unknown");
    let other = account(&store).await;
    assert!(!store.use_recovery_code(&other, &[4; 32], 6).await.unwrap(), "another account's code");
}

async fn enabling_is_once_and_disabling_removes_everything(store: Arc<SqlStore>) {
    let a = account(&store).await;
    assert!(store.enable_totp(&totp(&a, 0), &[vec![1; 32]]).await.unwrap());
    assert!(!store.enable_totp(&totp(&a, 0), &[vec![2; 32], vec![3; 32]]).await.unwrap(), "already enabled");
    assert_eq!(store.recovery_codes_left(&a).await.unwrap(), 1, "the second enable changed nothing");
    assert!(store.disable_totp(&a).await.unwrap());
    assert!(store.totp(&a).await.unwrap().is_none());
    assert_eq!(store.recovery_codes_left(&a).await.unwrap(), 0);
    assert!(!store.disable_totp(&a).await.unwrap());
    assert!(store.enable_totp(&totp(&a, 0), &[vec![5; 32]]).await.unwrap(), "enrolled again");
}
