//! Bridge mode's sealed tokens on every backend: held for a code, moved onto the session by the
//! redemption, read only for a live session of their own tenant, marked and replaced in place, and
//! gone when the session is revoked or the code expires unredeemed.

use std::sync::Arc;

use bk_domain::account::Account;
use bk_domain::bridge::SealedBridge;
use bk_domain::client::{Client, ClientOrigin, ClientRole, ClientType};
use bk_domain::code::AuthorizationCode;
use bk_domain::grant::{Grant, GrantKind, RevocationReason};
use bk_domain::ids::{AccountId, ClientId, RefreshTokenId, SessionId};
use bk_domain::pkce::CodeChallenge;
use bk_domain::ports::{
    AccountStore, BridgeStore, ClientStore, CodeStore, MasterSealedKind, MasterSealedStore, SessionStore, Store,
};
use bk_domain::refresh::RefreshToken;
use bk_domain::restrictions::Restrictions;
use bk_domain::scope::ScopeSet;
use bridgekeeper_store::SqlStore;

shared_store_tests!(
    bridge_tokens_move_from_the_code_to_its_session_and_end_with_it,
    bridge_tokens_of_a_code_never_redeemed_are_purged_when_it_expires,
);

async fn account(store: &SqlStore) -> AccountId {
    let id = AccountId::generate();
    let a = Account::with_password(id.clone(), format!("{id}@example.com"), "$argon2id$x".into(), 1);
    store.create_account(&a).await.unwrap();
    id
}

async fn client(store: &SqlStore) -> ClientId {
    let c = Client {
        id: ClientId::generate(),
        name: "c".into(),
        client_type: ClientType::Public,
        role: ClientRole::ThirdParty,
        origin: ClientOrigin::Dynamic,
        redirect_uris: vec!["https://a.example/cb".into()],
        allowed_scopes: ScopeSet::parse_lenient("universal-mcp-read"),
        allowed_providers: None,
        domains: vec![],
        branding: None,
        secret: None,
        owner: None,
        created_at: 5,
        updated_at: 5,
    };
    store.insert_client(&c).await.unwrap();
    c.id
}

fn code(account: &AccountId, client: &ClientId, hash: u8) -> AuthorizationCode {
    AuthorizationCode {
        hash: vec![hash; 32],
        client_id: client.clone(),
        account_id: account.clone(),
        redirect_uri: "https://a.example/cb".into(),
        challenge: CodeChallenge::from_stored("x".repeat(43)),
        scopes: ScopeSet::parse_lenient("universal-mcp-read"),
        restrictions: Restrictions::default(),
        resource: "http://x/mcp".into(),
        nonce: None,
        auth_time: 10,
        expires_at: 70,
        session_id: None,
        used_at: None,
    }
}

fn held(id: &str, sealed: &[u8]) -> SealedBridge {
    SealedBridge {
        id: id.into(),
        provider_id: "nexus".into(),
        sealed: sealed.to_vec(),
        backend_user_id: Some("u-1".into()),
        reverify: false,
    }
}

async fn sealed_rows(store: &SqlStore) -> usize {
    store.master_sealed_values().await.unwrap().iter().filter(|v| v.kind == MasterSealedKind::SessionBridge).count()
}

async fn bridge_tokens_move_from_the_code_to_its_session_and_end_with_it(store: Arc<SqlStore>) {
    let (a, other) = (account(&store).await, account(&store).await);
    let c = client(&store).await;
    let code = code(&a, &c, 7);
    store.insert_code(&code).await.unwrap();
    store.hold_bridges(&a, &code.hash, &[held("brg_a", b"sealed-1")], 10).await.unwrap();
    let grant = Grant {
        id: SessionId::generate(),
        account_id: a.clone(),
        client_id: c.clone(),
        scopes: ScopeSet::parse_lenient("universal-mcp-read"),
        restrictions: Restrictions::default(),
        kind: GrantKind::OAuth,
        resource: "http://x/mcp".into(),
        auth_time: 10,
        created_at: 11,
        revoked_at: None,
        dpop_jkt: None,
    };
    assert!(store.session_bridges(&a, &grant.id).await.unwrap().is_empty(), "no session yet");
    let refresh = RefreshToken {
        id: RefreshTokenId::generate(),
        hash: vec![1; 32],
        session_id: grant.id.clone(),
        client_id: c.clone(),
        scopes: grant.scopes.clone(),
        expires_at: 1000,
        used_at: None,
        parent_id: None,
        created_at: 11,
    };
    assert!(store.redeem_code(&code.hash, &grant, &refresh, 11).await.unwrap());
    let got = store.session_bridges(&a, &grant.id).await.unwrap();
    assert_eq!(got, vec![held("brg_a", b"sealed-1")], "moved onto the session");
    assert!(store.session_bridges(&other, &grant.id).await.unwrap().is_empty(), "another tenant finds nothing");
    // Marked, then replaced in place (which clears the mark); another tenant changes nothing.
    assert!(!store.mark_bridge_reverify(&other, "brg_a").await.unwrap());
    assert!(store.mark_bridge_reverify(&a, "brg_a").await.unwrap());
    assert!(store.session_bridges(&a, &grant.id).await.unwrap()[0].reverify);
    assert!(!store.replace_bridge(&other, "brg_a", b"evil", None, 12).await.unwrap());
    assert!(store.replace_bridge(&a, "brg_a", b"sealed-2", Some("u-1"), 12).await.unwrap());
    let got = store.session_bridges(&a, &grant.id).await.unwrap();
    assert_eq!(got, vec![held("brg_a", b"sealed-2")]);
    // Revoking the session deletes the row in the same transaction.
    assert!(store.revoke_session(&grant.id, RevocationReason::RevokedByUser, 13).await.unwrap());
    assert!(store.session_bridges(&a, &grant.id).await.unwrap().is_empty());
    assert_eq!(sealed_rows(&store).await, 0, "the ciphertext is gone, not only hidden");
}

async fn bridge_tokens_of_a_code_never_redeemed_are_purged_when_it_expires(store: Arc<SqlStore>) {
    let a = account(&store).await;
    let c = client(&store).await;
    let (live, dead) = (code(&a, &c, 8), AuthorizationCode { expires_at: 20, ..code(&a, &c, 9) });
    store.insert_code(&live).await.unwrap();
    store.insert_code(&dead).await.unwrap();
    store.hold_bridges(&a, &live.hash, &[held("brg_live", b"s1")], 10).await.unwrap();
    store.hold_bridges(&a, &dead.hash, &[held("brg_dead", b"s2")], 10).await.unwrap();
    assert_eq!(sealed_rows(&store).await, 2);
    store.purge_expired(30).await.unwrap();
    let left: Vec<String> = store
        .master_sealed_values()
        .await
        .unwrap()
        .into_iter()
        .filter(|v| v.kind == MasterSealedKind::SessionBridge)
        .map(|v| v.id)
        .collect();
    assert_eq!(left, vec![format!("{a}:brg_live")], "only the expired code's token went");
}
