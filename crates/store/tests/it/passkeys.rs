//! The passkey store on every backend: a credential id belongs to one account, an account holds
//! at most its quota, uses and deletions are the account's own, and a ceremony is taken once,
//! only for its purpose, only before it expires.

use std::sync::Arc;

use bk_domain::account::Account;
use bk_domain::ids::AccountId;
use bk_domain::passkey::{CeremonyPurpose, StoredCeremony, StoredPasskey};
use bk_domain::ports::{AccountStore, PasskeyRemoval, PasskeyStore, Store, StoreError};
use bridgekeeper_store::SqlStore;

shared_store_tests!(
    passkeys_belong_to_one_account_within_a_quota,
    a_ceremony_is_taken_once_for_its_purpose,
    the_last_way_to_sign_in_is_kept
);

async fn the_last_way_to_sign_in_is_kept(store: Arc<SqlStore>) {
    // An account without a password (made by a wallet, whose identity was then unlinked).
    let id = AccountId::generate();
    store.create_account(&bk_domain::wallet::new_wallet_account(id.clone(), 1)).await.unwrap();
    assert!(store.add_passkey(&passkey(&id, "only-1"), 5).await.unwrap());
    assert!(store.add_passkey(&passkey(&id, "only-2"), 5).await.unwrap());
    // Two removals at once: one goes, the last one stays.
    let (a, b) = tokio::join!(store.delete_passkey(&id, "only-1"), store.delete_passkey(&id, "only-2"));
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| *o == PasskeyRemoval::Removed);
    assert_eq!(outcomes, [PasskeyRemoval::LastSignInMethod, PasskeyRemoval::Removed]);
    assert_eq!(store.passkeys_of(&id).await.unwrap().len(), 1);
}

async fn account(store: &SqlStore) -> AccountId {
    let id = AccountId::generate();
    let a = Account::with_password(id.clone(), format!("{id}@example.com"), "$argon2id$x".into(), 1);
    store.create_account(&a).await.unwrap();
    id
}

fn passkey(account: &AccountId, id: &str) -> StoredPasskey {
    StoredPasskey {
        credential_id: id.into(),
        account_id: account.clone(),
        name: "Laptop".into(),
        credential: "{}".into(),
        created_at: 10,
        last_used_at: None,
    }
}

async fn passkeys_belong_to_one_account_within_a_quota(store: Arc<SqlStore>) {
    let (a, b) = (account(&store).await, account(&store).await);
    assert!(store.add_passkey(&passkey(&a, "cred-1"), 2).await.unwrap());
    assert!(
        matches!(store.add_passkey(&passkey(&b, "cred-1"), 2).await, Err(StoreError::Conflict(_))),
        "one account per credential"
    );
    assert!(store.add_passkey(&passkey(&a, "cred-2"), 2).await.unwrap());
    assert!(!store.add_passkey(&passkey(&a, "cred-3"), 2).await.unwrap(), "quota");
    assert_eq!(store.passkeys_of(&a).await.unwrap().len(), 2);
    assert!(store.passkeys_of(&b).await.unwrap().is_empty());
    assert!(!store.passkey_used(&b, "cred-1", "{\"x\":1}", 20).await.unwrap(), "another account's passkey");
    assert!(store.passkey_used(&a, "cred-1", "{\"x\":1}", 20).await.unwrap());
    let used = store.passkey("cred-1").await.unwrap().unwrap();
    assert_eq!((used.credential.as_str(), used.last_used_at), ("{\"x\":1}", Some(20)));
    assert_eq!(store.delete_passkey(&b, "cred-1").await.unwrap(), PasskeyRemoval::NotFound, "another account's");
    assert_eq!(store.delete_passkey(&a, "cred-1").await.unwrap(), PasskeyRemoval::Removed);
    assert!(store.passkey("cred-1").await.unwrap().is_none());
}

async fn a_ceremony_is_taken_once_for_its_purpose(store: Arc<SqlStore>) {
    let a = account(&store).await;
    let c = StoredCeremony {
        id_hash: vec![1; 32],
        account_id: Some(a.clone()),
        purpose: CeremonyPurpose::Register,
        state: "{\"challenge\":1}".into(),
        created_at: 100,
        expires_at: 400,
    };
    store.create_ceremony(&c).await.unwrap();
    assert!(store.take_ceremony(&[1; 32], CeremonyPurpose::SignIn, 101).await.unwrap().is_none(), "another purpose");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.take_ceremony(&[1; 32], CeremonyPurpose::Register, 101).await.unwrap()
        }));
    }
    let mut taken = Vec::new();
    for t in tasks {
        taken.extend(t.await.unwrap());
    }
    assert_eq!(taken, vec![c.clone()], "taken once, whole");
    let anonymous = StoredCeremony { id_hash: vec![2; 32], account_id: None, purpose: CeremonyPurpose::SignIn, ..c };
    store.create_ceremony(&anonymous).await.unwrap();
    assert!(store.take_ceremony(&[2; 32], CeremonyPurpose::SignIn, 400).await.unwrap().is_none(), "expired");
    assert_eq!(store.purge_expired(401).await.unwrap(), 1, "the purge removes it");
}
