//! `[idp]`: the upstream OpenID Connect providers people sign in with ("Continue with Google").
//! One table per provider under `idp.providers.<id>`; every key also comes from the environment
//! (`BRIDGEKEEPER_IDP__PROVIDERS__GOOGLE__CLIENT_SECRET`). A bad provider is a start-up error that
//! names the field. Client secrets are never printed: `Debug` names the providers only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Google's issuer, as its discovery document names it.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdpSection {
    pub providers: BTreeMap<String, IdpProviderConfig>,
    /// Also reach providers on loopback and private addresses (development only).
    pub allow_private_addresses: bool,
    /// Also plain http to a provider on this machine (development and tests only; needs
    /// `allow_private_addresses`).
    pub allow_http_loopback: bool,
    /// PEM certificates trusted besides the system's roots (an internal CA).
    pub extra_ca_file: Option<PathBuf>,
    /// The whole of one request to a provider (discovery, keys, token, userinfo).
    pub timeout_ms: u64,
}

impl Default for IdpSection {
    fn default() -> Self {
        Self {
            providers: BTreeMap::new(),
            allow_private_addresses: false,
            allow_http_loopback: false,
            extra_ca_file: None,
            timeout_ms: 10_000,
        }
    }
}

impl std::fmt::Debug for IdpSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpSection")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("allow_private_addresses", &self.allow_private_addresses)
            .field("allow_http_loopback", &self.allow_http_loopback)
            .field("extra_ca_file", &self.extra_ca_file)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// One provider (`idp.providers.<id>`).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdpProviderConfig {
    /// `"google"` fills the issuer, scopes, name and Google's rules (`hd`); fields set here win.
    pub template: Option<String>,
    /// "Continue with {display_name}" (default: the id, or "Google").
    pub display_name: Option<String>,
    /// Exactly as the provider's discovery document names itself (`https://…`, no query).
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// Default `openid email profile`; must include `openid`. A list, or one string separated by
    /// spaces or commas (as an environment variable gives it).
    #[serde(deserialize_with = "word_list")]
    pub scopes: Vec<String>,
    /// Only addresses in these domains sign in (empty: any).
    #[serde(deserialize_with = "word_list")]
    pub allowed_email_domains: Vec<String>,
    /// The ID token (or userinfo) claim holding the email address (default `email`).
    pub email_claim: Option<String>,
    /// The claim holding the person's name (default `name`).
    pub name_claim: Option<String>,
    /// Whether a new, verified person gets an account (default true).
    pub create_accounts: Option<bool>,
}

/// A list of words, or one string of words separated by spaces or commas.
fn word_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Words {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Words::deserialize(d)? {
        Words::One(s) => s.split([',', ' ']).map(str::trim).filter(|w| !w.is_empty()).map(str::to_owned).collect(),
        Words::Many(v) => v,
    })
}

fn valid_id(id: &str) -> bool {
    (1..=40).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

fn valid_domain(d: &str) -> bool {
    (1..=253).contains(&d.len())
        && d.contains('.')
        && d.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

impl IdpSection {
    /// The providers as the web face takes them; an error names the field.
    pub fn settings(&self) -> anyhow::Result<Vec<bk_web::upstream_oidc::IdpSettings>> {
        if self.allow_http_loopback && !self.allow_private_addresses {
            bail!("idp.allow_http_loopback needs idp.allow_private_addresses (both are for development only)");
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            bail!("idp.timeout_ms must be 100 to 60000");
        }
        self.providers.iter().map(|(id, p)| self.provider(id, p)).collect()
    }

    fn provider(&self, id: &str, p: &IdpProviderConfig) -> anyhow::Result<bk_web::upstream_oidc::IdpSettings> {
        let at = |field: &str| format!("idp.providers.{id}.{field}");
        if !valid_id(id) {
            bail!("idp.providers.{id}: a provider id is 1 to 40 of a-z, 0-9, - and _, starting with a letter or digit");
        }
        let google = match p.template.as_deref() {
            None => false,
            Some("google") => true,
            Some(other) => bail!("{}: unknown template {other:?} (known: \"google\")", at("template")),
        };
        let issuer = match (&p.issuer, google) {
            (Some(i), _) => i.trim_end_matches('/').to_owned(),
            (None, true) => GOOGLE_ISSUER.to_owned(),
            (None, false) => bail!("{} is required (or template = \"google\")", at("issuer")),
        };
        let u = url::Url::parse(&issuer).with_context(|| format!("{}: {issuer:?} is not a URL", at("issuer")))?;
        let loopback = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        let http_ok = self.allow_http_loopback && loopback;
        if !(u.scheme() == "https" || (u.scheme() == "http" && http_ok))
            || u.query().is_some()
            || u.fragment().is_some()
        {
            bail!("{} must be an https URL without query or fragment", at("issuer"));
        }
        let client_id = p.client_id.clone().unwrap_or_default();
        if client_id.is_empty() || client_id.len() > 512 {
            bail!("{} is required (at most 512 characters)", at("client_id"));
        }
        let secret = p.client_secret.clone().unwrap_or_default();
        if secret.is_empty() || secret.len() > 1024 {
            bail!(
                "{} is required (at most 1024 characters); set it in the environment, e.g. \
                 BRIDGEKEEPER_IDP__PROVIDERS__{}__CLIENT_SECRET",
                at("client_secret"),
                id.to_ascii_uppercase().replace('-', "_")
            );
        }
        let scopes = if p.scopes.is_empty() {
            vec!["openid".to_owned(), "email".to_owned(), "profile".to_owned()]
        } else {
            p.scopes.clone()
        };
        if !scopes.iter().any(|s| s == "openid") {
            bail!("{} must include openid", at("scopes"));
        }
        if let Some(bad) =
            scopes.iter().find(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'))
        {
            bail!("{}: {bad:?} is not a scope", at("scopes"));
        }
        let domains: Vec<String> = p.allowed_email_domains.iter().map(|d| d.trim().to_ascii_lowercase()).collect();
        if let Some(bad) = domains.iter().find(|d| !valid_domain(d)) {
            bail!("{}: {bad:?} is not a domain name", at("allowed_email_domains"));
        }
        let display_name =
            p.display_name.clone().unwrap_or_else(|| if google { "Google".into() } else { id.to_owned() });
        if display_name.trim().is_empty()
            || display_name.chars().count() > 60
            || display_name.chars().any(char::is_control)
        {
            bail!("{} must be 1 to 60 printable characters", at("display_name"));
        }
        let claim = |v: &Option<String>, default: &str, field: &str| -> anyhow::Result<String> {
            let c = v.clone().unwrap_or_else(|| default.to_owned());
            if c.is_empty() || c.len() > 100 {
                bail!("{} must be a claim name", at(field));
            }
            Ok(c)
        };
        Ok(bk_web::upstream_oidc::IdpSettings {
            id: id.to_owned(),
            display_name,
            issuer,
            client_id,
            client_secret: bk_web::upstream_oidc::ClientSecret::new(secret),
            scopes,
            allowed_email_domains: domains,
            email_claim: claim(&p.email_claim, "email", "email_claim")?,
            name_claim: claim(&p.name_claim, "name", "name_claim")?,
            hosted_domain: google,
            create_accounts: p.create_accounts.unwrap_or(true),
        })
    }

    /// The fetch policy of requests to the providers.
    pub fn fetch_policy(&self) -> anyhow::Result<bk_outbound::FetchPolicy> {
        let extra_roots_pem = match &self.extra_ca_file {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("cannot read idp.extra_ca_file {}", path.display()))?)
            }
            None => None,
        };
        if self.allow_private_addresses && !self.providers.is_empty() {
            tracing::warn!(
                "idp.allow_private_addresses is on: identity providers on private addresses are reached (development only)"
            );
        }
        Ok(bk_outbound::FetchPolicy {
            allow_private_addresses: self.allow_private_addresses,
            allow_http_loopback: self.allow_http_loopback,
            extra_roots_pem,
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            max_body_bytes: 256 * 1024,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml_text: &str) -> IdpSection {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn the_google_template_fills_issuer_scopes_and_rules() {
        let s = section(
            "[providers.google]\ntemplate = \"google\"\nclient_id = \"c\"\nclient_secret = \"s3cr3t\"\n\
             allowed_email_domains = [\"Acme.example\"]\n",
        );
        let list = s.settings().unwrap();
        let g = &list[0];
        assert_eq!((g.issuer.as_str(), g.display_name.as_str(), g.hosted_domain), (GOOGLE_ISSUER, "Google", true));
        assert_eq!(g.scopes, ["openid", "email", "profile"]);
        assert_eq!(g.allowed_email_domains, ["acme.example"]);
        assert!(!format!("{g:?}").contains("s3cr3t"), "the secret is never Debug-printed");
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_bad_provider_names_its_field() {
        let cases = [
            ("[providers.x]\nclient_id = \"c\"\nclient_secret = \"s\"\n", "idp.providers.x.issuer"),
            (
                "[providers.x]\nissuer = \"http://idp.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
                "idp.providers.x.issuer",
            ),
            ("[providers.x]\nissuer = \"https://idp.example\"\nclient_secret = \"s\"\n", "idp.providers.x.client_id"),
            ("[providers.x]\nissuer = \"https://idp.example\"\nclient_id = \"c\"\n", "idp.providers.x.client_secret"),
            ("[providers.x]\ntemplate = \"okta\"\n", "idp.providers.x.template"),
            (
                "[providers.x]\ntemplate = \"google\"\nclient_id = \"c\"\nclient_secret = \"s\"\nscopes = \"email\"\n",
                "idp.providers.x.scopes",
            ),
            (
                "[providers.x]\ntemplate = \"google\"\nclient_id = \"c\"\nclient_secret = \"s\"\nallowed_email_domains = [\"not a domain\"]\n",
                "idp.providers.x.allowed_email_domains",
            ),
            (
                "[providers.\"Bad Id\"]\ntemplate = \"google\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
                "idp.providers.Bad Id",
            ),
        ];
        for (text, field) in cases {
            let e = section(text).settings().unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        assert!(toml::from_str::<IdpSection>("[providers.x]\nclient_secrett = \"s\"\n").is_err(), "a typo is an error");
    }
}
