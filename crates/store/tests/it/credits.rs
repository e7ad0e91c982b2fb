//! The credits ledger's contract on every backend: the signup grant once per account; many
//! concurrent reservations never take the balance below zero; a settlement charges what was used
//! and gives back the rest, never below zero even when the upstream used more than was held; a
//! release gives the whole hold back; holds a dead request left are given back once stale; grants
//! name their account; each account lists only its own rows, newest first.

use std::sync::Arc;

use bk_domain::account::Account;
use bk_domain::credits::{CompletionUsage, CreditKind};
use bk_domain::ids::AccountId;
use bk_domain::ports::{AccountStore, CreditStore, Reservation};
use bridgekeeper_store::SqlStore;

shared_store_tests!(
    signup_grant_is_given_once_even_to_concurrent_first_uses,
    concurrent_reservations_never_overdraw,
    settlement_charges_use_and_never_goes_below_zero,
    stale_holds_are_given_back_and_releases_return_the_hold,
    grants_and_listings_stay_within_their_account,
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

fn usage(cost: i64) -> CompletionUsage {
    CompletionUsage { model: "m".into(), prompt_tokens: 3, completion_tokens: 4, cost }
}

fn held(r: Reservation) -> String {
    match r {
        Reservation::Held { hold_id, .. } => hold_id,
        other => panic!("not held: {other:?}"),
    }
}

async fn signup_grant_is_given_once_even_to_concurrent_first_uses(store: Arc<SqlStore>) {
    let a = account(&store).await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (store, a) = (store.clone(), a.clone());
            tokio::spawn(async move { store.credit_balance(&a, 500, 1_000).await.unwrap() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 500);
    }
    // A later, larger grant setting does not top the account up again.
    assert_eq!(store.credit_balance(&a, 9_000, 2_000).await.unwrap(), 500);
    let rows = store.credit_transactions(&a, None, 100).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].kind, CreditKind::SignupGrant);
    assert_eq!((rows[0].amount, rows[0].balance_after), (500, 500));
}

async fn concurrent_reservations_never_overdraw(store: Arc<SqlStore>) {
    let a = account(&store).await;
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (store, a) = (store.clone(), a.clone());
            tokio::spawn(async move { store.reserve_credits(&a, 7, 100, 1_000, 0).await.unwrap() })
        })
        .collect();
    let mut holds = 0;
    for t in tasks {
        match t.await.unwrap() {
            Reservation::Held { balance_after, .. } => {
                assert!(balance_after >= 0);
                holds += 1;
            }
            Reservation::Insufficient { balance } => assert!(balance < 7),
        }
    }
    assert_eq!(holds, 14, "100 credits hold 14 × 7");
    assert_eq!(store.credit_balance(&a, 100, 1_000).await.unwrap(), 2);
}

async fn settlement_charges_use_and_never_goes_below_zero(store: Arc<SqlStore>) {
    let a = account(&store).await;
    let h = held(store.reserve_credits(&a, 30, 100, 1_000, 0).await.unwrap());
    let s = store.settle_credits(&a, &h, &usage(12), 1_001).await.unwrap();
    assert_eq!((s.charged, s.balance), (12, 88));
    // The same hold settled twice charges from the balance the second time (no hold to give back):
    // never twice the refund.
    let s = store.settle_credits(&a, &h, &usage(1), 1_002).await.unwrap();
    assert_eq!((s.charged, s.balance), (1, 87));
    // An upstream that used more than was held: charged what the hold and the balance cover, no more.
    let h = held(store.reserve_credits(&a, 80, 100, 1_003, 0).await.unwrap());
    let s = store.settle_credits(&a, &h, &usage(1_000), 1_004).await.unwrap();
    assert_eq!((s.charged, s.balance), (87, 0));
    let rows = store.credit_transactions(&a, None, 100).await.unwrap();
    assert_eq!(rows[0].amount, -87);
    assert_eq!(rows[0].balance_after, 0);
    assert!(rows[0].note.as_deref().unwrap().contains("913"), "{:?}", rows[0].note);
    assert_eq!(rows[0].prompt_tokens, Some(3));
    assert_eq!(rows.iter().map(|r| r.amount).sum::<i64>(), 0, "the ledger sums to the balance");
    assert!(matches!(
        store.reserve_credits(&a, 1, 100, 1_005, 0).await.unwrap(),
        Reservation::Insufficient { balance: 0 }
    ));
}

async fn stale_holds_are_given_back_and_releases_return_the_hold(store: Arc<SqlStore>) {
    let a = account(&store).await;
    let h = held(store.reserve_credits(&a, 40, 100, 1_000, 0).await.unwrap());
    assert_eq!(store.release_credits(&a, &h, 1_001).await.unwrap(), 100);
    // Released twice: nothing more comes back.
    assert_eq!(store.release_credits(&a, &h, 1_002).await.unwrap(), 100);
    // A hold left behind (its request died) is given back by a later reservation once stale …
    held(store.reserve_credits(&a, 90, 100, 2_000, 0).await.unwrap());
    assert!(matches!(
        store.reserve_credits(&a, 50, 100, 3_000, 1_000).await.unwrap(),
        Reservation::Insufficient { balance: 10 }
    ));
    let h = held(store.reserve_credits(&a, 50, 100, 9_000, 5_000).await.unwrap());
    assert_eq!(store.release_credits(&a, &h, 9_001).await.unwrap(), 100);
    // … and no ledger row was written for holds or releases.
    assert_eq!(store.credit_transactions(&a, None, 100).await.unwrap().len(), 1);
}

async fn grants_and_listings_stay_within_their_account(store: Arc<SqlStore>) {
    let a = account(&store).await;
    let b = account(&store).await;
    assert!(store.grant_credits(&AccountId::from_string("acc_missing"), 5, None, 0, 1).await.unwrap().is_none());
    let g = store.grant_credits(&a, 250, Some("pilot"), 10, 1_000).await.unwrap().unwrap();
    assert_eq!((g.kind, g.amount, g.balance_after), (CreditKind::Grant, 250, 260));
    assert_eq!(g.note.as_deref(), Some("pilot"));
    let h = held(store.reserve_credits(&a, 5, 10, 1_001, 0).await.unwrap());
    store.settle_credits(&a, &h, &usage(5), 1_002).await.unwrap();
    // Another account cannot settle or release a's hold: a's balance is untouched by b's calls.
    let h = held(store.reserve_credits(&a, 5, 10, 1_003, 0).await.unwrap());
    // (b without a ledger: a release opens none, so b still gets its signup grant later.)
    assert_eq!(store.release_credits(&b, &h, 1_004).await.unwrap(), 0);
    assert_eq!(store.credit_balance(&b, 10, 1_004).await.unwrap(), 10);
    assert_eq!(store.release_credits(&b, &h, 1_004).await.unwrap(), 10);
    assert_eq!(store.credit_balance(&a, 10, 1_005).await.unwrap(), 250);
    let rows = store.credit_transactions(&a, None, 100).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [CreditKind::Completion, CreditKind::Grant, CreditKind::SignupGrant]
    );
    assert!(rows.iter().all(|r| r.account_id == a));
    // Pages: newest first, then older than the last row seen.
    let first = store.credit_transactions(&a, None, 2).await.unwrap();
    let rest = store.credit_transactions(&a, Some(&first[1].id), 2).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].kind, CreditKind::SignupGrant);
    // b's cursor on a's row lists b's own rows only.
    let b_rows = store.credit_transactions(&b, Some(&rows[0].id), 100).await.unwrap();
    assert!(b_rows.iter().all(|r| r.account_id == b));
}
