//! The connection store's contract on every backend: tenant isolation (another tenant's id is a
//! missing one), listing with filters, sorting and pages, the per-account quota under concurrency,
//! and the sealed credential kept, replaced and erased with its row.

use std::sync::Arc;

use bk_domain::account::Account;
use bk_domain::connection::{Connection, ConnectionFlow, ConnectionStatus, UpstreamRegistration};
use bk_domain::ids::{AccountId, ConnectionId};
use bk_domain::ports::{
    AccountStore, ConnectionFlowStore, ConnectionQuery, ConnectionSort, ConnectionStore, LeaseAttempt,
    MasterSealedKind, MasterSealedStore, Store,
};
use bk_domain::restrictions::ProviderReach;
use bridgekeeper_store::SqlStore;

macro_rules! connection_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _dir) = crate::sqlite().await;
                    super::$name(&store).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some((store, guard)) = crate::postgres().await {
                        super::$name(&store).await;
                        drop(store);
                        guard.drop_schema().await;
                    } else {
                        eprintln!("BRIDGEKEEPER_TEST_POSTGRES_URL not set: PostgreSQL backend not exercised");
                    }
                }
            )*
        }
    };
}

connection_tests!(
    connections_are_tenant_isolated,
    connection_listing_filters_sorts_and_pages,
    connection_quota_holds_under_concurrency,
    connection_credential_is_replaced_only_when_given_and_erased_with_the_row,
    connect_flows_are_taken_once_even_concurrently,
    refresh_lease_has_one_holder_and_finishing_bumps_the_generation,
    a_credential_is_resealed_only_if_unchanged,
    upstream_registrations_are_kept_once_per_issuer_and_forgotten_by_client_id,
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

fn connection(account: &AccountId, provider: &str, status: ConnectionStatus, created_at: i64) -> Connection {
    Connection {
        id: ConnectionId::generate(),
        account_id: account.clone(),
        provider_id: provider.into(),
        provider_user_id: Some("u-1".into()),
        scopes: vec!["read".into(), "write".into()],
        status,
        expires_at: Some(created_at + 3600),
        can_refresh: true,
        metadata: serde_json::json!({"email": "someone@example.com"}),
        last_error: None,
        created_at,
        updated_at: created_at,
    }
}

async fn connections_are_tenant_isolated(store: &SqlStore) {
    let (a, b) = (account(store).await, account(store).await);
    let c = connection(&a, "github", ConnectionStatus::Active, 100);
    assert!(store.insert_connection(&a, &c, b"sealed-a", 10).await.unwrap());
    assert_eq!(store.connection(&a, &c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(store.sealed_credential(&a, &c.id).await.unwrap().as_deref(), Some(&b"sealed-a"[..]));
    // Another tenant sees exactly what it would see for an id that does not exist.
    let missing = ConnectionId::generate();
    for id in [&c.id, &missing] {
        assert_eq!(store.connection(&b, id).await.unwrap(), None);
        assert_eq!(store.sealed_credential(&b, id).await.unwrap(), None);
        let mut other = c.clone();
        other.id = id.clone();
        other.status = ConnectionStatus::Revoked;
        assert!(!store.update_connection(&b, &other, Some(b"x")).await.unwrap());
        assert!(!store.delete_connection(&b, id).await.unwrap());
    }
    assert_eq!(store.list_connections(&b, &ConnectionQuery::default()).await.unwrap().total, 0);
    // Nothing of the probes changed A's connection.
    assert_eq!(store.connection(&a, &c.id).await.unwrap(), Some(c.clone()));
    // A connection is stored only under its own tenant.
    assert!(store.insert_connection(&b, &c, b"x", 10).await.is_err());
}

async fn connection_listing_filters_sorts_and_pages(store: &SqlStore) {
    let a = account(store).await;
    let other = account(store).await;
    store
        .insert_connection(&other, &connection(&other, "github", ConnectionStatus::Active, 1), b"o", 50)
        .await
        .unwrap();
    let mut made = Vec::new();
    for i in 0..25i64 {
        let (provider, status) = match i % 3 {
            0 => ("github", ConnectionStatus::Active),
            1 => ("slack", ConnectionStatus::Expired),
            _ => ("notion", ConnectionStatus::Active),
        };
        let c = connection(&a, provider, status, 1000 + i);
        assert!(store.insert_connection(&a, &c, b"s", 50).await.unwrap());
        made.push(c);
    }
    let all = store.list_connections(&a, &ConnectionQuery { limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!((all.total, all.items.len()), (25, 25));
    assert_eq!(all.items[0].created_at, 1024, "newest first by default");
    let q = |page, limit| ConnectionQuery {
        page,
        limit,
        sort_by: ConnectionSort::CreatedAt,
        descending: false,
        ..Default::default()
    };
    let p1 = store.list_connections(&a, &q(1, 10)).await.unwrap();
    let p3 = store.list_connections(&a, &q(3, 10)).await.unwrap();
    assert_eq!((p1.total, p1.items.len(), p3.items.len()), (25, 10, 5));
    assert_eq!(p1.items[0].id, made[0].id);
    assert_eq!(p3.items[4].id, made[24].id);
    let expired = store
        .list_connections(
            &a,
            &ConnectionQuery { status: Some(ConnectionStatus::Expired), limit: 100, ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(expired.total, 8);
    assert!(expired.items.iter().all(|c| c.status == ConnectionStatus::Expired && c.provider_id == "slack"));
    let github = store
        .list_connections(&a, &ConnectionQuery { provider_id: Some("github".into()), limit: 100, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(github.total, 9);
    // What the caller may reach: only some providers, all but some, or none; counted the same way.
    let reach = |providers: ProviderReach| ConnectionQuery { providers, limit: 5, ..Default::default() };
    let only =
        store.list_connections(&a, &reach(ProviderReach::Only(vec!["slack".into(), "jira".into()]))).await.unwrap();
    assert_eq!((only.total, only.items.len()), (8, 5));
    assert!(only.items.iter().all(|c| c.provider_id == "slack"));
    let except = store.list_connections(&a, &reach(ProviderReach::Except(vec!["github".into()]))).await.unwrap();
    assert_eq!(except.total, 16);
    assert!(except.items.iter().all(|c| c.provider_id != "github"));
    let none = store.list_connections(&a, &reach(ProviderReach::Only(vec![]))).await.unwrap();
    assert_eq!((none.total, none.items.len()), (0, 0));
    let window = store
        .list_connections(
            &a,
            &ConnectionQuery {
                created_after: Some(1010),
                created_before: Some(1015),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(window.total, 5);
    let by_provider = store
        .list_connections(
            &a,
            &ConnectionQuery {
                sort_by: ConnectionSort::ProviderId,
                descending: false,
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let providers: Vec<&str> = by_provider.items.iter().map(|c| c.provider_id.as_str()).collect();
    let mut sorted = providers.clone();
    sorted.sort();
    assert_eq!(providers, sorted);
    // A limit beyond the page size is held to it.
    let big = store.list_connections(&a, &ConnectionQuery { limit: 10_000, ..Default::default() }).await.unwrap();
    assert_eq!(big.items.len(), 25);
}

async fn connection_quota_holds_under_concurrency(store: &SqlStore) {
    let a = account(store).await;
    let store = Arc::new(store.clone());
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (store, a) = (store.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            store.insert_connection(&a, &connection(&a, "github", ConnectionStatus::Active, i), b"s", 5).await.unwrap()
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += usize::from(t.await.unwrap());
    }
    assert_eq!(stored, 5);
    assert_eq!(store.list_connections(&a, &ConnectionQuery::default()).await.unwrap().total, 5);
}

async fn connection_credential_is_replaced_only_when_given_and_erased_with_the_row(store: &SqlStore) {
    let a = account(store).await;
    let mut c = connection(&a, "google", ConnectionStatus::Active, 10);
    store.insert_connection(&a, &c, b"first", 10).await.unwrap();
    c.status = ConnectionStatus::Error;
    c.last_error = Some("the provider answered HTTP 503".into());
    c.updated_at = 20;
    assert!(store.update_connection(&a, &c, None).await.unwrap());
    assert_eq!(store.sealed_credential(&a, &c.id).await.unwrap().as_deref(), Some(&b"first"[..]));
    assert_eq!(store.connection(&a, &c.id).await.unwrap(), Some(c.clone()));
    c.status = ConnectionStatus::Active;
    c.last_error = None;
    c.expires_at = None;
    c.can_refresh = false;
    c.updated_at = 30;
    assert!(store.update_connection(&a, &c, Some(b"second")).await.unwrap());
    assert_eq!(store.sealed_credential(&a, &c.id).await.unwrap().as_deref(), Some(&b"second"[..]));
    assert_eq!(store.connection(&a, &c.id).await.unwrap(), Some(c.clone()));
    assert!(store.delete_connection(&a, &c.id).await.unwrap());
    assert_eq!(store.sealed_credential(&a, &c.id).await.unwrap(), None);
    assert!(!store.delete_connection(&a, &c.id).await.unwrap());
}

async fn connect_flows_are_taken_once_even_concurrently(store: &SqlStore) {
    let a = account(store).await;
    let flow = ConnectionFlow {
        state_hash: vec![7u8; 32],
        account_id: a.clone(),
        client_id: None,
        provider_id: "github".into(),
        redirect_url: "https://app.example/done".into(),
        upstream: Some(r#"{"issuer":"https://as.example"}"#.into()),
        created_at: 100,
        expires_at: 700,
    };
    let other = account(store).await;
    assert!(store.insert_connection_flow(&other, &flow).await.is_err(), "stored only under its own tenant");
    store.insert_connection_flow(&a, &flow).await.unwrap();
    let store = Arc::new(store.clone());
    let mut takes = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        takes.push(tokio::spawn(async move { store.take_connection_flow(&[7u8; 32], 200).await.unwrap() }));
    }
    let mut taken = Vec::new();
    for t in takes {
        taken.extend(t.await.unwrap());
    }
    assert_eq!(taken.len(), 1, "exactly one take finds the flow");
    let f = &taken[0];
    assert_eq!(
        (f.account_id.as_str(), f.provider_id.as_str(), f.upstream.as_deref()),
        (a.as_str(), "github", Some(r#"{"issuer":"https://as.example"}"#))
    );
    assert_eq!((f.created_at, f.expires_at, f.redirect_url.as_str()), (100, 700, "https://app.example/done"));
    assert!(store.take_connection_flow(&[9u8; 32], 200).await.unwrap().is_none());
    // Purged once expired.
    assert!(store.purge_expired(701).await.unwrap() >= 1);
}

async fn refresh_lease_has_one_holder_and_finishing_bumps_the_generation(store: &SqlStore) {
    let a = account(store).await;
    let mut c = connection(&a, "google", ConnectionStatus::Active, 10);
    store.insert_connection(&a, &c, b"old", 10).await.unwrap();
    let store = Arc::new(store.clone());
    let mut tries = Vec::new();
    for i in 0..8 {
        let (store, a, id) = (store.clone(), a.clone(), c.id.clone());
        tries.push(tokio::spawn(async move {
            let token = format!("holder-{i}");
            (token.clone(), store.acquire_refresh_lease(&a, &id, 100, 130, &token).await.unwrap())
        }));
    }
    let (mut acquired, mut held, mut holder) = (0, 0, String::new());
    for t in tries {
        match t.await.unwrap() {
            (token, LeaseAttempt::Acquired(l)) => {
                acquired += 1;
                holder = token;
                assert_eq!((l.generation, l.sealed.as_slice(), l.failed_at), (0, &b"old"[..], None));
                assert!(!l.interrupted, "nobody held it before");
            }
            (_, LeaseAttempt::Held { generation }) => {
                held += 1;
                assert_eq!(generation, 0);
            }
            (_, LeaseAttempt::Missing) => panic!("the connection exists"),
        }
    }
    assert_eq!((acquired, held), (1, 7));
    // Another tenant finds nothing to lease.
    let b = account(&store).await;
    assert!(matches!(store.acquire_refresh_lease(&b, &c.id, 100, 130, "x").await.unwrap(), LeaseAttempt::Missing));
    // A lease that ran out can be taken again (its holder died): the new holder learns that the
    // previous one stopped mid-refresh.
    match store.acquire_refresh_lease(&a, &c.id, 130, 160, "second").await.unwrap() {
        LeaseAttempt::Acquired(l) => assert!(l.interrupted),
        _ => panic!("a lease that ran out is free"),
    }
    c.expires_at = Some(5000);
    c.updated_at = 131;
    // The first holder, late, cannot store its outcome over the new holder's.
    assert!(!store.finish_refresh(&a, &c, Some(b"late"), None, &holder).await.unwrap());
    store.release_refresh_lease(&a, &c.id, &holder).await.unwrap();
    assert!(matches!(
        store.acquire_refresh_lease(&a, &c.id, 131, 160, "third").await.unwrap(),
        LeaseAttempt::Held { generation: 0 }
    ));
    assert!(store.finish_refresh(&a, &c, Some(b"new"), None, "second").await.unwrap());
    assert_eq!(store.sealed_credential(&a, &c.id).await.unwrap().as_deref(), Some(&b"new"[..]));
    let row = store.sealed_connection(&a, &c.id).await.unwrap().unwrap();
    assert_eq!((row.generation, row.sealed.as_slice(), row.connection.expires_at), (1, &b"new"[..], Some(5000)));
    assert!(store.sealed_connection(&b, &c.id).await.unwrap().is_none(), "another tenant's id finds nothing");
    match store.acquire_refresh_lease(&a, &c.id, 132, 160, "fourth").await.unwrap() {
        LeaseAttempt::Acquired(l) => {
            assert_eq!((l.generation, l.connection.expires_at, l.interrupted), (1, Some(5000), false));
        }
        _ => panic!("finishing releases the lease"),
    }
    store.release_refresh_lease(&a, &c.id, "fourth").await.unwrap();
    assert!(!store.finish_refresh(&a, &c, None, Some(133), "fourth").await.unwrap(), "released: no longer held");
    match store.acquire_refresh_lease(&a, &c.id, 134, 160, "fifth").await.unwrap() {
        LeaseAttempt::Acquired(l) => {
            assert_eq!((l.generation, l.failed_at, l.sealed.as_slice(), l.interrupted), (1, None, &b"new"[..], false));
        }
        _ => panic!("released"),
    }
    assert!(store.finish_refresh(&a, &c, None, Some(135), "fifth").await.unwrap());
    match store.acquire_refresh_lease(&a, &c.id, 136, 160, "sixth").await.unwrap() {
        LeaseAttempt::Acquired(l) => assert_eq!((l.generation, l.failed_at), (2, Some(135))),
        _ => panic!("finished"),
    }
}

async fn a_credential_is_resealed_only_if_unchanged(store: &SqlStore) {
    let a = account(store).await;
    let c = connection(&a, "google", ConnectionStatus::Active, 10);
    store.insert_connection(&a, &c, b"under-old-key", 10).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.sealed_credentials_page(after.as_ref(), 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        seen.extend(page);
    }
    let row = seen.iter().find(|r| r.id == c.id).expect("listed across tenants");
    assert_eq!((row.account_id.as_str(), row.sealed.as_slice()), (a.as_str(), &b"under-old-key"[..]));
    // A refresh stored a new credential meanwhile: the re-seal of the old one does not apply.
    store.update_connection(&a, &c, Some(b"refreshed")).await.unwrap();
    assert!(!store.reseal_credential(&a, &c.id, b"under-old-key", b"resealed-old").await.unwrap());
    assert!(store.reseal_credential(&a, &c.id, b"refreshed", b"resealed").await.unwrap());
    assert_eq!(store.sealed_credential(&a, &c.id).await.unwrap().as_deref(), Some(&b"resealed"[..]));
    let b = account(store).await;
    assert!(!store.reseal_credential(&b, &c.id, b"resealed", b"x").await.unwrap(), "tenant first");
}

async fn upstream_registrations_are_kept_once_per_issuer_and_forgotten_by_client_id(store: &SqlStore) {
    let issuer = format!("https://as-{}.example", AccountId::generate());
    let redirect = "https://bk.example/api/v1/connections/callback";
    assert!(store.upstream_registration(&issuer, redirect).await.unwrap().is_none());
    let first = UpstreamRegistration {
        issuer: issuer.clone(),
        redirect_uri: redirect.into(),
        client_id: "first".into(),
        secret_sealed: Some(b"sealed-1".to_vec()),
        token_auth: "client_secret_basic".into(),
        created_at: 10,
        secret_expires_at: Some(1000),
    };
    store.save_upstream_registration(&first).await.unwrap();
    // A second registration made at the same moment settles on the first kept.
    let second = UpstreamRegistration { client_id: "second".into(), secret_sealed: None, ..first.clone() };
    store.save_upstream_registration(&second).await.unwrap();
    let kept = store.upstream_registration(&issuer, redirect).await.unwrap().unwrap();
    assert_eq!(
        (kept.client_id.as_str(), kept.secret_sealed.as_deref(), kept.token_auth.as_str(), kept.secret_expires_at),
        ("first", Some(&b"sealed-1"[..]), "client_secret_basic", Some(1000))
    );
    assert!(store.upstream_registration(&issuer, "https://other/callback").await.unwrap().is_none());
    // Its secret is among what keys rotate-master re-seals.
    let values = store.master_sealed_values().await.unwrap();
    assert!(values.iter().any(|v| v.kind == MasterSealedKind::UpstreamClientSecret && v.id == first.id()));
    assert!(
        store
            .reseal_value(MasterSealedKind::UpstreamClientSecret, &first.id(), b"sealed-1", b"sealed-2")
            .await
            .unwrap()
    );
    // Forgetting names the client id: a stale forget does not drop a newer registration.
    store.forget_upstream_registration(&issuer, redirect, "second").await.unwrap();
    assert!(store.upstream_registration(&issuer, redirect).await.unwrap().is_some());
    store.forget_upstream_registration(&issuer, redirect, "first").await.unwrap();
    assert!(store.upstream_registration(&issuer, redirect).await.unwrap().is_none());
}
