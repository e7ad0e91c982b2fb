//! Wallet identities and Sign-In with Ethereum nonces on every backend: a nonce is spent once (of
//! concurrent uses, one), only before it expires, and only with what its sign-in does; an address
//! belongs to one account (whatever its case); the last way to sign in cannot be unlinked.

use std::sync::Arc;

use bk_domain::account::Account;
use bk_domain::ids::AccountId;
use bk_domain::passkey::StoredPasskey;
use bk_domain::ports::wallets::WalletStore;
use bk_domain::ports::{AccountStore, PasskeyStore, Store};
use bk_domain::siwe::Address;
use bk_domain::wallet::{StoredSiweNonce, WalletAction, WalletRedemption, WalletUnlink, new_wallet_account};
use bridgekeeper_store::SqlStore;

shared_store_tests!(
    a_siwe_nonce_is_spent_once_under_concurrency,
    a_refused_action_leaves_the_nonce_unspent,
    an_address_belongs_to_one_account,
    concurrent_sign_ups_of_one_address_create_one_account,
    the_last_sign_in_method_cannot_be_unlinked,
    deleting_an_account_frees_its_addresses,
);

const ADDR_A: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
const ADDR_B: &str = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359";

fn addr(text: &str) -> Address {
    Address::parse_checksummed(text).unwrap()
}

async fn password_account(store: &SqlStore) -> AccountId {
    let id = AccountId::generate();
    let a = Account::with_password(id.clone(), format!("{id}@example.com"), "$argon2id$x".into(), 1);
    store.create_account(&a).await.unwrap();
    id
}

async fn nonce(store: &SqlStore, n: u8, created_at: i64) -> Vec<u8> {
    let hash = vec![n; 32];
    let stored = StoredSiweNonce { nonce_hash: hash.clone(), created_at, expires_at: created_at + 600 };
    store.create_siwe_nonce(&stored).await.unwrap();
    hash
}

async fn a_siwe_nonce_is_spent_once_under_concurrency(store: Arc<SqlStore>) {
    let account = password_account(&store).await;
    let hash = nonce(&store, 1, 100).await;
    assert_eq!(store.siwe_nonce(&hash).await.unwrap().map(|n| n.created_at), Some(100), "peeking spends nothing");
    assert!(store.siwe_nonce(&hash).await.unwrap().is_some());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, hash, account) = (store.clone(), hash.clone(), account.clone());
        tasks.push(tokio::spawn(async move {
            let link = WalletAction::Link { account_id: account, address: addr(ADDR_A) };
            store.redeem_siwe_nonce(&hash, 101, &link).await.unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| **o == WalletRedemption::Done).count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == WalletRedemption::NonceSpent).count(), 7, "{outcomes:?}");
    assert!(store.siwe_nonce(&hash).await.unwrap().is_none(), "spent");
    assert_eq!(store.wallets_of(&account).await.unwrap().len(), 1);

    // An expired nonce cannot be spent, and the purge removes it.
    let old = nonce(&store, 2, 100).await;
    let sign_in = WalletAction::SignIn { account_id: account.clone(), address: addr(ADDR_A) };
    assert_eq!(store.redeem_siwe_nonce(&old, 700, &sign_in).await.unwrap(), WalletRedemption::NonceSpent);
    assert!(store.siwe_nonce(&old).await.unwrap().is_some_and(|n| n.is_expired(700)));
    assert_eq!(store.purge_expired(701).await.unwrap(), 1);
    assert!(store.siwe_nonce(&old).await.unwrap().is_none());
}

async fn a_refused_action_leaves_the_nonce_unspent(store: Arc<SqlStore>) {
    let (a, b) = (password_account(&store).await, password_account(&store).await);
    let first = nonce(&store, 3, 100).await;
    let link = |account: &AccountId| WalletAction::Link { account_id: account.clone(), address: addr(ADDR_A) };
    assert_eq!(store.redeem_siwe_nonce(&first, 101, &link(&a)).await.unwrap(), WalletRedemption::Done);
    let second = nonce(&store, 4, 100).await;
    assert_eq!(store.redeem_siwe_nonce(&second, 102, &link(&b)).await.unwrap(), WalletRedemption::AddressTaken);
    assert!(store.siwe_nonce(&second).await.unwrap().is_some(), "a refused link spends nothing");
    let sign_in_as_b = WalletAction::SignIn { account_id: b.clone(), address: addr(ADDR_A) };
    assert_eq!(store.redeem_siwe_nonce(&second, 102, &sign_in_as_b).await.unwrap(), WalletRedemption::IdentityGone);
    assert!(store.siwe_nonce(&second).await.unwrap().is_some());
    let sign_up =
        WalletAction::SignUp { account: new_wallet_account(AccountId::generate(), 102), address: addr(ADDR_A) };
    assert_eq!(store.redeem_siwe_nonce(&second, 102, &sign_up).await.unwrap(), WalletRedemption::AddressTaken);
    if let WalletAction::SignUp { account, .. } = &sign_up {
        assert!(store.account(&account.id).await.unwrap().is_none(), "no account was created");
    }
    // Linking again to the same account: nothing new, the nonce is spent, the use noted.
    assert_eq!(store.redeem_siwe_nonce(&second, 103, &link(&a)).await.unwrap(), WalletRedemption::AlreadyLinked);
    assert!(store.siwe_nonce(&second).await.unwrap().is_none());
    let sign_in = WalletAction::SignIn { account_id: a.clone(), address: addr(ADDR_A) };
    let third = nonce(&store, 5, 100).await;
    assert_eq!(store.redeem_siwe_nonce(&third, 104, &sign_in).await.unwrap(), WalletRedemption::Done);
    let identity = store.wallet(&addr(ADDR_A)).await.unwrap().unwrap();
    assert_eq!((identity.account_id, identity.created_at, identity.last_used_at), (a, 101, Some(104)));
}

async fn an_address_belongs_to_one_account(store: Arc<SqlStore>) {
    let a = password_account(&store).await;
    let lower = Address::parse_any_case(&ADDR_B.to_ascii_lowercase()).unwrap();
    let upper = Address::parse_any_case(&format!("0x{}", ADDR_B[2..].to_ascii_uppercase())).unwrap();
    let n = nonce(&store, 6, 100).await;
    let link = WalletAction::Link { account_id: a.clone(), address: upper };
    assert_eq!(store.redeem_siwe_nonce(&n, 101, &link).await.unwrap(), WalletRedemption::Done);
    // Whatever case it is written in, it is one address, stored in lower case.
    let found = store.wallet(&lower).await.unwrap().unwrap();
    assert_eq!((found.account_id.clone(), found.address), (a.clone(), addr(ADDR_B)));
    assert_eq!(found.address.checksummed(), ADDR_B);
    let b = password_account(&store).await;
    let n = nonce(&store, 7, 100).await;
    let steal = WalletAction::Link { account_id: b.clone(), address: lower };
    assert_eq!(store.redeem_siwe_nonce(&n, 101, &steal).await.unwrap(), WalletRedemption::AddressTaken);
    assert!(store.wallets_of(&b).await.unwrap().is_empty());
    assert_eq!(store.wallet(&lower).await.unwrap().unwrap().account_id, a);
    assert_eq!(store.unlink_wallet(&b, &lower).await.unwrap(), WalletUnlink::NotFound, "another account's address");
    assert!(store.wallet(&lower).await.unwrap().is_some());
}

async fn concurrent_sign_ups_of_one_address_create_one_account(store: Arc<SqlStore>) {
    let mut tasks = Vec::new();
    for i in 0..6u8 {
        let store = store.clone();
        let hash = nonce(&store, 20 + i, 100).await;
        tasks.push(tokio::spawn(async move {
            let account = new_wallet_account(AccountId::generate(), 101);
            let id = account.id.clone();
            let outcome = store
                .redeem_siwe_nonce(&hash, 101, &WalletAction::SignUp { account, address: addr(ADDR_A) })
                .await
                .unwrap();
            (id, outcome, hash)
        }));
    }
    let mut created = Vec::new();
    for t in tasks {
        let (id, outcome, hash) = t.await.unwrap();
        match outcome {
            WalletRedemption::Done => created.push(id),
            WalletRedemption::AddressTaken => {
                assert!(store.account(&id).await.unwrap().is_none(), "the loser's account is not kept");
                assert!(store.siwe_nonce(&hash).await.unwrap().is_some(), "nor its nonce spent");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "one account for the address");
    let owner = store.wallet(&addr(ADDR_A)).await.unwrap().unwrap().account_id;
    assert_eq!(owner, created[0]);
    let account = store.account(&owner).await.unwrap().unwrap();
    assert_eq!(account.password_hash, None);
    assert!(bk_domain::wallet::is_placeholder_email(&account.email));
}

async fn the_last_sign_in_method_cannot_be_unlinked(store: Arc<SqlStore>) {
    let id = AccountId::generate();
    let n = nonce(&store, 8, 100).await;
    let sign_up = WalletAction::SignUp { account: new_wallet_account(id.clone(), 100), address: addr(ADDR_A) };
    assert_eq!(store.redeem_siwe_nonce(&n, 100, &sign_up).await.unwrap(), WalletRedemption::Done);
    assert_eq!(store.unlink_wallet(&id, &addr(ADDR_A)).await.unwrap(), WalletUnlink::LastSignInMethod);
    // A second address: either may go, but not both (even at once).
    let n = nonce(&store, 9, 100).await;
    let link = WalletAction::Link { account_id: id.clone(), address: addr(ADDR_B) };
    assert_eq!(store.redeem_siwe_nonce(&n, 101, &link).await.unwrap(), WalletRedemption::Done);
    let (s1, s2, id1, id2) = (store.clone(), store.clone(), id.clone(), id.clone());
    let (r1, r2) = tokio::join!(
        tokio::spawn(async move { s1.unlink_wallet(&id1, &addr(ADDR_A)).await.unwrap() }),
        tokio::spawn(async move { s2.unlink_wallet(&id2, &addr(ADDR_B)).await.unwrap() }),
    );
    let mut outcomes = [r1.unwrap(), r2.unwrap()];
    outcomes.sort_by_key(|o| *o == WalletUnlink::Unlinked);
    assert_eq!(outcomes, [WalletUnlink::LastSignInMethod, WalletUnlink::Unlinked]);
    assert_eq!(store.wallets_of(&id).await.unwrap().len(), 1);
    // With a passkey, the last address may go.
    let passkey = StoredPasskey {
        credential_id: format!("cred-{id}"),
        account_id: id.clone(),
        name: "Laptop".into(),
        credential: "{}".into(),
        created_at: 1,
        last_used_at: None,
    };
    assert!(store.add_passkey(&passkey, 5).await.unwrap());
    let last = store.wallets_of(&id).await.unwrap()[0].address;
    assert_eq!(store.unlink_wallet(&id, &last).await.unwrap(), WalletUnlink::Unlinked);
    // A password account may unlink its only address.
    let p = password_account(&store).await;
    let n = nonce(&store, 10, 100).await;
    let link = WalletAction::Link { account_id: p.clone(), address: addr(ADDR_A) };
    assert_eq!(store.redeem_siwe_nonce(&n, 101, &link).await.unwrap(), WalletRedemption::Done);
    assert_eq!(store.unlink_wallet(&p, &addr(ADDR_A)).await.unwrap(), WalletUnlink::Unlinked);
    assert!(store.wallet(&addr(ADDR_A)).await.unwrap().is_none());
}

async fn deleting_an_account_frees_its_addresses(store: Arc<SqlStore>) {
    let a = password_account(&store).await;
    let n = nonce(&store, 11, 100).await;
    let link = WalletAction::Link { account_id: a.clone(), address: addr(ADDR_B) };
    assert_eq!(store.redeem_siwe_nonce(&n, 101, &link).await.unwrap(), WalletRedemption::Done);
    store.delete_account(&a, 200).await.unwrap().unwrap();
    assert!(store.wallet(&addr(ADDR_B)).await.unwrap().is_none(), "the address can sign up again");
}
