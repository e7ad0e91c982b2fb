//! Scopes: the capability categories a token may carry. Unknown scopes are silently dropped.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    McpRead,
    McpReadWrite,
    LlmAll,
    AgentsAll,
    AgentsUse,
    Connections,
    Account,
    UserData,
    Providers,
    OpenId,
    Profile,
    Email,
}

impl Scope {
    pub const ALL: [Scope; 12] = [
        Scope::McpRead,
        Scope::McpReadWrite,
        Scope::LlmAll,
        Scope::AgentsAll,
        Scope::AgentsUse,
        Scope::Connections,
        Scope::Account,
        Scope::UserData,
        Scope::Providers,
        Scope::OpenId,
        Scope::Profile,
        Scope::Email,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::McpRead => "universal-mcp-read",
            Scope::McpReadWrite => "universal-mcp-read-write",
            Scope::LlmAll => "llm-all",
            Scope::AgentsAll => "agents-all",
            Scope::AgentsUse => "agents-use",
            Scope::Connections => "connections",
            Scope::Account => "account",
            Scope::UserData => "user-data",
            Scope::Providers => "providers",
            Scope::OpenId => "openid",
            Scope::Profile => "profile",
            Scope::Email => "email",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|sc| sc.as_str() == s)
    }

    /// What the consent page says this scope lets the application do.
    pub fn describe(self) -> &'static str {
        match self {
            Scope::McpRead => "See which tools are available to you (list tools)",
            Scope::McpReadWrite => "Use tools on your behalf, including ones that change data",
            Scope::LlmAll => "Use language models billed to your credits",
            Scope::AgentsAll => "Create, change and delete your agents",
            Scope::AgentsUse => "Chat with your agents",
            Scope::Connections => "Manage your connected services",
            Scope::Account => "Read your account details",
            Scope::UserData => "Access your stored data",
            Scope::Providers => "See the catalog of services you can connect",
            Scope::OpenId => "Confirm your identity",
            Scope::Profile => "See your basic profile",
            Scope::Email => "See your email address",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes, kept in canonical order so equal sets print equally.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    pub fn empty() -> Self {
        ScopeSet(Vec::new())
    }

    pub fn from_scopes(scopes: impl IntoIterator<Item = Scope>) -> Self {
        let mut v: Vec<Scope> = scopes.into_iter().collect();
        v.sort();
        v.dedup();
        ScopeSet(v)
    }

    /// Parses a space-separated scope string; unknown scopes are dropped silently.
    pub fn parse_lenient(s: &str) -> Self {
        Self::from_scopes(s.split_ascii_whitespace().filter_map(Scope::parse))
    }

    /// Every known scope.
    pub fn all() -> Self {
        Self::from_scopes(Scope::ALL)
    }

    pub fn contains(&self, s: Scope) -> bool {
        self.0.binary_search(&s).is_ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_subset_of(&self, other: &ScopeSet) -> bool {
        self.0.iter().all(|s| other.contains(*s))
    }

    pub fn intersect(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.iter().copied().filter(|s| other.contains(*s)).collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    /// The set plus what its members imply (`universal-mcp-read-write` implies `universal-mcp-read`),
    /// for ceilings: a client allowed to call tools may also ask only to list them.
    pub fn with_implied(&self) -> ScopeSet {
        if self.contains(Scope::McpReadWrite) && !self.contains(Scope::McpRead) {
            Self::from_scopes(self.iter().chain([Scope::McpRead]))
        } else {
            self.clone()
        }
    }

    /// May this set list MCP tools? (`universal-mcp-read-write` implies read.)
    pub fn allows_mcp_read(&self) -> bool {
        self.contains(Scope::McpRead) || self.contains(Scope::McpReadWrite)
    }

    pub fn allows_mcp_call(&self) -> bool {
        self.contains(Scope::McpReadWrite)
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_scopes_are_dropped_and_order_is_canonical() {
        let s = ScopeSet::parse_lenient("email bogus universal-mcp-read  email");
        assert_eq!(s.to_string(), "universal-mcp-read email");
    }

    #[test]
    fn subset_and_intersection() {
        let a = ScopeSet::parse_lenient("universal-mcp-read account");
        let b = ScopeSet::parse_lenient("universal-mcp-read account openid");
        assert!(a.is_subset_of(&b));
        assert!(!b.is_subset_of(&a));
        assert_eq!(b.intersect(&a), a);
    }
}
