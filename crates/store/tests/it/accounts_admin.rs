//! The operator's side of accounts, on every backend: the list (filters, pages, counts), disable
//! (everything the account holds revoked in one transaction, idempotent, another account untouched),
//! enable (nothing comes back), and delete (credentials and links erased, the email freed, the audit
//! rows kept as they were).

use std::sync::Arc;

use bk_domain::account::{Account, AccountEnabling, AccountQuery, AccountStatus, MAX_ACCOUNTS_PAGE, deleted_email};
use bk_domain::audit::{AuditEvent, Outcome};
use bk_domain::browser_session::StoredBrowserSession;
use bk_domain::client::{Client, ClientOrigin, ClientRole, ClientType};
use bk_domain::code::AuthorizationCode;
use bk_domain::connection::{Connection, ConnectionFlow, ConnectionStatus};
use bk_domain::email_token::{EmailPurpose, StoredEmailToken};
use bk_domain::grant::{Grant, GrantKind};
use bk_domain::handoff::{HandoffCode, HandoffIntent};
use bk_domain::ids::{AccountId, ClientId, ConnectionId, RefreshTokenId, SessionId};
use bk_domain::mcp_session::McpSession;
use bk_domain::pkce::CodeChallenge;
use bk_domain::ports::{
    AccountStore, AuditQuery, AuditStore, BrowserSessionStore, ClientStore, CodeStore, ConnectionFlowStore,
    ConnectionStore, ConsentStore, EmailTokenStore, HandoffCodeStore, McpSessionStore, PatCreation, PatStore,
    RefreshTokenStore, SessionStore,
};
use bk_domain::refresh::RefreshToken;
use bk_domain::restrictions::Restrictions;
use bk_domain::scope::ScopeSet;
use bk_domain::token::PersonalAccessToken;
use bridgekeeper_store::SqlStore;

shared_store_tests!(
    accounts_are_listed_newest_first_filtered_and_paged_with_counts,
    disabling_revokes_everything_the_account_holds_at_once_and_is_idempotent,
    enabling_lifts_a_disable_and_brings_nothing_back,
    deleting_erases_credentials_frees_the_email_and_keeps_the_audit_rows,
    a_code_redeemed_while_the_account_is_disabled_leaves_no_live_session,
);

const NOW: i64 = 1_000;

async fn account(store: &SqlStore, email: &str, created_at: i64) -> AccountId {
    let mut a = Account::with_password(AccountId::generate(), email.into(), "$argon2id$secret-hash".into(), created_at);
    a.email_verified_at = Some(created_at);
    store.create_account(&a).await.unwrap();
    a.id
}

async fn client(store: &SqlStore) -> ClientId {
    let c = Client {
        id: ClientId::generate(),
        name: "an app".into(),
        client_type: ClientType::Public,
        role: ClientRole::ThirdParty,
        origin: ClientOrigin::Dynamic,
        redirect_uris: vec!["http://127.0.0.1/cb".into()],
        allowed_scopes: ScopeSet::parse_lenient("universal-mcp-read account"),
        allowed_providers: None,
        domains: Vec::new(),
        branding: None,
        secret: None,
        owner: None,
        created_at: 5,
        updated_at: 5,
    };
    store.insert_client(&c).await.unwrap();
    c.id
}

/// A 32-byte digest unique to an account (`seed`) and a thing it holds (`k`).
fn digest(seed: u8, k: u8) -> Vec<u8> {
    let mut d = vec![0u8; 32];
    d[0] = seed;
    d[1] = k;
    d
}

fn code(account: &AccountId, client: &ClientId, hash: Vec<u8>) -> AuthorizationCode {
    AuthorizationCode {
        hash,
        client_id: client.clone(),
        account_id: account.clone(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        challenge: CodeChallenge::from_stored("x".repeat(43)),
        scopes: ScopeSet::parse_lenient("universal-mcp-read"),
        restrictions: Restrictions::default(),
        resource: "http://x/mcp".into(),
        nonce: None,
        auth_time: 10,
        expires_at: NOW + 60,
        session_id: None,
        used_at: None,
    }
}

fn grant(account: &AccountId, client: &ClientId, kind: GrantKind) -> Grant {
    Grant {
        id: SessionId::generate(),
        account_id: account.clone(),
        client_id: client.clone(),
        scopes: ScopeSet::parse_lenient("universal-mcp-read account"),
        restrictions: Restrictions::default(),
        kind,
        resource: "http://x/mcp".into(),
        auth_time: 10,
        created_at: 10,
        revoked_at: None,
        dpop_jkt: None,
    }
}

fn refresh(session: &SessionId, client: &ClientId, hash: Vec<u8>) -> RefreshToken {
    RefreshToken {
        id: RefreshTokenId::generate(),
        hash,
        session_id: session.clone(),
        client_id: client.clone(),
        scopes: ScopeSet::parse_lenient("universal-mcp-read account"),
        expires_at: NOW + 3600,
        used_at: None,
        parent_id: None,
        created_at: 10,
    }
}

/// Everything one account can hold, stored: an app's grant (with a refresh token and a remembered
/// consent), a PAT made with the app's token and one from the browser, a browser session, an MCP
/// session, an unused authorization code, a handoff code, a connect flow, a connection with its sealed
/// credential, and emailed links.
struct Holdings {
    account: AccountId,
    seed: u8,
    client: ClientId,
    grant: Grant,
    pat_sessions: Vec<SessionId>,
    mcp_session: String,
    connection: ConnectionId,
}

async fn holdings(store: &SqlStore, email: &str, seed: u8) -> Holdings {
    let a = account(store, email, 100 + i64::from(seed)).await;
    let c = client(store).await;
    // The app's grant, through a code like the token endpoint redeems it.
    let used = code(&a, &c, digest(seed, 1));
    store.insert_code(&used).await.unwrap();
    let g = grant(&a, &c, GrantKind::OAuth);
    assert!(store.redeem_code(&used.hash, &g, &refresh(&g.id, &c, digest(seed, 2)), 11).await.unwrap());
    store.remember_consent(&a, &c, "universal-mcp-read account", 11).await.unwrap();
    // An unused code: it could still become a grant.
    store.insert_code(&code(&a, &c, digest(seed, 3))).await.unwrap();
    // Two PATs: one made with the app's token, one from the browser.
    let mut pat_sessions = Vec::new();
    for (k, parent) in [(4u8, Some(g.id.clone())), (5, None)] {
        let pg = grant(&a, &ClientId::from_string("cli_personal_access_token"), GrantKind::PersonalAccessToken);
        let p = PersonalAccessToken {
            id: format!("pat_{}", uuid::Uuid::new_v4().simple()),
            account_id: a.clone(),
            session_id: pg.id.clone(),
            parent_session_id: parent,
            name: "p".into(),
            hash: digest(seed, k),
            created_at: 20,
            // The app's PAT expires an hour from NOW; the browser's never does.
            expires_at: (k == 4).then_some(NOW + 3600),
            revoked_at: None,
        };
        assert_eq!(store.create_pat(&p, &pg, 100).await.unwrap(), PatCreation::Created);
        pat_sessions.push(pg.id);
    }
    store
        .create_browser_session(&StoredBrowserSession {
            id_hash: digest(seed, 6),
            account_id: a.clone(),
            created_at: 20,
            expires_at: NOW + 3600,
            ended_at: None,
            user_agent: None,
            last_seen_at: None,
        })
        .await
        .unwrap();
    let mcp_session = format!("mcp-{}", uuid::Uuid::new_v4().simple());
    store
        .create_mcp_session(&McpSession {
            id: mcp_session.clone(),
            account_id: a.clone(),
            grant_id: g.id.clone(),
            client_id: c.as_str().to_owned(),
            protocol_version: "2025-11-25".into(),
            client_name: None,
            client_features: Default::default(),
            log_level: None,
            created_at: 20,
            expires_at: NOW + 3600,
            ended_at: None,
        })
        .await
        .unwrap();
    store
        .insert_handoff_code(
            &a,
            &HandoffCode {
                code_hash: digest(seed, 7),
                account_id: a.clone(),
                client_id: ClientId::from_string("cli_app"),
                intent: HandoffIntent::Connections,
                redirect_uri: "https://app.example/settings".into(),
                created_at: NOW - 5,
                expires_at: NOW + 25,
            },
        )
        .await
        .unwrap();
    store
        .insert_connection_flow(
            &a,
            &ConnectionFlow {
                state_hash: digest(seed, 8),
                account_id: a.clone(),
                client_id: None,
                provider_id: "github".into(),
                redirect_url: "https://app.example/done".into(),
                upstream: None,
                created_at: NOW - 5,
                expires_at: NOW + 600,
            },
        )
        .await
        .unwrap();
    let conn = Connection {
        id: ConnectionId::generate(),
        account_id: a.clone(),
        provider_id: "github".into(),
        provider_user_id: Some("u-1".into()),
        scopes: vec!["repo".into()],
        status: ConnectionStatus::Active,
        expires_at: None,
        can_refresh: false,
        metadata: serde_json::json!({}),
        last_error: None,
        created_at: 30,
        updated_at: 30,
    };
    assert!(store.insert_connection(&a, &conn, b"sealed upstream credential", 10).await.unwrap());
    for (k, purpose) in [(9u8, EmailPurpose::VerifyEmail), (10, EmailPurpose::ResetPassword)] {
        store
            .create_email_token(&StoredEmailToken::new(digest(seed, k), a.clone(), purpose, email.into(), NOW))
            .await
            .unwrap();
    }
    Holdings { account: a, seed, client: c, grant: g, pat_sessions, mcp_session, connection: conn.id }
}

/// Does every credential of `h` still work (each as the part of the server that checks it would see it)?
async fn all_live(store: &SqlStore, h: &Holdings) -> bool {
    let session = store.session_status(&h.grant.id).await.unwrap().is_some_and(|s| s.active);
    let refresh = store.refresh_token(&digest(h.seed, 2)).await.unwrap().is_some_and(|(_, g)| g.is_active());
    let mut pats = true;
    for k in [4, 5] {
        pats &= store
            .pat_by_hash(&digest(h.seed, k))
            .await
            .unwrap()
            .is_some_and(|(p, g, _)| p.revoked_at.is_none() && g.is_active());
    }
    let browser = store.browser_session(&digest(h.seed, 6)).await.unwrap().is_some_and(|s| s.is_live(NOW));
    let mcp = store.mcp_session(&h.account, &h.mcp_session).await.unwrap().is_some_and(|s| s.ended_at.is_none());
    session && refresh && pats && browser && mcp
}

async fn accounts_are_listed_newest_first_filtered_and_paged_with_counts(store: Arc<SqlStore>) {
    let q = |email: Option<&str>, status: Option<AccountStatus>, page: u32, limit: u32| AccountQuery {
        email_contains: email.map(str::to_owned),
        status,
        page,
        limit,
    };
    let emails =
        |p: &bk_domain::account::AccountPage| p.items.iter().map(|o| o.account.email.clone()).collect::<Vec<_>>();
    // Created in this order (each later than the one before): the list shows the newest first.
    let alice = holdings(&store, "alice@example.com", 1).await;
    let bob = account(&store, "bob@example.org", 200).await;
    account(&store, "carol_x@example.com", 300).await;
    account(&store, "caroloxa@example.com", 400).await;
    let erin = account(&store, "erin@example.com", 500).await;
    store.disable_account(&bob, NOW).await.unwrap().unwrap();
    store.delete_account(&erin, NOW).await.unwrap().unwrap();

    let all = store.list_accounts(&q(None, None, 1, MAX_ACCOUNTS_PAGE), NOW).await.unwrap();
    assert_eq!(all.total, 5);
    assert_eq!(
        emails(&all),
        [
            deleted_email(&erin),
            "caroloxa@example.com".into(),
            "carol_x@example.com".into(),
            "bob@example.org".into(),
            "alice@example.com".into()
        ]
    );
    let statuses: Vec<_> = all.items.iter().map(|o| o.account.status()).collect();
    assert_eq!(
        statuses,
        [
            AccountStatus::Deleted,
            AccountStatus::Active,
            AccountStatus::Active,
            AccountStatus::Disabled,
            AccountStatus::Active
        ]
    );
    // Counts: alice holds one app grant (the PATs' own sessions are not apps), two live PATs, one connection.
    let a = all.items.iter().find(|o| o.account.id == alice.account).unwrap();
    assert_eq!((a.live_grants, a.live_pats, a.connections), (1, 2, 1));
    assert!(a.account.email_verified());
    let one = store.account_overview(&alice.account, NOW).await.unwrap().unwrap();
    assert_eq!((one.live_grants, one.live_pats, one.connections), (1, 2, 1));
    assert_eq!(one.account.email, "alice@example.com");
    // An expired PAT no longer counts.
    assert_eq!(store.account_overview(&alice.account, NOW + 3600).await.unwrap().unwrap().live_pats, 1);
    assert!(store.account_overview(&AccountId::generate(), NOW).await.unwrap().is_none());

    // The email filter: a substring, in any case, `_` and `%` taken literally.
    assert_eq!(
        emails(&store.list_accounts(&q(Some("EXAMPLE.ORG"), None, 1, 10), NOW).await.unwrap()),
        ["bob@example.org"]
    );
    assert_eq!(
        emails(&store.list_accounts(&q(Some("carol_"), None, 1, 10), NOW).await.unwrap()),
        ["carol_x@example.com"]
    );
    assert_eq!(store.list_accounts(&q(Some("carol"), None, 1, 10), NOW).await.unwrap().total, 2);
    assert_eq!(store.list_accounts(&q(Some("%"), None, 1, 10), NOW).await.unwrap().total, 0);
    assert_eq!(
        store.list_accounts(&q(Some("erin"), None, 1, 10), NOW).await.unwrap().total,
        0,
        "deleted: its email is gone"
    );
    // The status filter.
    let by = |s| q(None, Some(s), 1, 10);
    assert_eq!(store.list_accounts(&by(AccountStatus::Active), NOW).await.unwrap().total, 3);
    assert_eq!(emails(&store.list_accounts(&by(AccountStatus::Disabled), NOW).await.unwrap()), ["bob@example.org"]);
    assert_eq!(emails(&store.list_accounts(&by(AccountStatus::Deleted), NOW).await.unwrap()), [deleted_email(&erin)]);
    assert_eq!(
        emails(&store.list_accounts(&q(Some("a"), Some(AccountStatus::Active), 1, 10), NOW).await.unwrap()),
        ["caroloxa@example.com", "carol_x@example.com", "alice@example.com"]
    );
    // Pages.
    let p2 = store.list_accounts(&q(None, None, 2, 3), NOW).await.unwrap();
    assert_eq!((p2.total, emails(&p2)), (5, vec!["bob@example.org".to_owned(), "alice@example.com".to_owned()]));
    assert!(store.list_accounts(&q(None, None, 3, 3), NOW).await.unwrap().items.is_empty());
}

async fn disabling_revokes_everything_the_account_holds_at_once_and_is_idempotent(store: Arc<SqlStore>) {
    let h = holdings(&store, "disable-me@example.com", 21).await;
    let other = holdings(&store, "bystander@example.com", 22).await;
    assert!(all_live(&store, &h).await && all_live(&store, &other).await);

    let r = store.disable_account(&h.account, NOW).await.unwrap().unwrap();
    assert!(r.newly_disabled);
    let mut revoked = r.sessions.clone();
    revoked.sort();
    let mut expected = vec![h.grant.id.clone(), h.pat_sessions[0].clone(), h.pat_sessions[1].clone()];
    expected.sort();
    assert_eq!(revoked, expected, "the app's grant and both PATs' sessions, each named once");
    assert_eq!((r.pats, r.browser_sessions), (2, 1));

    // Each credential, as the part of the server that checks it sees it.
    assert!(!store.session_status(&h.grant.id).await.unwrap().unwrap().active, "access tokens are refused");
    assert!(!store.refresh_token(&digest(h.seed, 2)).await.unwrap().unwrap().1.is_active(), "refresh is refused");
    for k in [4, 5] {
        let (p, g, _) = store.pat_by_hash(&digest(h.seed, k)).await.unwrap().unwrap();
        assert!(p.revoked_at.is_some() && !g.is_active(), "PAT {k} is revoked with its session");
    }
    assert!(!store.browser_session(&digest(h.seed, 6)).await.unwrap().unwrap().is_live(NOW), "signed out");
    assert!(store.mcp_session(&h.account, &h.mcp_session).await.unwrap().unwrap().ended_at.is_some());
    assert!(store.list_sessions(&h.account).await.unwrap().is_empty());
    assert!(store.list_pats(&h.account).await.unwrap().is_empty());
    // What could still have become a credential is spent.
    let g2 = grant(&h.account, &h.client, GrantKind::OAuth);
    assert!(
        !store
            .redeem_code(&digest(h.seed, 3), &g2, &refresh(&g2.id, &h.client, digest(h.seed, 11)), NOW)
            .await
            .unwrap(),
        "an unused code can no longer be redeemed"
    );
    assert!(store.session(&h.account, &g2.id).await.unwrap().is_none());
    assert!(store.take_handoff_code(&digest(h.seed, 7), NOW).await.unwrap().is_none(), "the handoff code is spent");
    assert!(store.take_connection_flow(&digest(h.seed, 8), NOW).await.unwrap().is_none(), "the connect flow is spent");
    // The account shows it; its connections and sign-up data are kept (disabling is reversible).
    let a = store.account(&h.account).await.unwrap().unwrap();
    assert_eq!((a.disabled_at, a.deleted_at, a.status()), (Some(NOW), None, AccountStatus::Disabled));
    assert!(a.is_disabled());
    assert_eq!(a.email, "disable-me@example.com");
    assert!(a.password_hash.is_some());
    assert!(store.sealed_credential(&h.account, &h.connection).await.unwrap().is_some());
    let o = store.account_overview(&h.account, NOW).await.unwrap().unwrap();
    assert_eq!((o.live_grants, o.live_pats, o.connections), (0, 0, 1));

    // The other account is untouched.
    assert!(all_live(&store, &other).await);
    assert!(store.take_handoff_code(&digest(other.seed, 7), NOW).await.unwrap().is_some());
    assert!(store.account(&other.account).await.unwrap().unwrap().disabled_at.is_none());

    // Again: nothing more to revoke, and the first time stays.
    let again = store.disable_account(&h.account, NOW + 50).await.unwrap().unwrap();
    assert_eq!((again.newly_disabled, again.sessions.len(), again.pats, again.browser_sessions), (false, 0, 0, 0));
    assert_eq!(store.account(&h.account).await.unwrap().unwrap().disabled_at, Some(NOW));
    // Something that became live since (a PAT made in the same instant by a request already past its
    // checks) is revoked by disabling again.
    let pg = grant(&h.account, &ClientId::from_string("cli_personal_access_token"), GrantKind::PersonalAccessToken);
    let late = PersonalAccessToken {
        id: "pat_late".into(),
        account_id: h.account.clone(),
        session_id: pg.id.clone(),
        parent_session_id: None,
        name: "late".into(),
        hash: digest(h.seed, 12),
        created_at: NOW,
        expires_at: None,
        revoked_at: None,
    };
    assert_eq!(store.create_pat(&late, &pg, 100).await.unwrap(), PatCreation::Created);
    let swept = store.disable_account(&h.account, NOW + 60).await.unwrap().unwrap();
    assert_eq!((swept.sessions, swept.pats), (vec![pg.id.clone()], 1));
    // An account that does not exist.
    assert!(store.disable_account(&AccountId::generate(), NOW).await.unwrap().is_none());
}

async fn enabling_lifts_a_disable_and_brings_nothing_back(store: Arc<SqlStore>) {
    let h = holdings(&store, "enable-me@example.com", 31).await;
    assert_eq!(store.enable_account(&h.account).await.unwrap(), Some(AccountEnabling::AlreadyActive));
    store.disable_account(&h.account, NOW).await.unwrap().unwrap();
    assert_eq!(store.enable_account(&h.account).await.unwrap(), Some(AccountEnabling::Enabled));
    let a = store.account(&h.account).await.unwrap().unwrap();
    assert_eq!((a.disabled_at, a.status(), a.is_disabled()), (None, AccountStatus::Active, false));
    // Nothing revoked comes back.
    assert!(!store.session_status(&h.grant.id).await.unwrap().unwrap().active);
    assert!(store.pat_by_hash(&digest(h.seed, 5)).await.unwrap().unwrap().0.revoked_at.is_some());
    assert!(!store.browser_session(&digest(h.seed, 6)).await.unwrap().unwrap().is_live(NOW));
    assert!(store.list_sessions(&h.account).await.unwrap().is_empty());
    assert_eq!(store.enable_account(&h.account).await.unwrap(), Some(AccountEnabling::AlreadyActive));
    // Disabled again later: a new time.
    store.disable_account(&h.account, NOW + 5).await.unwrap().unwrap();
    assert_eq!(store.account(&h.account).await.unwrap().unwrap().disabled_at, Some(NOW + 5));
    // A deleted account stays deleted.
    store.delete_account(&h.account, NOW + 10).await.unwrap().unwrap();
    assert_eq!(store.enable_account(&h.account).await.unwrap(), Some(AccountEnabling::Deleted));
    let a = store.account(&h.account).await.unwrap().unwrap();
    assert_eq!((a.status(), a.disabled_at), (AccountStatus::Deleted, Some(NOW + 5)));
    assert_eq!(store.enable_account(&AccountId::generate()).await.unwrap(), None);
}

async fn deleting_erases_credentials_frees_the_email_and_keeps_the_audit_rows(store: Arc<SqlStore>) {
    let h = holdings(&store, "delete-me@example.com", 41).await;
    let other = holdings(&store, "neighbour@example.com", 42).await;
    // Audit rows about the account, one naming its email (as a sign-in row does).
    let link = |prev: &str, seq: i64, _e: &AuditEvent| format!("h{seq}:{}", prev.len());
    let events = vec![
        AuditEvent::new("auth.signin", Outcome::Success, 1)
            .account(&h.account)
            .detail("email", "delete-me@example.com"),
        AuditEvent::new("mcp.tools_call", Outcome::Success, 2).account(&h.account).target("whoami"),
    ];
    store.append_audit(&events, &link).await.unwrap();
    let audit_q = AuditQuery { limit: 100, ..AuditQuery::default() };
    let before = store.query_audit(Some(&h.account), &audit_q).await.unwrap();
    assert_eq!(before.len(), 2);

    // Its sign-in methods: an authenticator with recovery codes, a passkey.
    use bk_domain::ports::{PasskeyStore, SecondFactorStore, StoredTotp};
    let totp = StoredTotp { account_id: h.account.clone(), sealed_secret: vec![1; 40], created_at: NOW, last_step: 0 };
    assert!(store.enable_totp(&totp, &[vec![2; 32]]).await.unwrap());
    let passkey = bk_domain::passkey::StoredPasskey {
        credential_id: format!("cred-{}", h.seed),
        account_id: h.account.clone(),
        name: "Laptop".into(),
        credential: "{}".into(),
        created_at: NOW,
        last_used_at: None,
    };
    assert!(store.add_passkey(&passkey, 5).await.unwrap());

    let e = store.delete_account(&h.account, NOW).await.unwrap().unwrap();
    assert!(e.newly_deleted && e.revoked.newly_disabled);
    assert!(store.totp(&h.account).await.unwrap().is_none(), "the sealed TOTP secret is erased");
    assert_eq!(store.recovery_codes_left(&h.account).await.unwrap(), 0);
    assert!(store.passkey(&passkey.credential_id).await.unwrap().is_none(), "the passkey is erased");
    assert_eq!(e.revoked.sessions.len(), 3);
    assert_eq!((e.connections, e.pats, e.email_links, e.browser_sessions), (1, 2, 2, 1));

    // The account: deleted, its email a placeholder, no password, nothing verified.
    let a = store.account(&h.account).await.unwrap().unwrap();
    assert_eq!(a.email, deleted_email(&h.account));
    assert_eq!((a.password_hash.as_deref(), a.email_verified_at), (None, None));
    assert_eq!((a.status(), a.deleted_at, a.disabled_at), (AccountStatus::Deleted, Some(NOW), Some(NOW)));
    assert!(store.account_by_email("delete-me@example.com").await.unwrap().is_none());
    assert!(!store.set_password(&h.account, "$argon2id$new").await.unwrap(), "a deleted account gets no password back");
    assert_eq!(store.account(&h.account).await.unwrap().unwrap().password_hash, None);
    // Credentials and links: gone, not merely revoked.
    assert!(store.sealed_credential(&h.account, &h.connection).await.unwrap().is_none(), "the ciphertext is erased");
    assert!(store.connection(&h.account, &h.connection).await.unwrap().is_none());
    for k in [4, 5] {
        assert!(store.pat_by_hash(&digest(h.seed, k)).await.unwrap().is_none());
    }
    assert!(store.refresh_token(&digest(h.seed, 2)).await.unwrap().is_none());
    assert!(store.code(&digest(h.seed, 3)).await.unwrap().is_none());
    assert!(store.email_token(&digest(h.seed, 9)).await.unwrap().is_none());
    assert!(store.email_token(&digest(h.seed, 10)).await.unwrap().is_none());
    assert!(store.browser_session(&digest(h.seed, 6)).await.unwrap().is_none());
    assert!(store.mcp_session(&h.account, &h.mcp_session).await.unwrap().is_none());
    assert!(store.take_handoff_code(&digest(h.seed, 7), NOW).await.unwrap().is_none());
    assert!(store.take_connection_flow(&digest(h.seed, 8), NOW).await.unwrap().is_none());
    assert!(!store.has_consent(&h.account, &h.client, "universal-mcp-read account").await.unwrap());
    // Its revoked grant stays (the record of what it authorized), revoked.
    assert!(!store.session(&h.account, &h.grant.id).await.unwrap().unwrap().is_active());
    // The audit rows stay, the email replaced by the placeholder where a row named it (marked redacted).
    let after = store.query_audit(Some(&h.account), &audit_q).await.unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!(e.audit_rows_redacted, 1);
    assert_eq!(after[0].event.details["email"], deleted_email(&h.account), "the row naming the email is redacted");
    assert!(after[0].redacted_at.is_some());
    assert_eq!(
        (&after[0].hash, &after[0].prev_hash, after[0].seq),
        (&before[0].hash, &before[0].prev_hash, before[0].seq)
    );
    assert_eq!(after[1], before[1], "a row without the email is untouched");
    // The address can sign up again, as a new account.
    let again = account(&store, "delete-me@example.com", 900).await;
    assert_ne!(again, h.account);
    // The neighbour is untouched.
    assert!(all_live(&store, &other).await);
    assert!(store.sealed_credential(&other.account, &other.connection).await.unwrap().is_some());
    assert!(store.email_token(&digest(other.seed, 9)).await.unwrap().is_some());

    // Deleting again erases nothing more and keeps the first time.
    let e2 = store.delete_account(&h.account, NOW + 100).await.unwrap().unwrap();
    assert!(!e2.newly_deleted && !e2.revoked.newly_disabled);
    assert_eq!(
        (e2.connections, e2.pats, e2.email_links, e2.browser_sessions, e2.revoked.sessions.len()),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(store.account(&h.account).await.unwrap().unwrap().deleted_at, Some(NOW));
    assert!(store.delete_account(&AccountId::generate(), NOW).await.unwrap().is_none());
}

/// A code redeemed at the moment the account is disabled (or deleted): either the redemption comes
/// first and the disable revokes its grant, or the disable comes first and the code is gone. Never a
/// live grant, and no deadlock between the two on PostgreSQL.
async fn a_code_redeemed_while_the_account_is_disabled_leaves_no_live_session(store: Arc<SqlStore>) {
    let c = client(&store).await;
    for i in 0..12u8 {
        let a = account(&store, &format!("race-{i}@example.com"), 10).await;
        let unused = code(&a, &c, digest(200, i));
        store.insert_code(&unused).await.unwrap();
        let g = grant(&a, &c, GrantKind::OAuth);
        let r = refresh(&g.id, &c, digest(201, i));
        let redeem = {
            let store = store.clone();
            tokio::spawn(async move { store.redeem_code(&unused.hash, &g, &r, NOW).await.unwrap() })
        };
        // Every other round deletes instead (which disables first).
        let disable = {
            let (store, a) = (store.clone(), a.clone());
            tokio::spawn(async move {
                if i % 2 == 0 {
                    store.disable_account(&a, NOW).await.unwrap().unwrap();
                } else {
                    store.delete_account(&a, NOW).await.unwrap().unwrap();
                }
            })
        };
        let (_, _) = (redeem.await.unwrap(), disable.await.unwrap());
        assert!(store.list_sessions(&a).await.unwrap().is_empty(), "round {i}: a grant outlived the disable");
        assert!(
            store.refresh_token(&digest(201, i)).await.unwrap().is_none_or(|(_, g)| !g.is_active()),
            "round {i}: a refresh token outlived the disable"
        );
    }
}
