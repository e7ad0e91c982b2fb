//! Limits on tool calls (reference 001's per-binding `"10/min"`), on `/mcp` and the REST face
//! alike: per tool (each tenant's calls of one tool), per tenant (all of one account's calls) and
//! per client (all calls through one app, whatever the tenant). Each is a table of
//! `name-or-glob = "N/unit"`: the exact name wins, else the most specific glob (the most literal
//! characters; ties broken by the pattern's text, so the choice never depends on order), else
//! `_default`; a name nothing matches is not limited. Counted in the shared limiter (Redis when
//! configured, so every instance counts the same calls; in memory otherwise). A refused call gets
//! HTTP 429 with `Retry-After`, counts against nothing, and is audited.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bk_access::AccessContext;

/// `limit` calls per `window_secs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub window_secs: u32,
}

impl std::str::FromStr for Rate {
    type Err = String;

    /// `"10/min"`, `"5/s"`, `"1000/hour"`, `"20/day"`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not a rate such as \"10/min\" (units: s, sec, second, min, minute, h, hour, d, day)");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let limit: u32 = n.trim().parse().map_err(|_| bad())?;
        if limit == 0 {
            return Err(format!("{s:?}: the number of calls must be at least 1"));
        }
        let window_secs = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => return Err(bad()),
        };
        Ok(Self { limit, window_secs })
    }
}

/// One table: exact names, globs, and `_default`.
#[derive(Clone, Debug, Default)]
pub struct RateRules {
    exact: HashMap<String, Rate>,
    /// Most specific first.
    globs: Vec<(String, Rate)>,
    default: Option<Rate>,
}

const DEFAULT_KEY: &str = "_default";

impl RateRules {
    /// `table` names the configuration key in errors (`mcp.tool_rate_limits.per_tool`).
    pub fn parse(table: &str, entries: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut rules = Self::default();
        for (name, rate) in entries {
            let r: Rate = rate.parse().map_err(|e| format!("{table}.{name:?}: {e}"))?;
            if name.is_empty() || name.len() > 256 {
                return Err(format!("{table}: a name or glob must have 1 to 256 characters"));
            }
            if name == DEFAULT_KEY {
                rules.default = Some(r);
            } else if name.contains(['*', '?']) {
                rules.globs.push((name.clone(), r));
            } else {
                rules.exact.insert(name.clone(), r);
            }
        }
        let literal = |p: &str| p.chars().filter(|c| !matches!(c, '*' | '?')).count();
        rules.globs.sort_by(|(a, _), (b, _)| literal(b).cmp(&literal(a)).then_with(|| a.cmp(b)));
        Ok(rules)
    }

    /// The rule for `name` and the key it was found under (named in refusals).
    pub fn rate_for<'a>(&'a self, name: &str) -> Option<(&'a str, Rate)> {
        if let Some((k, r)) = self.exact.get_key_value(name) {
            return Some((k, *r));
        }
        if let Some((g, r)) = self.globs.iter().find(|(g, _)| glob_matches(g, name)) {
            return Some((g, *r));
        }
        self.default.map(|r| (DEFAULT_KEY, r))
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.globs.is_empty() && self.default.is_none()
    }
}

/// `*` matches any run of characters (none included), `?` exactly one; everything else itself.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with one backtrack point (the last `*`): linear in practice.
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The three tables.
#[derive(Clone, Debug, Default)]
pub struct ToolLimitRules {
    pub per_tool: RateRules,
    pub per_tenant: RateRules,
    pub per_client: RateRules,
}

impl ToolLimitRules {
    pub fn parse(
        per_tool: &BTreeMap<String, String>,
        per_tenant: &BTreeMap<String, String>,
        per_client: &BTreeMap<String, String>,
    ) -> Result<Self, String> {
        Ok(Self {
            per_tool: RateRules::parse("mcp.tool_rate_limits.per_tool", per_tool)?,
            per_tenant: RateRules::parse("mcp.tool_rate_limits.per_tenant", per_tenant)?,
            per_client: RateRules::parse("mcp.tool_rate_limits.per_client", per_client)?,
        })
    }
}

/// A call over a limit.
#[derive(Debug, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: u64,
    /// Which limit (`per_tool`, `per_tenant`, `per_client`) and the rule (`everything_*`).
    pub which: &'static str,
    pub rule: String,
    pub rate: Rate,
}

impl Limited {
    /// What a refusal's JSON-RPC error carries as `data`.
    pub fn data(&self) -> serde_json::Value {
        serde_json::json!({"retryAfterSecs": self.retry_after, "limit": self.which, "rule": self.rule})
    }

    pub fn message(&self, tool: &str) -> String {
        let unit = match self.rate.window_secs {
            1 => "second".to_owned(),
            60 => "minute".to_owned(),
            3600 => "hour".to_owned(),
            86_400 => "day".to_owned(),
            s => format!("{s} s"),
        };
        let scope = match self.which {
            "per_tool" => format!("calls of {tool} by this account"),
            "per_tenant" => "tool calls by this account".to_owned(),
            _ => "tool calls through this app".to_owned(),
        };
        format!(
            "rate limit exceeded: {} {scope} per {unit} (rule {}); retry in {} s",
            self.rate.limit, self.rule, self.retry_after
        )
    }
}

pub struct ToolLimits {
    rules: ToolLimitRules,
    limiter: Arc<dyn bk_limits::Limiter>,
}

impl ToolLimits {
    pub fn new(rules: ToolLimitRules, limiter: Arc<dyn bk_limits::Limiter>) -> Self {
        Self { rules, limiter }
    }

    /// Counts a call of `tool` by the caller, or says which limit it is over (and counts nothing).
    pub async fn check(&self, ctx: &AccessContext, tool: &str) -> Result<(), Limited> {
        let account = ctx.account_id.as_str();
        let client = ctx.client_id.as_str();
        // Each limit's bucket and key: the rule's key is part of the bucket, so two rules never
        // share counts, and a changed rate starts a fresh count.
        let mut wanted = Vec::with_capacity(3);
        let tables = [
            ("per_tool", &self.rules.per_tool, tool, format!("{account}\u{1f}{tool}")),
            ("per_tenant", &self.rules.per_tenant, account, account.to_owned()),
            ("per_client", &self.rules.per_client, client, client.to_owned()),
        ];
        for (which, rules, name, key) in tables {
            if let Some((rule, rate)) = rules.rate_for(name) {
                wanted.push((which, rule, rate, key, format!("tool_calls:{which}:{rule}")));
            }
        }
        // First ask without counting, so a call refused by one limit is not counted by another.
        for (which, rule, rate, key, bucket) in &wanted {
            if let Some(wait) = self.limiter.retry_after(bucket, key, rate.limit, rate.window_secs).await {
                return Err(Limited { retry_after: wait, which, rule: (*rule).to_owned(), rate: *rate });
            }
        }
        for (which, rule, rate, key, bucket) in &wanted {
            if let Err(wait) = self.limiter.acquire(bucket, key, rate.limit, rate.window_secs).await {
                return Err(Limited { retry_after: wait, which, rule: (*rule).to_owned(), rate: *rate });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn rates_parse_with_their_units_and_bad_ones_name_the_rule() {
        assert_eq!("10/min".parse::<Rate>(), Ok(Rate { limit: 10, window_secs: 60 }));
        assert_eq!(" 5 / s ".parse::<Rate>(), Ok(Rate { limit: 5, window_secs: 1 }));
        assert_eq!("1000/hour".parse::<Rate>(), Ok(Rate { limit: 1000, window_secs: 3600 }));
        assert_eq!("20/DAY".parse::<Rate>(), Ok(Rate { limit: 20, window_secs: 86_400 }));
        for bad in ["10", "ten/min", "10/fortnight", "0/min", "-1/min", ""] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        let e = RateRules::parse("mcp.tool_rate_limits.per_tool", &table(&[("github_*", "10/week")])).unwrap_err();
        assert!(e.contains("mcp.tool_rate_limits.per_tool") && e.contains("github_*"), "{e}");
    }

    #[test]
    fn the_exact_name_then_the_most_specific_glob_then_the_default() {
        let rules = RateRules::parse(
            "t",
            &table(&[
                ("_default", "100/min"),
                ("github_*", "30/min"),
                ("github_create_*", "5/min"),
                ("*_issue", "7/min"),
                ("github_create_issue", "1/min"),
                ("slack_?ost", "2/min"),
            ]),
        )
        .unwrap();
        assert_eq!(
            rules.rate_for("github_create_issue"),
            Some(("github_create_issue", Rate { limit: 1, window_secs: 60 }))
        );
        assert_eq!(rules.rate_for("github_create_pr").map(|r| r.0), Some("github_create_*"));
        assert_eq!(rules.rate_for("github_list").map(|r| r.0), Some("github_*"));
        assert_eq!(rules.rate_for("jira_issue").map(|r| r.0), Some("*_issue"));
        assert_eq!(rules.rate_for("slack_post").map(|r| r.0), Some("slack_?ost"));
        assert_eq!(rules.rate_for("slack_boost").map(|r| r.0), Some("_default"));
        assert_eq!(RateRules::parse("t", &table(&[("a*", "1/s")])).unwrap().rate_for("b"), None);
    }

    #[test]
    fn globs_match_runs_and_single_characters() {
        for (p, n) in
            [("*", ""), ("*", "abc"), ("a*c", "abc"), ("a*c", "ac"), ("a?c", "abc"), ("*b*", "abc"), ("a**", "a")]
        {
            assert!(glob_matches(p, n), "{p} ~ {n}");
        }
        for (p, n) in [("a?c", "ac"), ("a*c", "abd"), ("abc", "abcd"), ("?", "")] {
            assert!(!glob_matches(p, n), "{p} !~ {n}");
        }
    }
}
