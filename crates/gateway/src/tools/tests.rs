//! The policy through the registry: what `tools/list` shows is exactly what `tools/call` resolves,
//! for every combination of scopes, provider permission, client providers and agent restriction;
//! and serialised lists are never shared between callers who see different tools.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bk_domain::connection::{Connection, ConnectionStatus};
use bk_domain::grant::GrantKind;
use bk_domain::ids::{AccountId, ClientId, ConnectionId, SessionId, TenantId};
use bk_domain::ports::{ConnectionPage, ConnectionQuery, ConnectionStore, LeaseAttempt};
use bk_domain::restrictions::Restrictions;
use bk_domain::scope::{Scope, ScopeSet};
use serde_json::{Value, json};

use super::*;

fn descriptor(name: &str, access: Access, provider: Option<&str>, agent: Option<&str>) -> ToolDescriptor {
    ToolDescriptor {
        name: name.to_owned(),
        title: name.to_owned(),
        description: format!("the {name} tool"),
        input_schema: json!({"type": "object"}),
        output_schema: None,
        access,
        provider: provider.map(str::to_owned),
        agent_id: agent.map(str::to_owned),
        knowledge_base_id: None,
        upstream: None,
    }
}

/// Tools of two providers (a read and a write tool each), one with no provider, one of an agent.
struct Fixture {
    listing: Mutex<ToolListing>,
}

impl Fixture {
    fn new() -> Self {
        let tools = vec![
            descriptor("alpha-read", Access::Read, Some("alpha"), None),
            descriptor("alpha-write", Access::Write, Some("alpha"), None),
            descriptor("beta-read", Access::Read, Some("beta"), None),
            descriptor("beta-write", Access::Write, Some("beta"), None),
            descriptor("local-read", Access::Read, None, None),
            descriptor("agent-tool", Access::Write, None, Some("agent-1")),
        ];
        Self { listing: Mutex::new(ToolListing { version: 7, tools: tools.into() }) }
    }
}

#[async_trait]
impl ToolSource for Arc<Fixture> {
    async fn list(&self, _ctx: &AccessContext) -> ToolListing {
        self.listing.lock().unwrap().clone()
    }

    async fn call(
        &self,
        _ctx: &AccessContext,
        tool: &ToolDescriptor,
        _args: &Value,
        _round: &Round<'_>,
    ) -> Result<Answer, ToolError> {
        Ok(Answer::Complete(ToolOutput { text: format!("called {}", tool.name), structured: None }))
    }
}

/// The grant in memory: what `restrict-access` swaps (compare-and-set, like the store).
#[derive(Default)]
struct MemoryGrant {
    restrictions: Mutex<Option<Restrictions>>,
}

#[async_trait]
impl GrantChanges for MemoryGrant {
    async fn narrow(
        &self,
        _ctx: &AccessContext,
        expected: &Restrictions,
        narrowed: &Restrictions,
    ) -> Result<bool, bk_domain::ports::StoreError> {
        let mut r = self.restrictions.lock().unwrap();
        let current = r.clone().unwrap_or_else(Restrictions::unrestricted);
        if &current != expected {
            return Ok(false);
        }
        *r = Some(narrowed.clone());
        Ok(true)
    }
}

fn builtins(grant: Arc<MemoryGrant>) -> BuiltinTools {
    builtins_with(grant, Arc::new(Connections::default()))
}

fn builtins_with(grant: Arc<MemoryGrant>, connections: Arc<dyn ConnectionStore>) -> BuiltinTools {
    struct FixedClock;
    impl bk_domain::access::Clock for FixedClock {
        fn now_ms(&self) -> i64 {
            1_000_000
        }
    }
    BuiltinTools::new(BuiltinDeps {
        connections,
        grants: grant,
        audit: Arc::new(bk_domain::audit::NoAudit),
        clock: Arc::new(FixedClock),
    })
}

const FIXTURE_TOOLS: [&str; 6] = ["alpha-read", "alpha-write", "beta-read", "beta-write", "local-read", "agent-tool"];
const BUILTINS: [&str; 3] = ["whoami", "list-connections", "restrict-access"];

/// Connections held in memory, listed per tenant (the store's own contract is tested in the store).
#[derive(Default)]
struct Connections(Vec<Connection>);

#[async_trait]
impl ConnectionStore for Connections {
    async fn insert_connection(
        &self,
        _: &TenantId,
        _: &Connection,
        _: &[u8],
        _: u32,
    ) -> bk_domain::ports::Result<bool> {
        Ok(false)
    }
    async fn connection(&self, t: &TenantId, id: &ConnectionId) -> bk_domain::ports::Result<Option<Connection>> {
        Ok(self.0.iter().find(|c| &c.account_id == t && &c.id == id).cloned())
    }
    async fn list_connections(&self, t: &TenantId, q: &ConnectionQuery) -> bk_domain::ports::Result<ConnectionPage> {
        let items: Vec<Connection> =
            self.0.iter().filter(|c| &c.account_id == t && q.providers.allows(&c.provider_id)).cloned().collect();
        Ok(ConnectionPage { total: items.len() as u64, items })
    }
    async fn sealed_credential(&self, _: &TenantId, _: &ConnectionId) -> bk_domain::ports::Result<Option<Vec<u8>>> {
        Ok(None)
    }
    async fn update_connection(
        &self,
        _: &TenantId,
        _: &Connection,
        _: Option<&[u8]>,
    ) -> bk_domain::ports::Result<bool> {
        Ok(false)
    }
    async fn delete_connection(&self, _: &TenantId, _: &ConnectionId) -> bk_domain::ports::Result<bool> {
        Ok(false)
    }
    async fn sealed_connection(
        &self,
        _: &TenantId,
        _: &ConnectionId,
    ) -> bk_domain::ports::Result<Option<bk_domain::ports::SealedConnection>> {
        Ok(None)
    }
    async fn acquire_refresh_lease(
        &self,
        _: &TenantId,
        _: &ConnectionId,
        _: i64,
        _: i64,
        _: &str,
    ) -> bk_domain::ports::Result<LeaseAttempt> {
        Ok(LeaseAttempt::Missing)
    }
    async fn finish_refresh(
        &self,
        _: &TenantId,
        _: &Connection,
        _: Option<&[u8]>,
        _: Option<i64>,
        _: &str,
    ) -> bk_domain::ports::Result<bool> {
        Ok(false)
    }
    async fn release_refresh_lease(&self, _: &TenantId, _: &ConnectionId, _: &str) -> bk_domain::ports::Result<()> {
        Ok(())
    }
    async fn sealed_credentials_page(
        &self,
        _: Option<&ConnectionId>,
        _: u32,
    ) -> bk_domain::ports::Result<Vec<bk_domain::ports::SealedRow>> {
        Ok(Vec::new())
    }
    async fn reseal_credential(
        &self,
        _: &TenantId,
        _: &ConnectionId,
        _: &[u8],
        _: &[u8],
    ) -> bk_domain::ports::Result<bool> {
        Ok(false)
    }
}

fn registry() -> (Tools, Arc<Fixture>) {
    let fixture = Arc::new(Fixture::new());
    let builtins = builtins(Arc::default());
    (Tools::new(vec![Box::new(builtins), Box::new(fixture.clone())]), fixture)
}

fn ctx(scopes: ScopeSet, restrictions: Restrictions) -> AccessContext {
    AccessContext {
        account_id: AccountId::from_string("acc_test"),
        email: "t@example.com".into(),
        client_id: ClientId::from_string("cli_test"),
        session_id: SessionId::from_string("ses_test"),
        scopes,
        restrictions,
        kind: GrantKind::OAuth,
        machine: false,
        claims: None,
        client_providers: None,
    }
}

async fn listed(tools: &Tools, ctx: &AccessContext, client: Option<&[String]>) -> Vec<String> {
    let json: Value = serde_json::from_str(&tools.list_json(ctx, client).await).unwrap();
    json["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

/// One cell of the matrix, in the words of the test.
#[derive(Clone, Copy, Debug)]
struct Cell {
    scopes: &'static str,
    /// `alpha=…` sets alpha's permission (others default to read-write); `default=…` sets the default.
    permission: &'static str,
    /// `None`, or `Some(true)` when the client's providers include alpha (`Some(false)`: only beta).
    client_includes_alpha: Option<bool>,
    /// `None`, or `Some(true)` when the grant's agents include agent-1 (`Some(false)`: only agent-2).
    agent_included: Option<bool>,
}

impl Cell {
    fn ctx(&self) -> AccessContext {
        let scopes = match self.scopes {
            "none" => ScopeSet::empty(),
            "read" => ScopeSet::from_scopes([Scope::McpRead]),
            "read-write" => ScopeSet::from_scopes([Scope::McpReadWrite]),
            other => panic!("{other}"),
        };
        let (which, level) = self.permission.split_once('=').unwrap();
        let (providers, default) = match which {
            "alpha" => (Some(format!("{{\"alpha\":\"{level}\"}}")), None),
            _ => (None, Some(level)),
        };
        let agents = self.agent_included.map(|yes| if yes { r#"["agent-1"]"# } else { r#"["agent-2"]"# });
        ctx(scopes, Restrictions::from_params(providers.as_deref(), default, agents, None).unwrap())
    }

    fn client(&self) -> Option<Vec<String>> {
        self.client_includes_alpha
            .map(|yes| if yes { vec!["alpha".to_owned(), "beta".to_owned()] } else { vec!["beta".to_owned()] })
    }

    /// What this cell should list, from the rules as the product states them.
    fn expected(&self) -> BTreeSet<&'static str> {
        let mut v = BTreeSet::new();
        if self.scopes == "none" {
            return v;
        }
        v.extend(BUILTINS);
        v.insert("local-read");
        if self.agent_included != Some(false) {
            v.insert("agent-tool");
        }
        let (which, level) = self.permission.split_once('=').unwrap();
        for provider in ["alpha", "beta"] {
            let level = if which == "default" || provider == which { level } else { "read-write" };
            let client_allows = provider == "beta" || self.client_includes_alpha != Some(false);
            if !client_allows || level == "disabled" {
                continue;
            }
            v.insert(if provider == "alpha" { "alpha-read" } else { "beta-read" });
            if level == "read-write" {
                v.insert(if provider == "alpha" { "alpha-write" } else { "beta-write" });
            }
        }
        v
    }
}

fn cells() -> Vec<Cell> {
    let mut cells = Vec::new();
    for scopes in ["none", "read", "read-write"] {
        for permission in [
            "alpha=disabled",
            "alpha=read",
            "alpha=read-write",
            "default=disabled",
            "default=read",
            "default=read-write",
        ] {
            for client_includes_alpha in [None, Some(true), Some(false)] {
                for agent_included in [None, Some(true), Some(false)] {
                    cells.push(Cell { scopes, permission, client_includes_alpha, agent_included });
                }
            }
        }
    }
    cells
}

#[tokio::test]
async fn policy_matrix_list_and_call_agree() {
    let (tools, _) = registry();
    let all: Vec<&str> = BUILTINS.iter().chain(FIXTURE_TOOLS.iter()).copied().chain(["no-such-tool"]).collect();
    let cells = cells();
    assert_eq!(cells.len(), 3 * 6 * 3 * 3);
    for cell in cells {
        let (ctx, client) = (cell.ctx(), cell.client());
        let names = listed(&tools, &ctx, client.as_deref()).await;
        let set: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(set.len(), names.len(), "{cell:?}: a name listed twice");
        assert_eq!(set, cell.expected(), "{cell:?}");
        for name in &all {
            let resolved = tools.resolve(&ctx, client.as_deref(), name).await;
            assert_eq!(resolved.is_some(), set.contains(name), "{cell:?}: list and call disagree on {name}");
            if let Some(tool) = resolved {
                assert_eq!(tool.descriptor().name, *name);
                let out = tools.call(&ctx, &tool, &json!({}), &Round::default()).await;
                if FIXTURE_TOOLS.contains(name) {
                    let Ok(Answer::Complete(out)) = out else { panic!("{cell:?}: {name} did not complete") };
                    assert_eq!(out.text, format!("called {name}"));
                }
            }
        }
    }
}

#[tokio::test]
async fn policy_matrix_specific_cells() {
    let (tools, _) = registry();
    let check = |cell: Cell, want: &'static [&'static str]| {
        let tools = &tools;
        async move {
            let names = listed(tools, &cell.ctx(), cell.client().as_deref()).await;
            assert_eq!(names, want, "{cell:?}");
        }
    };
    let base = Cell {
        scopes: "read-write",
        permission: "default=read-write",
        client_includes_alpha: None,
        agent_included: None,
    };
    // Unrestricted: everything, built-ins first, in source order.
    check(
        base,
        &[
            "whoami",
            "list-connections",
            "restrict-access",
            "alpha-read",
            "alpha-write",
            "beta-read",
            "beta-write",
            "local-read",
            "agent-tool",
        ],
    )
    .await;
    // default_provider_permission=disabled hides provider tools but never the gateway's own.
    check(
        Cell { scopes: "read", permission: "default=disabled", ..base },
        &["whoami", "list-connections", "restrict-access", "local-read", "agent-tool"],
    )
    .await;
    // alpha=read: alpha's write tool is hidden, beta keeps both.
    check(
        Cell { permission: "alpha=read", ..base },
        &[
            "whoami",
            "list-connections",
            "restrict-access",
            "alpha-read",
            "beta-read",
            "beta-write",
            "local-read",
            "agent-tool",
        ],
    )
    .await;
    // A client without alpha, and a grant for another agent.
    check(
        Cell { client_includes_alpha: Some(false), agent_included: Some(false), ..base },
        &["whoami", "list-connections", "restrict-access", "beta-read", "beta-write", "local-read"],
    )
    .await;
    // No MCP scope: nothing.
    check(Cell { scopes: "none", ..base }, &[]).await;
}

#[tokio::test]
async fn hidden_tool_resolves_like_an_unknown_tool() {
    let (tools, _) = registry();
    let r = Restrictions::from_params(Some(r#"{"alpha":"disabled"}"#), None, None, None).unwrap();
    let c = ctx(ScopeSet::from_scopes([Scope::McpReadWrite]), r);
    assert!(tools.resolve(&c, None, "alpha-read").await.is_none());
    assert!(tools.resolve(&c, None, "no-such-tool").await.is_none());
    assert!(tools.resolve(&c, None, "beta-read").await.is_some());
}

#[tokio::test]
async fn cached_list_is_never_shared_across_visible_sets() {
    let (tools, _) = registry();
    let rw = || ScopeSet::from_scopes([Scope::McpReadWrite]);
    let open = ctx(rw(), Restrictions::unrestricted());
    let narrow = ctx(rw(), Restrictions::from_params(Some(r#"{"alpha":"read"}"#), None, None, None).unwrap());
    let a1 = tools.list_json(&open, None).await;
    let b1 = tools.list_json(&narrow, None).await;
    let a2 = tools.list_json(&open, None).await;
    let b2 = tools.list_json(&narrow, None).await;
    assert_ne!(a1, b1, "different policies, different lists");
    assert!(a1.contains("alpha-write") && !b1.contains("alpha-write"));
    // The same caller is served the cached string, not a fresh serialisation.
    assert!(Arc::ptr_eq(&a1, &a2));
    assert!(Arc::ptr_eq(&b1, &b2));
    // A client narrower than the grant is a different visible set, so a different entry.
    let c = tools.list_json(&open, Some(&["beta".to_owned()])).await;
    assert!(!Arc::ptr_eq(&a1, &c) && !c.contains("alpha-read"));
    // Different restrictions with the same visible set may share an entry.
    let same = ctx(rw(), Restrictions::from_params(Some(r#"{"alpha":"read-write"}"#), None, None, None).unwrap());
    assert!(Arc::ptr_eq(&a1, &tools.list_json(&same, None).await));
    assert_eq!(tools.lists.len(), 3);
}

#[tokio::test]
async fn new_listing_version_is_not_served_a_stale_list() {
    let (tools, fixture) = registry();
    let c = ctx(ScopeSet::from_scopes([Scope::McpRead]), Restrictions::unrestricted());
    let before = tools.list_json(&c, None).await;
    *fixture.listing.lock().unwrap() =
        ToolListing { version: 8, tools: vec![descriptor("gamma-read", Access::Read, Some("gamma"), None)].into() };
    let after = listed(&tools, &c, None).await;
    assert_eq!(after, ["whoami", "list-connections", "restrict-access", "gamma-read"]);
    assert!(before.contains("alpha-read"));
    assert!(tools.resolve(&c, None, "alpha-read").await.is_none());
}

#[tokio::test]
async fn builtin_list_matches_the_golden_file() {
    let tools = Tools::new(vec![Box::new(builtins(Arc::default()))]);
    let c = ctx(ScopeSet::from_scopes([Scope::McpRead]), Restrictions::unrestricted());
    assert_eq!(&*tools.list_json(&c, None).await, include_str!("builtin_list.golden.json"));
    // default_provider_permission=disabled still sees the gateway's own tools.
    let disabled = ctx(c.scopes.clone(), Restrictions::from_params(None, Some("disabled"), None, None).unwrap());
    assert_eq!(&*tools.list_json(&disabled, None).await, include_str!("builtin_list.golden.json"));
    let whoami = tools.resolve(&disabled, None, "whoami").await.unwrap();
    assert_eq!(whoami.descriptor().provider, None);
    // The names upstream tools are kept off are exactly the built-ins'.
    let listed: Vec<String> = builtins(Arc::default()).list(&c).await.tools.iter().map(|t| t.name.clone()).collect();
    // (`use-agent`, the last name, is the agents crate's source.)
    assert_eq!(listed, super::BUILTIN_NAMES[..super::BUILTIN_NAMES.len() - 1]);
}

#[tokio::test]
async fn list_connections_shows_the_callers_own_connections_of_providers_it_may_use() {
    let c = ctx(
        ScopeSet::from_scopes([Scope::McpRead]),
        Restrictions::from_params(Some(r#"{"slack":"disabled"}"#), None, None, None).unwrap(),
    );
    let connection = |account: &AccountId, provider: &str| Connection {
        id: ConnectionId::generate(),
        account_id: account.clone(),
        provider_id: provider.into(),
        provider_user_id: None,
        scopes: vec![],
        status: ConnectionStatus::Active,
        expires_at: None,
        can_refresh: false,
        metadata: json!({}),
        last_error: None,
        created_at: 1,
        updated_at: 1,
    };
    let other = AccountId::generate();
    let store = Connections(vec![
        connection(&c.account_id, "github"),
        connection(&c.account_id, "slack"),
        connection(&other, "notion"),
    ]);
    let tools = Tools::new(vec![Box::new(builtins_with(Arc::default(), Arc::new(store)))]);
    let tool = tools.resolve(&c, None, "list-connections").await.unwrap();
    let listed = |out: Result<Answer, ToolError>| match out {
        Ok(Answer::Complete(out)) => out.structured.unwrap(),
        _ => panic!("list-connections did not complete"),
    };
    let out = listed(tools.call(&c, &tool, &json!({}), &Round::default()).await);
    assert_eq!(out["total"], 1);
    assert_eq!(out["connections"][0]["providerId"], "github");
    assert_eq!(out["connections"][0]["accountId"], c.account_id.as_str());
    // A client kept away from github sees none.
    let mut narrow = c.clone();
    narrow.client_providers = Some(vec!["google".into()]);
    let out = listed(tools.call(&narrow, &tool, &json!({}), &Round::default()).await);
    assert_eq!(out["total"], 0);
}

/// The agent seam: the tools an agent is offered (`Tools::visible`, behind `Gateway::visible_tools`)
/// are exactly `tools/list`'s, in its order, in every cell of the policy matrix — so a read-only
/// grant offers an agent no write tool.
#[tokio::test]
async fn agent_tools_equal_tools_list_in_every_cell() {
    let (tools, _) = registry();
    for cell in cells() {
        let (ctx, client) = (cell.ctx(), cell.client());
        let listed = listed(&tools, &ctx, client.as_deref()).await;
        let offered: Vec<String> = tools.visible(&ctx, client.as_deref()).await.into_iter().map(|t| t.name).collect();
        assert_eq!(offered, listed, "{cell:?}");
        if cell.permission == "default=read" {
            assert!(
                !offered.iter().any(|n| n.ends_with("-write")),
                "{cell:?}: a write tool offered to a read-only grant"
            );
        }
    }
}
