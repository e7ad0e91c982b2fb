//! The storage contract, written once.

use bk_domain::account::Account;
use bk_domain::client::{Branding, Client, ClientOrigin, ClientRole, ClientType, StoredSecret};
use bk_domain::code::AuthorizationCode;
use bk_domain::grant::{Grant, GrantKind, RevocationReason};
use bk_domain::ids::{AccountId, ClientId, KeyId, RefreshTokenId, SessionId};
use bk_domain::mcp_session::McpSession;
use bk_domain::pkce::CodeChallenge;
use bk_domain::ports::{
    AccountStore, ClientStore, CodeStore, ConsentStore, McpSessionStore, PatCreation, PatStore, RefreshTokenStore,
    SessionStore, SigningKeyStore, Store, StoreError, StoredSigningKey,
};
use bk_domain::refresh::RefreshToken;
use bk_domain::restrictions::Restrictions;
use bk_domain::scope::ScopeSet;
use bk_domain::token::PersonalAccessToken;
use bridgekeeper_store::SqlStore;

async fn account(store: &SqlStore, email: &str) -> AccountId {
    let a = Account {
        id: AccountId::generate(),
        email: email.into(),
        password_hash: Some("$argon2id$x".into()),
        created_at: 1,
        email_verified_at: None,
        disabled_at: None,
        deleted_at: None,
    };
    store.create_account(&a).await.unwrap();
    a.id
}

async fn client(store: &SqlStore) -> ClientId {
    let c = Client {
        id: ClientId::generate(),
        name: "c".into(),
        client_type: ClientType::Confidential,
        role: ClientRole::ThirdParty,
        origin: ClientOrigin::Dynamic,
        redirect_uris: vec!["https://a.example/cb".into(), "http://127.0.0.1/cb".into()],
        allowed_scopes: ScopeSet::parse_lenient("universal-mcp-read account"),
        allowed_providers: Some(vec!["google".into()]),
        domains: vec!["a.example".into()],
        branding: Some(Branding {
            logo: None,
            description: Some("d".into()),
            brand_color: Some("#112233".into()),
            identity_provider: None,
        }),
        secret: Some(StoredSecret { bcrypt: "$2b$10$x".into(), sealed: vec![1, 2, 3] }),
        owner: None,
        created_at: 5,
        updated_at: 5,
    };
    store.insert_client(&c).await.unwrap();
    c.id
}

fn grant(account: &AccountId, client: &ClientId) -> Grant {
    Grant {
        id: SessionId::generate(),
        account_id: account.clone(),
        client_id: client.clone(),
        scopes: ScopeSet::parse_lenient("universal-mcp-read"),
        restrictions: Restrictions::from_params(Some(r#"{"google":"read"}"#), None, Some(r#"["a1"]"#), None).unwrap(),
        kind: GrantKind::OAuth,
        resource: "http://x/mcp".into(),
        auth_time: 10,
        created_at: 10,
        revoked_at: None,
        dpop_jkt: None,
    }
}

fn refresh(session: &SessionId, client: &ClientId, hash: u8) -> RefreshToken {
    RefreshToken {
        id: RefreshTokenId::generate(),
        hash: vec![hash; 32],
        session_id: session.clone(),
        client_id: client.clone(),
        scopes: ScopeSet::parse_lenient("universal-mcp-read"),
        expires_at: 1000,
        used_at: None,
        parent_id: None,
        created_at: 10,
    }
}

/// An unused authorization code whose hash is `hash` repeated, issued 10 s in, valid until 70 s.
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

async fn session_with_token(store: &SqlStore) -> (AccountId, ClientId, Grant, RefreshToken) {
    let a = account(store, &format!("{}@example.com", uuid::Uuid::new_v4().simple())).await;
    let c = client(store).await;
    let mut code = code(&a, &c, 9);
    code.restrictions = Restrictions::from_params(Some(r#"{"google":"read"}"#), None, Some(r#"["a1"]"#), None).unwrap();
    store.insert_code(&code).await.unwrap();
    let g = grant(&a, &c);
    let r = refresh(&g.id, &c, 1);
    assert!(store.redeem_code(&code.hash, &g, &r, 11).await.unwrap());
    (a, c, g, r)
}

pub async fn accounts_are_unique_by_email(store: &SqlStore) {
    let id = account(store, "x@example.com").await;
    let dup = Account {
        id: AccountId::generate(),
        email: "x@example.com".into(),
        password_hash: None,
        created_at: 2,
        email_verified_at: None,
        disabled_at: None,
        deleted_at: None,
    };
    assert!(matches!(store.create_account(&dup).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.account_by_email("x@example.com").await.unwrap().unwrap().id, id);
    assert_eq!(store.account(&id).await.unwrap().unwrap().email, "x@example.com");
    assert!(store.account_by_email("y@example.com").await.unwrap().is_none());
}

pub async fn clients_round_trip(store: &SqlStore) {
    let id = client(store).await;
    let c = store.client(&id).await.unwrap().unwrap();
    assert_eq!(c.redirect_uris, vec!["https://a.example/cb".to_owned(), "http://127.0.0.1/cb".to_owned()]);
    assert_eq!(c.allowed_scopes.to_string(), "universal-mcp-read account");
    assert_eq!(c.secret, Some(StoredSecret { bcrypt: "$2b$10$x".into(), sealed: vec![1, 2, 3] }));
    assert_eq!(c.allowed_providers, Some(vec!["google".to_owned()]));
    assert_eq!(c.branding.unwrap().brand_color.as_deref(), Some("#112233"));
    assert_eq!(
        (c.client_type, c.role, c.origin),
        (ClientType::Confidential, ClientRole::ThirdParty, ClientOrigin::Dynamic)
    );
    assert!(store.client(&ClientId::from_string("cli_none")).await.unwrap().is_none());
}

pub async fn code_redemption_is_compare_and_set(store: &SqlStore) {
    let (a, c, g, _) = session_with_token(store).await;
    // A second redemption changes nothing.
    let g2 = grant(&a, &c);
    assert!(!store.redeem_code(&[9; 32], &g2, &refresh(&g2.id, &c, 2), 12).await.unwrap());
    assert!(store.session(&a, &g2.id).await.unwrap().is_none());
    let code = store.code(&[9; 32]).await.unwrap().unwrap();
    assert_eq!(code.used_at, Some(11));
    assert_eq!(code.session_id, Some(g.id));
}

pub async fn refresh_rotation_is_compare_and_set_under_concurrency(store: &SqlStore) {
    let (_, c, g, r) = session_with_token(store).await;
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let (store, c, g, old) = (store.clone(), c.clone(), g.clone(), r.id.clone());
        tasks.push(tokio::spawn(async move {
            let mut new = refresh(&g.id, &c, 100 + i);
            new.parent_id = Some(old.clone());
            store.rotate_refresh_token(&old, &new, 20).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1, "exactly one rotation wins");
    let (old, _) = store.refresh_token(&r.hash).await.unwrap().unwrap();
    assert_eq!(old.used_at, Some(20));
}

pub async fn sessions_are_tenant_scoped(store: &SqlStore) {
    let (a, _, g, _) = session_with_token(store).await;
    let other = account(store, "other-tenant@example.com").await;
    assert!(store.session(&a, &g.id).await.unwrap().is_some());
    assert!(store.session(&other, &g.id).await.unwrap().is_none(), "another tenant's session looks absent");
}

pub async fn revocation_is_idempotent_and_seen_by_status(store: &SqlStore) {
    let (a, _, g, r) = session_with_token(store).await;
    let st = store.session_status(&g.id).await.unwrap().unwrap();
    assert!(st.active);
    assert_eq!(st.restrictions, g.restrictions, "restrictions survive the code redemption");
    assert_eq!(st.account_id, a);
    assert_eq!(st.client_providers, Some(vec!["google".to_owned()]), "the client's current provider list");
    // A disabled account's session is not active, even one its disable did not revoke.
    store.execute_ddl(&format!("UPDATE accounts SET disabled_at = 5 WHERE id = '{a}'")).await.unwrap();
    assert!(!store.session_status(&g.id).await.unwrap().unwrap().active);
    store.execute_ddl(&format!("UPDATE accounts SET disabled_at = NULL WHERE id = '{a}'")).await.unwrap();
    assert!(store.session_status(&g.id).await.unwrap().unwrap().active);
    assert!(store.revoke_session(&g.id, RevocationReason::RefreshReplay, 30).await.unwrap());
    assert!(!store.revoke_session(&g.id, RevocationReason::RefreshReplay, 31).await.unwrap());
    assert!(!store.session_status(&g.id).await.unwrap().unwrap().active);
    let (_, grant) = store.refresh_token(&r.hash).await.unwrap().unwrap();
    assert_eq!(grant.revoked_at, Some(30));
}

pub async fn consent_is_per_account_client_and_scopes(store: &SqlStore) {
    let a = account(store, "consent@example.com").await;
    let c = client(store).await;
    let s = ScopeSet::parse_lenient("universal-mcp-read account");
    let s = s.to_string();
    assert!(!store.has_consent(&a, &c, &s).await.unwrap());
    store.remember_consent(&a, &c, &s, 1).await.unwrap();
    store.remember_consent(&a, &c, &s, 2).await.unwrap();
    assert!(store.has_consent(&a, &c, &s).await.unwrap());
    assert!(!store.has_consent(&a, &c, "account").await.unwrap());
}

pub async fn signing_keys_newest_first(store: &SqlStore) {
    for (kid, at, retire) in [("key_a", 1, None), ("key_b", 2, None), ("key_old", 0, Some(5))] {
        store
            .insert_signing_key(&StoredSigningKey {
                kid: KeyId::from_string(kid),
                alg: "RS256".into(),
                sealed_private_key: vec![7; 10],
                created_at: at,
                retire_after: retire,
            })
            .await
            .unwrap();
    }
    let keys = store.signing_keys(10).await.unwrap();
    let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, vec!["key_b", "key_a"]);
    assert_eq!(keys[0].sealed_private_key, vec![7; 10]);
    let _ = store.backend();
    // A rotation: every key but the new one leaves the ring at 100 (one retired earlier keeps its time).
    assert_eq!(store.retire_signing_keys(&KeyId::from_string("key_b"), 100).await.unwrap(), 1);
    let kids = |keys: Vec<StoredSigningKey>| keys.into_iter().map(|k| k.kid.as_str().to_owned()).collect::<Vec<_>>();
    assert_eq!(kids(store.signing_keys(99).await.unwrap()), ["key_b", "key_a"], "both, until the old one retires");
    assert_eq!(kids(store.signing_keys(100).await.unwrap()), ["key_b"]);
    assert_eq!(kids(store.signing_keys(4).await.unwrap()), ["key_b", "key_a", "key_old"]);
}

pub async fn purge_removes_only_expired_rows(store: &SqlStore) {
    let (_, _, _, r) = session_with_token(store).await; // refresh expires at 1000, code at 70
    store.ping().await.unwrap();
    assert_eq!(store.purge_expired(999).await.unwrap(), 0);
    assert!(store.refresh_token(&r.hash).await.unwrap().is_some());
    assert_eq!(store.purge_expired(70 + 86_401).await.unwrap(), 2);
    assert!(store.refresh_token(&r.hash).await.unwrap().is_none());
    assert!(store.code(&[9; 32]).await.unwrap().is_none());
}

pub async fn mcp_sessions_are_tenant_bound(store: &SqlStore) {
    let a = account(store, "mcp-a@example.com").await;
    let b = account(store, "mcp-b@example.com").await;
    let s = McpSession {
        id: "sess-1".into(),
        account_id: a.clone(),
        grant_id: SessionId::generate(),
        client_id: "cli_inspector".into(),
        protocol_version: "2025-11-25".into(),
        client_name: Some("inspector".into()),
        client_features: bk_domain::mcp_session::ClientFeatures {
            sampling: true,
            elicit_form: false,
            elicit_url: true,
        },
        log_level: None,
        created_at: 1,
        expires_at: 100,
        ended_at: None,
    };
    store.create_mcp_session(&s).await.unwrap();
    let got = store.mcp_session(&a, "sess-1").await.unwrap().unwrap();
    assert_eq!((got.protocol_version.as_str(), got.client_name.as_deref()), ("2025-11-25", Some("inspector")));
    assert_eq!(got.client_features, s.client_features, "what the client declared is kept");
    assert_eq!(got.client_id, "cli_inspector");
    assert_eq!(got.log_level, None);
    store.set_mcp_session_log_level(&b, "sess-1", "debug").await.unwrap();
    assert_eq!(store.mcp_session(&a, "sess-1").await.unwrap().unwrap().log_level, None, "another tenant cannot set it");
    store.set_mcp_session_log_level(&a, "sess-1", "warning").await.unwrap();
    assert_eq!(store.mcp_session(&a, "sess-1").await.unwrap().unwrap().log_level.as_deref(), Some("warning"));
    assert!(store.mcp_session(&b, "sess-1").await.unwrap().is_none(), "another tenant's session looks absent");
    assert!(!store.end_mcp_session(&b, "sess-1", 5).await.unwrap(), "another tenant cannot end it");
    assert!(store.end_mcp_session(&a, "sess-1", 5).await.unwrap());
    assert!(!store.end_mcp_session(&a, "sess-1", 6).await.unwrap());
    assert_eq!(store.mcp_session(&a, "sess-1").await.unwrap().unwrap().ended_at, Some(5));
}

pub async fn audit_append_query_prune(store: &SqlStore) {
    use bk_domain::audit::{AuditEvent, Outcome};
    use bk_domain::ports::AuditStore;
    let link = |prev: &str, seq: i64, e: &AuditEvent| format!("{prev}|{seq}|{}", e.id).len().to_string() + &e.id;
    let a = AccountId::from_string("acc_audit_a");
    let b = AccountId::from_string("acc_audit_b");
    let events: Vec<AuditEvent> = (0..6)
        .map(|i| {
            AuditEvent::new(if i % 2 == 0 { "auth.signin" } else { "mcp.tools_call" }, Outcome::Success, 1000 + i)
                .account(if i < 4 { &a } else { &b })
        })
        .collect();
    let stored = store.append_audit(&events[..3], &link).await.unwrap();
    assert_eq!(stored.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(stored[1].prev_hash, stored[0].hash, "rows are chained");
    store.append_audit(&events[3..], &link).await.unwrap();
    let state = store.audit_chain_state().await.unwrap();
    assert_eq!(state.head_seq, 6);
    let q = bk_domain::ports::AuditQuery { limit: 100, ..Default::default() };
    assert_eq!(store.query_audit(Some(&a), &q).await.unwrap().len(), 4);
    assert_eq!(store.query_audit(Some(&b), &q).await.unwrap().len(), 2);
    assert_eq!(store.query_audit(None, &q).await.unwrap().len(), 6);
    let kind = bk_domain::ports::AuditQuery {
        kind: Some("auth.signin".into()),
        since_ms: Some(1001),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(store.query_audit(Some(&a), &kind).await.unwrap().iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3]);
    let page = bk_domain::ports::AuditQuery { after_seq: Some(4), limit: 1, ..Default::default() };
    assert_eq!(store.query_audit(None, &page).await.unwrap()[0].seq, 5);
    // Keep the newest 2 rows: 4 deleted, the anchor is row 4.
    assert_eq!(store.prune_audit(None, Some(2)).await.unwrap(), 4);
    let state = store.audit_chain_state().await.unwrap();
    assert_eq!((state.anchor_seq, state.head_seq), (4, 6));
    let rest = store.audit_range(state.anchor_seq, 10).await.unwrap();
    assert_eq!(rest[0].prev_hash, state.anchor_hash, "the chain stays verifiable from its anchor");
    // By age: rows before at_ms 1005 go (row 5).
    assert_eq!(store.prune_audit(Some(1005), None).await.unwrap(), 1);
    // Every field comes back as appended.
    let mut full = AuditEvent::new("token.refresh_replay", Outcome::Failure, 2000)
        .client("cli_x")
        .session("ses_y")
        .pat("pat_z")
        .target("a \"quoted\" target, with unicode: é ✓")
        .ip("2001:db8::1")
        .latency_ms(17)
        .detail("session_revoked", true)
        .detail("nested", serde_json::json!({"list": [1, 2.5, null, "x"], "big": 9007199254740993_i64}));
    full.request_id = Some("req-1".into());
    let bare = AuditEvent::new("system.start", Outcome::Success, 2001);
    store.append_audit(&[full.clone(), bare.clone()], &link).await.unwrap();
    let back = store.audit_range(6, 10).await.unwrap();
    assert_eq!(back.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![7, 8]);
    assert_eq!(back[0].event, full);
    assert_eq!(back[1].event, bare);
}

pub async fn audit_large_batch_stays_chained(store: &SqlStore) {
    use bk_domain::audit::{AuditEvent, Outcome};
    use bk_domain::ports::AuditStore;
    let link = |prev: &str, seq: i64, _e: &AuditEvent| format!("h{seq}:{}", prev.len());
    let events: Vec<AuditEvent> = (0..150).map(|i| AuditEvent::new("mcp.tools_call", Outcome::Success, i)).collect();
    let stored = store.append_audit(&events, &link).await.unwrap();
    assert_eq!(stored.len(), 150);
    let rows = store.audit_range(0, 1000).await.unwrap();
    assert_eq!(rows.len(), 150, "every chunk of the multi-row insert landed");
    for w in rows.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
        assert_eq!(w[1].prev_hash, w[0].hash);
    }
    assert_eq!(store.audit_chain_state().await.unwrap().head_seq, 150);
}

/// Many rotations at once (on SQLite they share group commits): each token is rotated by exactly one
/// of its two concurrent exchanges, every winner's successor is stored, and a rotation that cannot be
/// written (its new hash is taken) fails alone without failing the rotations committed beside it.
pub async fn concurrent_rotations_of_many_tokens_each_apply_once(store: &SqlStore) {
    let a = account(store, "many-rotations@example.com").await;
    let c = client(store).await;
    let mut tokens = Vec::new();
    for i in 0..24u8 {
        let code = code(&a, &c, 100 + i);
        store.insert_code(&code).await.unwrap();
        let g = grant(&a, &c);
        let r = refresh(&g.id, &c, i);
        assert!(store.redeem_code(&code.hash, &g, &r, 11).await.unwrap());
        tokens.push((g, r));
    }
    // A rotation whose successor's hash already belongs to another token: a unique violation.
    // Queued first, so that on SQLite it shares a group commit with the rotations queued after it.
    let bad = {
        let (store, c, (g, r)) = (store.clone(), c.clone(), tokens[0].clone());
        let mut new = refresh(&g.id, &c, 1); // token 1's hash
        new.parent_id = Some(r.id.clone());
        tokio::spawn(async move { store.rotate_refresh_token(&r.id, &new, 20).await })
    };
    let mut tasks = Vec::new();
    for (i, (g, r)) in tokens.iter().enumerate() {
        for attempt in 0..2u8 {
            let (store, c, g, old) = (store.clone(), c.clone(), g.clone(), r.id.clone());
            let hash = 130 + (i as u8) * 2 + attempt;
            tasks.push(tokio::spawn(async move {
                let mut new = refresh(&g.id, &c, hash);
                new.parent_id = Some(old.clone());
                let won = store.rotate_refresh_token(&old, &new, 20).await.unwrap();
                (old, hash, won)
            }));
        }
    }
    let mut winners = std::collections::HashMap::new();
    for t in tasks {
        let (old, hash, won) = t.await.unwrap();
        if won {
            assert!(winners.insert(old, hash).is_none(), "a token was rotated twice");
        }
    }
    let bad = bad.await.unwrap();
    assert_eq!(winners.len(), 24, "every token rotated exactly once");
    for (old, hash) in &winners {
        let (next, _) = store.refresh_token(&[*hash; 32]).await.unwrap().expect("the winner's successor is stored");
        assert_eq!(next.parent_id.as_ref(), Some(old));
    }
    // The bad rotation either lost the race for token 0 (false) or failed on its own (an error):
    // it never counts as applied, and token 0 still has exactly one successor.
    assert!(matches!(bad, Ok(false) | Err(_)), "{bad:?}");
    let (first, _) = store.refresh_token(&[0u8; 32]).await.unwrap().unwrap();
    assert_eq!(first.used_at, Some(20));
    assert!(store.refresh_successor(&first.id).await.unwrap().is_some());
}

/// Deleting a client revokes every session granted to it, in the same transaction.
pub async fn deleting_a_client_revokes_its_sessions(store: &SqlStore) {
    let (_, c, g, _) = session_with_token(store).await;
    assert!(store.session_status(&g.id).await.unwrap().unwrap().active);
    assert!(store.delete_client(&c, 50).await.unwrap());
    assert!(!store.session_status(&g.id).await.unwrap().unwrap().active, "the client's session is revoked");
    let (_, grant) = store.refresh_token(&[1u8; 32]).await.unwrap().unwrap();
    assert_eq!(grant.revoked_at, Some(50));
    assert!(!store.delete_client(&c, 51).await.unwrap(), "deleting twice changes nothing");
    assert_eq!(store.refresh_token(&[1u8; 32]).await.unwrap().unwrap().1.revoked_at, Some(50));
}

pub async fn browser_sessions_end_on_sign_out_and_per_account(store: &SqlStore) {
    use bk_domain::browser_session::{BrowserSessionEnd, StoredBrowserSession};
    use bk_domain::ports::BrowserSessionStore;
    let alice = account(store, "browser-a@example.com").await;
    let bob = account(store, "browser-b@example.com").await;
    let session = |hash: u8, who: &AccountId| StoredBrowserSession {
        id_hash: vec![hash; 32],
        account_id: who.clone(),
        created_at: 100,
        expires_at: 1000,
        ended_at: None,
        user_agent: None,
        last_seen_at: None,
    };
    for (h, who) in [(1, &alice), (2, &alice), (3, &bob)] {
        store.create_browser_session(&session(h, who)).await.unwrap();
    }
    assert_eq!(store.browser_session(&[1; 32]).await.unwrap(), Some(session(1, &alice)));
    assert_eq!(store.browser_session(&[9; 32]).await.unwrap(), None, "unknown digest");
    // Signing out ends one session, once.
    assert!(store.end_browser_session(&[1; 32], BrowserSessionEnd::SignedOut, 200).await.unwrap());
    assert!(!store.end_browser_session(&[1; 32], BrowserSessionEnd::SignedOut, 300).await.unwrap(), "idempotent");
    let ended = store.browser_session(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(ended.ended_at, Some(200), "the first end stays");
    assert!(!ended.is_live(250));
    assert!(store.browser_session(&[2; 32]).await.unwrap().unwrap().is_live(250), "the other browser is still in");
    // A password change ends every open session of that account and none of another's.
    assert_eq!(store.end_browser_sessions_of(&alice, BrowserSessionEnd::PasswordChanged, 400).await.unwrap(), 1);
    assert!(!store.browser_session(&[2; 32]).await.unwrap().unwrap().is_live(450));
    assert!(store.browser_session(&[3; 32]).await.unwrap().unwrap().is_live(450), "bob is untouched");
    // Expired sessions are purged.
    store.purge_expired(999).await.unwrap();
    assert!(store.browser_session(&[3; 32]).await.unwrap().is_some());
    store.purge_expired(1001).await.unwrap();
    for h in [1, 2, 3] {
        assert!(store.browser_session(&[h; 32]).await.unwrap().is_none(), "session {h} purged after expiry");
    }
}

/// The security page's view of browser sessions: an account lists only its own live sessions, ends
/// one of its own by digest (another account's digest changes nothing), and each session keeps the
/// first User-Agent seen and when it was last seen.
pub async fn browser_sessions_are_listed_and_ended_per_account(store: &SqlStore) {
    use bk_domain::browser_session::{BrowserSessionEnd, StoredBrowserSession};
    use bk_domain::ports::BrowserSessionStore;
    let alice = account(store, "list-a@example.com").await;
    let bob = account(store, "list-b@example.com").await;
    let session = |hash: u8, who: &AccountId, created_at: i64, expires_at: i64| StoredBrowserSession {
        id_hash: vec![hash; 32],
        account_id: who.clone(),
        created_at,
        expires_at,
        ended_at: None,
        user_agent: None,
        last_seen_at: None,
    };
    for s in [
        session(1, &alice, 100, 1000),
        session(2, &alice, 200, 1000),
        session(3, &alice, 50, 150),
        session(4, &bob, 300, 1000),
    ] {
        store.create_browser_session(&s).await.unwrap();
    }
    let hashes = |list: Vec<StoredBrowserSession>| list.into_iter().map(|s| s.id_hash[0]).collect::<Vec<_>>();
    assert_eq!(
        hashes(store.list_browser_sessions_of(&alice, 160).await.unwrap()),
        vec![2, 1],
        "alice's live sessions, newest first; the expired one is left out, bob's never shows"
    );
    assert_eq!(hashes(store.list_browser_sessions_of(&bob, 160).await.unwrap()), vec![4]);

    // The first User-Agent seen stays; the last-seen time moves on.
    store.touch_browser_session(&[1; 32], Some("Firefox/140"), 170).await.unwrap();
    store.touch_browser_session(&[1; 32], Some("Other/1"), 180).await.unwrap();
    store.touch_browser_session(&[1; 32], None, 190).await.unwrap();
    let one = store.browser_session(&[1; 32]).await.unwrap().unwrap();
    assert_eq!((one.user_agent.as_deref(), one.last_seen_at), (Some("Firefox/140"), Some(190)));

    // Bob cannot end alice's session, even knowing its digest.
    assert!(!store.end_browser_session_of(&bob, &[1; 32], BrowserSessionEnd::EndedByOwner, 200).await.unwrap());
    assert!(store.browser_session(&[1; 32]).await.unwrap().unwrap().is_live(200), "alice's session is untouched");
    assert!(!store.end_browser_session_of(&alice, &[9; 32], BrowserSessionEnd::EndedByOwner, 200).await.unwrap());
    // Alice ends it, once.
    assert!(store.end_browser_session_of(&alice, &[1; 32], BrowserSessionEnd::EndedByOwner, 200).await.unwrap());
    assert!(!store.end_browser_session_of(&alice, &[1; 32], BrowserSessionEnd::EndedByOwner, 210).await.unwrap());
    assert_eq!(store.browser_session(&[1; 32]).await.unwrap().unwrap().ended_at, Some(200));
    assert_eq!(hashes(store.list_browser_sessions_of(&alice, 220).await.unwrap()), vec![2]);
    // An ended session is not touched back to life (nor its details changed).
    store.touch_browser_session(&[1; 32], None, 230).await.unwrap();
    assert_eq!(store.browser_session(&[1; 32]).await.unwrap().unwrap().last_seen_at, Some(190));

    // Signing out everywhere ends alice's sessions, not bob's.
    assert_eq!(store.end_browser_sessions_of(&alice, BrowserSessionEnd::SignedOutEverywhere, 240).await.unwrap(), 1);
    assert!(store.list_browser_sessions_of(&alice, 250).await.unwrap().is_empty());
    assert_eq!(hashes(store.list_browser_sessions_of(&bob, 250).await.unwrap()), vec![4]);
}

/// A PAT of `account` (session on the PAT pseudo-client), made with a token of `parent` (None: from a
/// browser), its hash `hash` repeated.
fn pat(
    account: &AccountId,
    parent: Option<&SessionId>,
    hash: u8,
    expires_at: Option<i64>,
) -> (PersonalAccessToken, Grant) {
    let g = Grant {
        id: SessionId::generate(),
        account_id: account.clone(),
        client_id: ClientId::from_string("cli_personal_access_token"),
        scopes: ScopeSet::parse_lenient("account"),
        restrictions: Restrictions::default(),
        kind: GrantKind::PersonalAccessToken,
        resource: "http://x/mcp".into(),
        auth_time: 20,
        created_at: 20,
        revoked_at: None,
        dpop_jkt: None,
    };
    let p = PersonalAccessToken {
        id: format!("pat_{}", uuid::Uuid::new_v4().simple()),
        account_id: account.clone(),
        session_id: g.id.clone(),
        parent_session_id: parent.cloned(),
        name: "p".into(),
        hash: vec![hash; 32],
        created_at: 20,
        expires_at,
        revoked_at: None,
    };
    (p, g)
}

/// Is the PAT with hash `hash` and its own session live?
async fn pat_live(store: &SqlStore, hash: u8) -> bool {
    let (p, g, _) = store.pat_by_hash(&[hash; 32]).await.unwrap().unwrap();
    assert_eq!(p.revoked_at.is_none(), g.revoked_at.is_none(), "a PAT and its session are revoked together");
    p.revoked_at.is_none()
}

/// A PAT made with a token dies with that token's session — revoked directly, through its client's
/// deletion, or through the revocation of a PAT up the chain — in the same transaction.
pub async fn pats_die_with_the_session_that_created_them(store: &SqlStore) {
    let (a, c, app, _) = session_with_token(store).await;
    // app session → PAT 41 → PAT 42 (made with PAT 41); PAT 43 from a browser: independent.
    let (p41, g41) = pat(&a, Some(&app.id), 41, None);
    assert_eq!(store.create_pat(&p41, &g41, 100).await.unwrap(), PatCreation::Created);
    let (p42, g42) = pat(&a, Some(&g41.id), 42, None);
    assert_eq!(store.create_pat(&p42, &g42, 100).await.unwrap(), PatCreation::Created);
    let (p43, g43) = pat(&a, None, 43, None);
    assert_eq!(store.create_pat(&p43, &g43, 100).await.unwrap(), PatCreation::Created);
    assert_eq!(store.pat_by_hash(&[42; 32]).await.unwrap().unwrap().0.parent_session_id, Some(g41.id.clone()));
    assert!(store.revoke_session(&app.id, RevocationReason::RevokedByUser, 60).await.unwrap());
    assert!(!pat_live(store, 41).await && !pat_live(store, 42).await, "the app's PATs die with it, transitively");
    assert!(!store.session_status(&g42.id).await.unwrap().unwrap().active);
    assert!(pat_live(store, 43).await, "a PAT from the browser is not the app's");
    assert_eq!(store.list_pats(&a).await.unwrap().len(), 1);
    // A revoked parent cannot create: nothing is stored.
    let (p44, g44) = pat(&a, Some(&app.id), 44, None);
    assert_eq!(store.create_pat(&p44, &g44, 100).await.unwrap(), PatCreation::ParentRevoked);
    assert!(store.pat_by_hash(&[44; 32]).await.unwrap().is_none());
    assert!(store.session(&a, &g44.id).await.unwrap().is_none());
    // Revoking a PAT revokes the PATs made with it.
    let (p45, g45) = pat(&a, Some(&g43.id), 45, None);
    assert_eq!(store.create_pat(&p45, &g45, 100).await.unwrap(), PatCreation::Created);
    assert!(store.revoke_pat(&a, &p43.id, 61).await.unwrap().is_some());
    assert!(!pat_live(store, 45).await);
    // Deleting a client revokes the PATs its sessions' tokens made.
    let c2 = client(store).await;
    let mut code2 = code(&a, &c2, 46);
    code2.restrictions = Restrictions::default();
    store.insert_code(&code2).await.unwrap();
    let g2 = grant(&a, &c2);
    assert!(store.redeem_code(&code2.hash, &g2, &refresh(&g2.id, &c2, 46), 11).await.unwrap());
    let (p47, g47) = pat(&a, Some(&g2.id), 47, None);
    assert_eq!(store.create_pat(&p47, &g47, 100).await.unwrap(), PatCreation::Created);
    assert!(store.delete_client(&c2, 62).await.unwrap());
    assert!(!pat_live(store, 47).await);
    let _ = c;
}

/// At most `max_live` live PATs per account, even when created in parallel; revoked and expired ones
/// do not count.
pub async fn pat_quota_holds_under_concurrency(store: &SqlStore) {
    let a = account(store, "pat-quota@example.com").await;
    let mut tasks = Vec::new();
    for i in 0..12u8 {
        let (store, a) = (store.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            let (p, g) = pat(&a, None, 100 + i, None);
            store.create_pat(&p, &g, 5).await.unwrap()
        }));
    }
    let mut created = 0;
    for t in tasks {
        let outcome = t.await.unwrap();
        assert!(matches!(outcome, PatCreation::Created | PatCreation::QuotaReached));
        created += usize::from(outcome == PatCreation::Created);
    }
    assert_eq!(created, 5, "exactly the quota");
    let live = store.list_pats(&a).await.unwrap();
    assert_eq!(live.len(), 5);
    // Revoking one frees a place; an expired one does not hold a place.
    store.revoke_pat(&a, &live[0].0.id, 30).await.unwrap();
    let (p, g) = pat(&a, None, 120, Some(25));
    assert_eq!(store.create_pat(&p, &g, 5).await.unwrap(), PatCreation::Created);
    let (mut p, g) = pat(&a, None, 121, None);
    p.created_at = 30;
    assert_eq!(store.create_pat(&p, &g, 5).await.unwrap(), PatCreation::Created, "the expired one does not count");
    let (mut p, g) = pat(&a, None, 122, None);
    p.created_at = 30;
    assert_eq!(store.create_pat(&p, &g, 5).await.unwrap(), PatCreation::QuotaReached);
}

/// At most `max_per_owner` live clients per owner, even when created in parallel; deleted ones do not count.
pub async fn client_quota_holds_under_concurrency(store: &SqlStore) {
    let owner = account(store, "client-quota@example.com").await;
    let other = account(store, "client-quota-other@example.com").await;
    let owned = |o: &AccountId| Client {
        id: ClientId::generate(),
        name: "mine".into(),
        client_type: ClientType::Public,
        role: ClientRole::ThirdParty,
        origin: ClientOrigin::Manual,
        redirect_uris: vec!["http://127.0.0.1/cb".into()],
        allowed_scopes: ScopeSet::parse_lenient("universal-mcp-read"),
        allowed_providers: None,
        domains: vec![],
        branding: None,
        secret: None,
        owner: Some(o.clone()),
        created_at: 5,
        updated_at: 5,
    };
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (store, c) = (store.clone(), owned(&owner));
        tasks.push(tokio::spawn(async move { store.insert_owned_client(&c, 3).await.unwrap() }));
    }
    let mut created = 0;
    for t in tasks {
        created += usize::from(t.await.unwrap());
    }
    assert_eq!(created, 3, "exactly the quota");
    let mine = store.list_clients(Some(&owner)).await.unwrap();
    assert_eq!(mine.len(), 3);
    assert!(store.insert_owned_client(&owned(&other), 3).await.unwrap(), "another owner has a quota of its own");
    assert!(store.delete_client(&mine[0].id, 9).await.unwrap());
    assert!(store.insert_owned_client(&owned(&owner), 3).await.unwrap(), "a deleted client frees its place");
    assert!(!store.insert_owned_client(&owned(&owner), 3).await.unwrap());
    assert_eq!(store.list_clients(Some(&owner)).await.unwrap().len(), 3);
}
