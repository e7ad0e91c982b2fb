//! The one tool policy: may this caller see (and so call) this tool? `tools/list` shows exactly the
//! tools it answers `Visible` for, and `tools/call` treats a `Hidden` tool exactly like an unknown
//! one. Method-level scope checks (403 `insufficient_scope` so a client can step up) stay in
//! dispatch; this decides per tool.

use bk_domain::restrictions::{ProviderPermission, Restrictions};
use bk_domain::scope::ScopeSet;

use crate::tools::{Access, ToolDescriptor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    Visible,
    Hidden,
}

/// Whether a caller with these `scopes` and `restrictions`, through a client allowed
/// `client_providers` (`None` = every provider), may see `tool`.
///
/// - No `universal-mcp-read` (or read-write): nothing is visible.
/// - A provider's tool: hidden when the client may not use the provider, when the grant's
///   permission for it is `disabled`, and (a write tool) when it is `read`.
/// - An agent's or knowledge base's tool: hidden when the grant names agents / knowledge bases
///   (`Some`) and not this one.
/// - The gateway's own tools (no provider, agent or knowledge base): visible with the scope.
pub fn visibility(
    scopes: &ScopeSet,
    restrictions: &Restrictions,
    client_providers: Option<&[String]>,
    tool: &ToolDescriptor,
) -> Visibility {
    if !scopes.allows_mcp_read() {
        return Visibility::Hidden;
    }
    if let Some(provider) = &tool.provider {
        if client_providers.is_some_and(|allowed| !allowed.iter().any(|p| p == provider)) {
            return Visibility::Hidden;
        }
        match restrictions.permission_for(provider) {
            ProviderPermission::Disabled => return Visibility::Hidden,
            ProviderPermission::Read if tool.access == Access::Write => return Visibility::Hidden,
            ProviderPermission::Read | ProviderPermission::ReadWrite => {}
        }
    }
    if !within(&restrictions.allowed_agent_ids, &tool.agent_id)
        || !within(&restrictions.allowed_knowledge_base_ids, &tool.knowledge_base_id)
    {
        return Visibility::Hidden;
    }
    Visibility::Visible
}

/// Whether the caller may read what a provider offers besides tools — its prompts and resources:
/// the rule for its read-only tools (scope, the client's providers, the grant's permission).
pub fn provider_readable(
    scopes: &ScopeSet,
    restrictions: &Restrictions,
    client_providers: Option<&[String]>,
    provider: &str,
) -> bool {
    scopes.allows_mcp_read()
        && client_providers.is_none_or(|allowed| allowed.iter().any(|p| p == provider))
        && restrictions.permission_for(provider) != ProviderPermission::Disabled
}

/// A tool owned by `id` is within `allowed` (`None` = all); a tool owned by nothing always is.
fn within(allowed: &Option<Vec<String>>, id: &Option<String>) -> bool {
    match (allowed, id) {
        (Some(allowed), Some(id)) => allowed.iter().any(|a| a == id),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use bk_domain::scope::Scope;
    use serde_json::json;

    use super::*;

    fn tool(provider: Option<&str>, access: Access) -> ToolDescriptor {
        ToolDescriptor {
            name: "t".into(),
            title: "T".into(),
            description: "d".into(),
            input_schema: json!({"type": "object"}),
            output_schema: None,
            access,
            provider: provider.map(str::to_owned),
            agent_id: None,
            knowledge_base_id: None,
            upstream: None,
        }
    }

    fn read() -> ScopeSet {
        ScopeSet::from_scopes([Scope::McpRead])
    }

    #[test]
    fn builtins_ignore_provider_permissions() {
        let r = Restrictions::from_params(None, Some("disabled"), None, None).unwrap();
        let whoami = tool(None, Access::Read);
        assert_eq!(visibility(&read(), &r, Some(&[]), &whoami), Visibility::Visible);
        assert_eq!(visibility(&ScopeSet::empty(), &r, None, &whoami), Visibility::Hidden);
    }

    #[test]
    fn read_permission_hides_write_tools_only() {
        let r = Restrictions::from_params(Some(r#"{"google":"read"}"#), None, None, None).unwrap();
        let rw = ScopeSet::from_scopes([Scope::McpReadWrite]);
        assert_eq!(visibility(&rw, &r, None, &tool(Some("google"), Access::Read)), Visibility::Visible);
        assert_eq!(visibility(&rw, &r, None, &tool(Some("google"), Access::Write)), Visibility::Hidden);
        assert_eq!(visibility(&rw, &r, None, &tool(Some("slack"), Access::Write)), Visibility::Visible);
    }

    #[test]
    fn knowledge_base_restriction_hides_other_knowledge_bases() {
        let r = Restrictions::from_params(None, None, None, Some(r#"["kb1"]"#)).unwrap();
        let mut t = tool(None, Access::Read);
        t.knowledge_base_id = Some("kb1".into());
        assert_eq!(visibility(&read(), &r, None, &t), Visibility::Visible);
        t.knowledge_base_id = Some("kb2".into());
        assert_eq!(visibility(&read(), &r, None, &t), Visibility::Hidden);
        assert_eq!(visibility(&read(), &Restrictions::unrestricted(), None, &t), Visibility::Visible);
    }

    /// Scope × provider permission × the client's providers × access, for a provider's tools and
    /// for its prompts and resources (`provider_readable`): every combination, one expectation each.
    #[test]
    fn the_policy_matrix() {
        let scopes = [
            ("none", ScopeSet::empty()),
            ("read", read()),
            ("read-write", ScopeSet::from_scopes([Scope::McpReadWrite])),
        ];
        let permissions = [None, Some("read-write"), Some("read"), Some("disabled")];
        let clients: [Option<&[String]>; 3] = [None, Some(&[]), Some(&["acme".to_owned()][..])];
        let mut checked = 0;
        for (scope_name, scope) in &scopes {
            for permission in permissions {
                let r = match permission {
                    Some(p) => {
                        Restrictions::from_params(Some(&format!(r#"{{"acme":"{p}"}}"#)), None, None, None).unwrap()
                    }
                    None => Restrictions::unrestricted(),
                };
                for client in clients {
                    let client_allows = client.is_none_or(|c| c.iter().any(|p| p == "acme"));
                    let open = *scope_name != "none" && client_allows && permission != Some("disabled");
                    for access in [Access::Read, Access::Write] {
                        let expected = open && !(permission == Some("read") && access == Access::Write);
                        let got = visibility(scope, &r, client, &tool(Some("acme"), access)) == Visibility::Visible;
                        assert_eq!(
                            got, expected,
                            "tool {access:?}: scope {scope_name}, permission {permission:?}, client {client:?}"
                        );
                        checked += 1;
                    }
                    assert_eq!(
                        provider_readable(scope, &r, client, "acme"),
                        open,
                        "prompts/resources: scope {scope_name}, permission {permission:?}, client {client:?}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 3 * 4 * 3 * 3);
    }
}
