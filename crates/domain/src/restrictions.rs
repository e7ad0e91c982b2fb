//! The restrictions a grant carries besides its scopes: per-provider permissions and the agents
//! and knowledge bases it may reach. Set at authorization (or PAT creation), stored on the session,
//! carried through every refresh. A grant can later be narrowed (never widened) by its holder,
//! with the person's confirmation: see `narrowed`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ProviderPermission {
    #[serde(rename = "disabled")]
    Disabled,
    #[serde(rename = "read")]
    Read,
    #[serde(rename = "read-write")]
    ReadWrite,
}

impl ProviderPermission {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read-write" => Some(Self::ReadWrite),
            "read" => Some(Self::Read),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWrite => "read-write",
            Self::Read => "read",
            Self::Disabled => "disabled",
        }
    }
}

/// Which providers a caller may reach (see `Restrictions::reach`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderReach {
    /// Only these.
    Only(Vec<String>),
    /// Every provider but these (none: every provider).
    Except(Vec<String>),
}

impl Default for ProviderReach {
    fn default() -> Self {
        Self::Except(Vec::new())
    }
}

impl ProviderReach {
    pub fn allows(&self, provider: &str) -> bool {
        match self {
            Self::Only(p) => p.iter().any(|x| x == provider),
            Self::Except(p) => !p.iter().any(|x| x == provider),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Restrictions {
    /// Permission per provider id; providers not named get `default_provider_permission`.
    pub provider_permissions: BTreeMap<String, ProviderPermission>,
    pub default_provider_permission: ProviderPermission,
    /// `None` = every agent.
    pub allowed_agent_ids: Option<Vec<String>>,
    /// `None` = every knowledge base.
    pub allowed_knowledge_base_ids: Option<Vec<String>>,
}

impl Default for Restrictions {
    fn default() -> Self {
        Self::unrestricted()
    }
}

const MAX_IDS: usize = 100;

/// A provider id as grants name it: 1–64 of `a-z`, `0-9`, `-`, `_`.
pub fn valid_provider_id(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 64
        && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn valid_object_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

impl Restrictions {
    pub fn unrestricted() -> Self {
        Self {
            provider_permissions: BTreeMap::new(),
            default_provider_permission: ProviderPermission::ReadWrite,
            allowed_agent_ids: None,
            allowed_knowledge_base_ids: None,
        }
    }

    /// Parses the request parameters (`provider_permissions` JSON object, `default_provider_permission`,
    /// `agent_ids` and `knowledge_base_ids` JSON arrays). Errors name the parameter.
    pub fn from_params(
        provider_permissions: Option<&str>,
        default_provider_permission: Option<&str>,
        agent_ids: Option<&str>,
        knowledge_base_ids: Option<&str>,
    ) -> Result<Self, String> {
        let mut r = Self::unrestricted();
        if let Some(d) = default_provider_permission {
            r.default_provider_permission = ProviderPermission::parse(d)
                .ok_or_else(|| "default_provider_permission must be read-write, read or disabled".to_owned())?;
        }
        if let Some(pp) = provider_permissions {
            let map: BTreeMap<String, String> = serde_json::from_str(pp)
                .map_err(|_| "provider_permissions must be a JSON object such as {\"google\":\"read\"}".to_owned())?;
            if map.len() > MAX_IDS {
                return Err(format!("provider_permissions names more than {MAX_IDS} providers"));
            }
            for (provider, perm) in map {
                if !valid_provider_id(&provider) {
                    return Err(format!(
                        "provider_permissions: {:?} is not a provider id",
                        provider.chars().take(64).collect::<String>()
                    ));
                }
                let p = ProviderPermission::parse(&perm)
                    .ok_or_else(|| format!("provider_permissions.{provider} must be read-write, read or disabled"))?;
                r.provider_permissions.insert(provider, p);
            }
        }
        r.allowed_agent_ids = parse_ids("agent_ids", agent_ids)?;
        r.allowed_knowledge_base_ids = parse_ids("knowledge_base_ids", knowledge_base_ids)?;
        Ok(r)
    }

    pub fn permission_for(&self, provider: &str) -> ProviderPermission {
        self.provider_permissions.get(provider).copied().unwrap_or(self.default_provider_permission)
    }

    /// Disables every provider the client may not use (`allowed_providers`, `None` = all).
    pub fn within_client(mut self, allowed_providers: Option<&[String]>) -> Self {
        if let Some(allowed) = allowed_providers {
            for (p, perm) in self.provider_permissions.iter_mut() {
                if !allowed.iter().any(|a| a == p) {
                    *perm = ProviderPermission::Disabled;
                }
            }
            // Providers not named fall to the default; the client's list caps them explicitly.
            for a in allowed {
                self.provider_permissions.entry(a.clone()).or_insert(self.default_provider_permission);
            }
            self.default_provider_permission = ProviderPermission::Disabled;
        }
        self
    }

    /// The most permissive restrictions that are within both (a PAT minted with a token may not
    /// exceed that token).
    pub fn intersect(&self, other: &Restrictions) -> Restrictions {
        let mut providers = BTreeMap::new();
        for p in self.provider_permissions.keys().chain(other.provider_permissions.keys()) {
            providers.insert(p.clone(), self.permission_for(p).min(other.permission_for(p)));
        }
        let ids = |a: &Option<Vec<String>>, b: &Option<Vec<String>>| match (a, b) {
            (None, None) => None,
            (Some(x), None) | (None, Some(x)) => Some(x.clone()),
            (Some(x), Some(y)) => Some(x.iter().filter(|i| y.contains(i)).cloned().collect()),
        };
        Restrictions {
            provider_permissions: providers,
            default_provider_permission: self.default_provider_permission.min(other.default_provider_permission),
            allowed_agent_ids: ids(&self.allowed_agent_ids, &other.allowed_agent_ids),
            allowed_knowledge_base_ids: ids(&self.allowed_knowledge_base_ids, &other.allowed_knowledge_base_ids),
        }
    }

    /// The providers a grant with these restrictions, through a client allowed `client_providers`
    /// (`None` = every provider), may reach at all (`read` or more). What it may not reach it is not
    /// shown either: a connection of such a provider is answered like one that does not exist.
    pub fn reach(&self, client_providers: Option<&[String]>) -> ProviderReach {
        let open = |p: &str| self.permission_for(p) != ProviderPermission::Disabled;
        match client_providers {
            Some(allowed) => ProviderReach::Only(allowed.iter().filter(|p| open(p)).cloned().collect()),
            None if self.default_provider_permission == ProviderPermission::Disabled => {
                ProviderReach::Only(self.provider_permissions.keys().filter(|p| open(p)).cloned().collect())
            }
            None => ProviderReach::Except(self.provider_permissions.keys().filter(|p| !open(p)).cloned().collect()),
        }
    }

    /// These restrictions with `provider` lowered to `permission`, or `None` when that is not
    /// strictly narrower than what the provider has now (a grant is never widened this way).
    pub fn narrowed(&self, provider: &str, permission: ProviderPermission) -> Option<Restrictions> {
        if permission >= self.permission_for(provider) {
            return None;
        }
        let mut r = self.clone();
        r.provider_permissions.insert(provider.to_owned(), permission);
        Some(r)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    pub fn from_json(s: &str) -> Option<Self> {
        if s.trim() == "{}" {
            return Some(Self::unrestricted());
        }
        serde_json::from_str(s).ok()
    }
}

fn parse_ids(name: &str, v: Option<&str>) -> Result<Option<Vec<String>>, String> {
    let Some(v) = v else { return Ok(None) };
    let ids: Vec<String> =
        serde_json::from_str(v).map_err(|_| format!("{name} must be a JSON array of strings such as [\"id1\"]"))?;
    if ids.len() > MAX_IDS {
        return Err(format!("{name} has more than {MAX_IDS} entries"));
    }
    if let Some(bad) = ids.iter().find(|i| !valid_object_id(i)) {
        return Err(format!("{name}: {:?} is not a valid id", bad.chars().take(64).collect::<String>()));
    }
    let mut ids = ids;
    ids.sort();
    ids.dedup();
    Ok(Some(ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_follows_permissions_and_the_clients_providers() {
        let r = Restrictions::from_params(Some(r#"{"slack":"disabled","jira":"read"}"#), None, None, None).unwrap();
        let all = r.reach(None);
        assert!(all.allows("github") && all.allows("jira") && !all.allows("slack"));
        let client = ["slack".to_owned(), "jira".to_owned()];
        let via = r.reach(Some(&client));
        assert_eq!(via, ProviderReach::Only(vec!["jira".into()]));
        let closed = Restrictions::from_params(Some(r#"{"jira":"read"}"#), Some("disabled"), None, None).unwrap();
        assert_eq!(closed.reach(None), ProviderReach::Only(vec!["jira".into()]));
        assert!(Restrictions::unrestricted().reach(None).allows("anything"));
    }

    #[test]
    fn narrowing_only_lowers_one_provider() {
        let r = Restrictions::from_params(Some(r#"{"slack":"read"}"#), None, None, None).unwrap();
        let n = r.narrowed("github", ProviderPermission::Read).unwrap();
        assert_eq!(n.permission_for("github"), ProviderPermission::Read);
        assert_eq!(n.permission_for("slack"), ProviderPermission::Read);
        assert_eq!(n.permission_for("google"), ProviderPermission::ReadWrite);
        assert!(r.narrowed("slack", ProviderPermission::Read).is_none(), "same permission: not narrower");
        assert!(r.narrowed("slack", ProviderPermission::ReadWrite).is_none(), "never widened");
        let d = Restrictions::from_params(None, Some("disabled"), None, None).unwrap();
        assert!(d.narrowed("github", ProviderPermission::Read).is_none(), "the default already disables it");
    }

    #[test]
    fn parses_and_names_bad_parameters() {
        let r = Restrictions::from_params(
            Some(r#"{"google":"read-write","slack":"read"}"#),
            Some("disabled"),
            Some(r#"["a2","a1"]"#),
            None,
        )
        .unwrap();
        assert_eq!(r.permission_for("google"), ProviderPermission::ReadWrite);
        assert_eq!(r.permission_for("slack"), ProviderPermission::Read);
        assert_eq!(r.permission_for("jira"), ProviderPermission::Disabled);
        assert_eq!(r.allowed_agent_ids, Some(vec!["a1".into(), "a2".into()]));
        assert_eq!(r.allowed_knowledge_base_ids, None);
        assert!(
            Restrictions::from_params(Some(r#"{"google":"admin"}"#), None, None, None)
                .unwrap_err()
                .contains("provider_permissions.google")
        );
        assert!(Restrictions::from_params(None, None, Some("not json"), None).unwrap_err().contains("agent_ids"));
        assert_eq!(Restrictions::from_json(&r.to_json()), Some(r));
    }

    #[test]
    fn client_allow_list_and_intersection_only_narrow() {
        let r = Restrictions::from_params(Some(r#"{"google":"read-write","slack":"read"}"#), None, None, None).unwrap();
        let c = r.clone().within_client(Some(&["google".to_owned(), "notion".to_owned()]));
        assert_eq!(c.permission_for("slack"), ProviderPermission::Disabled);
        assert_eq!(c.permission_for("notion"), ProviderPermission::ReadWrite);
        assert_eq!(c.permission_for("github"), ProviderPermission::Disabled);
        let narrow =
            Restrictions::from_params(Some(r#"{"google":"read"}"#), Some("disabled"), Some(r#"["a1"]"#), None).unwrap();
        let i = r.intersect(&narrow);
        assert_eq!(i.permission_for("google"), ProviderPermission::Read);
        assert_eq!(i.permission_for("slack"), ProviderPermission::Disabled);
        assert_eq!(i.allowed_agent_ids, Some(vec!["a1".into()]));
    }
}
