//! Upstream OpenID Connect identities and their sign-in states on every backend: a state is taken
//! once (of concurrent takes, one) and not after it expires; an (issuer, subject) belongs to one
//! account (concurrent sign-ups of one identity create one account; an email already held
//! creates nothing); linking never moves an identity; the last way to sign in cannot be unlinked,
//! and an identity counts as a way in for the wallet and passkey rules; deleting an account frees
//! its identities.

use std::sync::Arc;

use bk_domain::account::Account;
use bk_domain::ids::AccountId;
use bk_domain::ports::AccountStore;
use bk_domain::ports::idp_identities::IdpIdentityStore;
use bk_domain::ports::wallets::WalletStore;
use bk_domain::siwe::Address;
use bk_domain::upstream_identity::{IdpIdentity, IdpLink, IdpLoginState, IdpSignUp, IdpUnlink, new_idp_account};
use bk_domain::wallet::{StoredSiweNonce, WalletAction, WalletRedemption, WalletUnlink, new_wallet_account};
use bridgekeeper_store::SqlStore;

shared_store_tests!(
    a_login_state_is_taken_once_under_concurrency_and_never_after_expiry,
    concurrent_sign_ups_of_one_identity_create_one_account,
    a_held_email_creates_nothing,
    linking_never_moves_an_identity,
    the_last_sign_in_method_cannot_be_unlinked_and_identities_count_for_wallets,
    deleting_an_account_frees_its_identities,
);

const ISS: &str = "https://idp.example";

fn state(n: u8, expires_at: i64) -> IdpLoginState {
    IdpLoginState {
        state_hash: vec![n; 32],
        idp_id: "acme".into(),
        browser_hash: vec![7; 32],
        next: "/consent?x=1".into(),
        link_account: None,
        created_at: expires_at - 600,
        expires_at,
    }
}

async fn password_account(store: &SqlStore) -> AccountId {
    let id = AccountId::generate();
    let a = Account::with_password(id.clone(), format!("{id}@example.com"), "$argon2id$x".into(), 1);
    store.create_account(&a).await.unwrap();
    id
}

fn identity(sub: &str, account: &AccountId) -> IdpIdentity {
    IdpIdentity::new("acme", ISS, sub, account.clone(), Some("p@acme.example".into()), 100)
}

async fn a_login_state_is_taken_once_under_concurrency_and_never_after_expiry(store: Arc<SqlStore>) {
    let s = state(1, 1_000);
    store.create_idp_login_state(&s).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.take_idp_login_state(&[1; 32], 500).await.unwrap() }));
    }
    let mut taken = Vec::new();
    for t in tasks {
        if let Some(s) = t.await.unwrap() {
            taken.push(s);
        }
    }
    assert_eq!(taken, vec![s], "one take gets it, as stored");
    let mut linking = state(2, 1_000);
    linking.link_account = Some(AccountId::from_string("acc_x"));
    store.create_idp_login_state(&linking).await.unwrap();
    assert_eq!(store.take_idp_login_state(&[2; 32], 999).await.unwrap(), Some(linking));
    store.create_idp_login_state(&state(3, 1_000)).await.unwrap();
    assert_eq!(store.take_idp_login_state(&[3; 32], 1_000).await.unwrap(), None, "expired");
    assert_eq!(store.take_idp_login_state(&[3; 32], 10).await.unwrap(), None, "and spent by that take");
}

async fn concurrent_sign_ups_of_one_identity_create_one_account(store: Arc<SqlStore>) {
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = AccountId::generate();
            let account = new_idp_account(id.clone(), format!("racer{i}@acme.example"), 100);
            let outcome = store.sign_up_with_idp(&account, &identity("sub-race", &id)).await.unwrap();
            (id, outcome)
        }));
    }
    let mut created = Vec::new();
    for t in tasks {
        let (id, outcome) = t.await.unwrap();
        match outcome {
            IdpSignUp::Created => created.push(id),
            IdpSignUp::IdentityTaken => {
                assert!(store.account(&id).await.unwrap().is_none(), "the loser's account is not kept")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created.len(), 1);
    let held = store.idp_identity(ISS, "sub-race").await.unwrap().unwrap();
    assert_eq!(held.account_id, created[0]);
    let account = store.account(&created[0]).await.unwrap().unwrap();
    assert_eq!((account.password_hash.as_deref(), account.email_verified()), (None, true));
    assert_eq!(store.idp_identities_of(&created[0]).await.unwrap(), vec![held]);
}

async fn a_held_email_creates_nothing(store: Arc<SqlStore>) {
    let existing = password_account(&store).await;
    let email = format!("{existing}@example.com");
    let id = AccountId::generate();
    let outcome =
        store.sign_up_with_idp(&new_idp_account(id.clone(), email, 100), &identity("sub-e", &id)).await.unwrap();
    assert_eq!(outcome, IdpSignUp::EmailTaken);
    assert!(store.account(&id).await.unwrap().is_none());
    assert!(store.idp_identity(ISS, "sub-e").await.unwrap().is_none(), "not linked to the holder either");
    assert!(store.idp_identities_of(&existing).await.unwrap().is_empty());
}

async fn linking_never_moves_an_identity(store: Arc<SqlStore>) {
    let a = password_account(&store).await;
    let b = password_account(&store).await;
    assert_eq!(store.link_idp_identity(&identity("sub-l", &a), 100).await.unwrap(), IdpLink::Linked);
    assert_eq!(store.link_idp_identity(&identity("sub-l", &a), 101).await.unwrap(), IdpLink::AlreadyLinked);
    assert_eq!(store.link_idp_identity(&identity("sub-l", &b), 102).await.unwrap(), IdpLink::HeldByAnother);
    assert_eq!(store.idp_identity(ISS, "sub-l").await.unwrap().unwrap().account_id, a);
    assert!(store.idp_identities_of(&b).await.unwrap().is_empty());
    // The same subject at another issuer is another identity.
    let other = IdpIdentity::new("other", "https://other.example", "sub-l", b.clone(), None, 100);
    assert_eq!(store.link_idp_identity(&other, 103).await.unwrap(), IdpLink::Linked);
}

async fn the_last_sign_in_method_cannot_be_unlinked_and_identities_count_for_wallets(store: Arc<SqlStore>) {
    let id = AccountId::generate();
    let first = identity("sub-only", &id);
    let account = new_idp_account(id.clone(), "only@acme.example".into(), 100);
    assert_eq!(store.sign_up_with_idp(&account, &first).await.unwrap(), IdpSignUp::Created);
    let (outcome, _) = store.unlink_idp_identity(&id, &first.id).await.unwrap();
    assert_eq!(outcome, IdpUnlink::LastSignInMethod);
    // Another account's handle is answered like an unknown one.
    let other = password_account(&store).await;
    assert_eq!(store.unlink_idp_identity(&other, &first.id).await.unwrap().0, IdpUnlink::NotFound);
    // Two identities: either may go, not both (even at once).
    let second = identity("sub-two", &id);
    assert_eq!(store.link_idp_identity(&second, 101).await.unwrap(), IdpLink::Linked);
    let (s1, s2, a1, a2, i1, i2) =
        (store.clone(), store.clone(), id.clone(), id.clone(), first.id.clone(), second.id.clone());
    let (r1, r2) = tokio::join!(
        tokio::spawn(async move { s1.unlink_idp_identity(&a1, &i1).await.unwrap().0 }),
        tokio::spawn(async move { s2.unlink_idp_identity(&a2, &i2).await.unwrap().0 }),
    );
    let mut outcomes = [r1.unwrap(), r2.unwrap()];
    outcomes.sort_by_key(|o| *o == IdpUnlink::Unlinked);
    assert_eq!(outcomes, [IdpUnlink::LastSignInMethod, IdpUnlink::Unlinked]);
    assert_eq!(store.idp_identities_of(&id).await.unwrap().len(), 1);

    // A wallet account with a linked identity may remove its only address (the identity signs in).
    let w = AccountId::generate();
    let address = Address::parse_checksummed("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").unwrap();
    let nonce = StoredSiweNonce { nonce_hash: vec![42; 32], created_at: 100, expires_at: 700 };
    store.create_siwe_nonce(&nonce).await.unwrap();
    let sign_up = WalletAction::SignUp { account: new_wallet_account(w.clone(), 100), address };
    assert_eq!(store.redeem_siwe_nonce(&[42; 32], 100, &sign_up).await.unwrap(), WalletRedemption::Done);
    assert_eq!(store.unlink_wallet(&w, &address).await.unwrap(), WalletUnlink::LastSignInMethod);
    assert_eq!(store.link_idp_identity(&identity("sub-w", &w), 101).await.unwrap(), IdpLink::Linked);
    assert_eq!(store.unlink_wallet(&w, &address).await.unwrap(), WalletUnlink::Unlinked);
}

async fn deleting_an_account_frees_its_identities(store: Arc<SqlStore>) {
    let a = password_account(&store).await;
    assert_eq!(store.link_idp_identity(&identity("sub-d", &a), 100).await.unwrap(), IdpLink::Linked);
    store.delete_account(&a, 200).await.unwrap().unwrap();
    assert!(store.idp_identity(ISS, "sub-d").await.unwrap().is_none(), "the identity can sign up again");
}
