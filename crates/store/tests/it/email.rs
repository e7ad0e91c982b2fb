//! Emailed links and the account fields they change, on every backend: a link is used once even by
//! many at the same moment, only for its purpose, only before it expires; voiding ends the others;
//! verifying proves only the address the link was sent to; a password can be replaced.

use std::sync::Arc;

use bk_domain::account::Account;
use bk_domain::email_token::{EmailPurpose, StoredEmailToken};
use bk_domain::ids::AccountId;
use bk_domain::ports::{AccountStore, EmailTokenStore, Store};
use bridgekeeper_store::SqlStore;

shared_store_tests!(
    an_emailed_link_is_used_once_under_concurrency,
    an_emailed_link_keeps_to_its_purpose_and_lifetime,
    verifying_proves_only_the_address_the_link_was_sent_to,
    an_address_change_link_moves_the_account_once_and_never_onto_a_taken_address,
);

async fn account(store: &SqlStore) -> Account {
    let id = AccountId::generate();
    let a = Account {
        id: id.clone(),
        email: format!("{id}@example.com"),
        password_hash: Some("$argon2id$old".into()),
        created_at: 1,
        email_verified_at: None,
        disabled_at: None,
        deleted_at: None,
    };
    store.create_account(&a).await.unwrap();
    a
}

fn link(a: &Account, hash: u8, purpose: EmailPurpose, now: i64) -> StoredEmailToken {
    StoredEmailToken::new(vec![hash; 32], a.id.clone(), purpose, a.email.clone(), now)
}

async fn an_emailed_link_is_used_once_under_concurrency(store: Arc<SqlStore>) {
    let a = account(&store).await;
    store.create_email_token(&link(&a, 1, EmailPurpose::ResetPassword, 1_000)).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.use_email_token(&[1; 32], EmailPurpose::ResetPassword, 1_001).await.unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        if let Some(used) = t.await.unwrap() {
            assert_eq!(used.account_id, a.id);
            assert_eq!(used.email, a.email);
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one use of one link");
    let stored = store.email_token(&[1; 32]).await.unwrap().expect("still there, marked used");
    assert_eq!(stored.used_at, Some(1_001));
    assert!(store.use_email_token(&[1; 32], EmailPurpose::ResetPassword, 1_002).await.unwrap().is_none(), "replay");
}

async fn an_emailed_link_keeps_to_its_purpose_and_lifetime(store: Arc<SqlStore>) {
    let a = account(&store).await;
    let reset = link(&a, 2, EmailPurpose::ResetPassword, 1_000);
    store.create_email_token(&reset).await.unwrap();
    assert!(
        store.use_email_token(&[2; 32], EmailPurpose::VerifyEmail, 1_001).await.unwrap().is_none(),
        "a reset link does not verify an address"
    );
    assert!(
        store.use_email_token(&[2; 32], EmailPurpose::ResetPassword, reset.expires_at).await.unwrap().is_none(),
        "expired"
    );
    assert!(store.use_email_token(&[9; 32], EmailPurpose::ResetPassword, 1_001).await.unwrap().is_none(), "unknown");
    // Voiding: every unused link of that purpose of that account, and no other.
    store.create_email_token(&link(&a, 3, EmailPurpose::ResetPassword, 1_000)).await.unwrap();
    store.create_email_token(&link(&a, 4, EmailPurpose::VerifyEmail, 1_000)).await.unwrap();
    let other = account(&store).await;
    store.create_email_token(&link(&other, 5, EmailPurpose::ResetPassword, 1_000)).await.unwrap();
    assert_eq!(store.void_email_tokens(&a.id, EmailPurpose::ResetPassword, 1_010).await.unwrap(), 2);
    assert!(store.use_email_token(&[3; 32], EmailPurpose::ResetPassword, 1_011).await.unwrap().is_none());
    assert!(store.use_email_token(&[4; 32], EmailPurpose::VerifyEmail, 1_011).await.unwrap().is_some());
    assert!(store.use_email_token(&[5; 32], EmailPurpose::ResetPassword, 1_011).await.unwrap().is_some());
    // The purge removes expired links only.
    assert_eq!(store.purge_expired(reset.expires_at + 1).await.unwrap(), 3, "the three reset links");
    assert!(store.email_token(&[2; 32]).await.unwrap().is_none());
    assert!(store.email_token(&[4; 32]).await.unwrap().is_some(), "a verification link lives a day");
}

async fn verifying_proves_only_the_address_the_link_was_sent_to(store: Arc<SqlStore>) {
    let a = account(&store).await;
    assert!(!store.mark_email_verified(&a.id, "someone-else@example.com", 5).await.unwrap());
    assert_eq!(store.account(&a.id).await.unwrap().unwrap().email_verified_at, None);
    assert!(store.mark_email_verified(&a.id, &a.email, 5).await.unwrap());
    let read = store.account(&a.id).await.unwrap().unwrap();
    assert_eq!(read.email_verified_at, Some(5));
    assert!(read.email_verified());
    assert!(!store.mark_email_verified(&a.id, &a.email, 6).await.unwrap(), "already verified: unchanged");
    assert_eq!(store.account_by_email(&a.email).await.unwrap().unwrap().email_verified_at, Some(5));
    assert!(store.set_password(&a.id, "$argon2id$new").await.unwrap());
    assert_eq!(store.account(&a.id).await.unwrap().unwrap().password_hash.as_deref(), Some("$argon2id$new"));
    assert!(!store.set_password(&AccountId::generate(), "$argon2id$x").await.unwrap());
}

async fn an_address_change_link_moves_the_account_once_and_never_onto_a_taken_address(store: Arc<SqlStore>) {
    use bk_domain::email_token::EmailChange;
    let a = account(&store).await;
    let new = format!("new-{}", a.email);
    let change = StoredEmailToken::new(vec![20; 32], a.id.clone(), EmailPurpose::ChangeEmail, new.clone(), 1_000);
    store.create_email_token(&change).await.unwrap();
    // Not through the other purposes' door.
    assert!(store.use_email_token(&[20; 32], EmailPurpose::VerifyEmail, 1_001).await.unwrap().is_none());
    let done = store.use_email_change(&[20; 32], 1_002).await.unwrap();
    assert_eq!(
        done,
        EmailChange::Changed { account_id: a.id.clone(), old_email: a.email.clone(), new_email: new.clone() }
    );
    let moved = store.account(&a.id).await.unwrap().unwrap();
    assert_eq!((moved.email.as_str(), moved.email_verified_at), (new.as_str(), Some(1_002)));
    assert!(store.account_by_email(&a.email).await.unwrap().is_none(), "the old address is free");
    assert_eq!(store.use_email_change(&[20; 32], 1_003).await.unwrap(), EmailChange::Dead, "once");
    // A reset link is not an address change.
    store.create_email_token(&link(&moved, 21, EmailPurpose::ResetPassword, 1_000)).await.unwrap();
    assert_eq!(store.use_email_change(&[21; 32], 1_003).await.unwrap(), EmailChange::Dead);
    // Taken since the link was sent: nothing moves, and the link is spent.
    let b = account(&store).await;
    let to_taken = StoredEmailToken::new(vec![22; 32], a.id.clone(), EmailPurpose::ChangeEmail, b.email.clone(), 1_000);
    store.create_email_token(&to_taken).await.unwrap();
    assert_eq!(
        store.use_email_change(&[22; 32], 1_004).await.unwrap(),
        EmailChange::Taken { account_id: a.id.clone(), new_email: b.email.clone() }
    );
    assert_eq!(store.account(&a.id).await.unwrap().unwrap().email, new, "unchanged");
    assert!(store.email_token(&[22; 32]).await.unwrap().unwrap().used_at.is_some());
    // Expired.
    let late =
        StoredEmailToken::new(vec![23; 32], a.id.clone(), EmailPurpose::ChangeEmail, "late@example.com".into(), 1_000);
    store.create_email_token(&late).await.unwrap();
    assert_eq!(store.use_email_change(&[23; 32], late.expires_at).await.unwrap(), EmailChange::Dead);
}
