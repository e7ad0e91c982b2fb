//! Configuration: defaults → TOML file → `BRIDGEKEEPER_*` environment → command-line flags.
//! Unknown keys in the file, and unknown `BRIDGEKEEPER_*` variables, are errors: a typo must not
//! silently fall back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Public base URL (issuer). Defaults to `http://{listen}`.
    pub issuer: Option<String>,
    /// Where the embedded database and generated keys live.
    pub data_dir: PathBuf,
    /// Base64 (standard or url-safe) of 32 random bytes. Required unless the database is the embedded SQLite.
    pub master_key: Option<String>,
    /// Older (or not yet active) master keys that open but never seal: the master key ring during a
    /// rotation (`bridgekeeper keys rotate-master`). A list in the file; in the environment
    /// (`BRIDGEKEEPER_OPEN_ONLY_MASTER_KEYS`) base64 keys separated by commas.
    #[serde(deserialize_with = "key_list")]
    pub open_only_master_keys: Vec<String>,
    pub database: DatabaseConfig,
    pub tokens: TokenConfig,
    pub limits: LimitConfig,
    pub registration: RegistrationConfig,
    pub client_metadata_documents: ClientDocumentsConfig,
    pub mcp: McpConfig,
    pub audit: AuditSection,
    pub redis: RedisConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub telemetry: TelemetryConfig,
    pub dpop: DpopConfig,
    /// Proxies (addresses or CIDR ranges, e.g. `10.0.0.0/8`) whose `X-Forwarded-For` and
    /// `X-Request-Id` are believed: behind them the client's address is the last untrusted hop of
    /// `X-Forwarded-For` (rate limits, audit rows, sessions). Empty by default: the header is
    /// ignored and the peer's address is the client's (`BRIDGEKEEPER_TRUSTED_PROXIES`, commas).
    #[serde(deserialize_with = "key_list")]
    pub trusted_proxies: Vec<String>,
    pub connections: ConnectionsConfig,
    pub email: EmailConfig,
    pub accounts: AccountsConfig,
    pub keys: KeysConfig,
    pub siwe: SiweConfig,
    /// Upstream OpenID Connect providers people sign in with (`[idp.providers.<id>]`).
    pub idp: crate::idp_config::IdpSection,
    pub agents: AgentsConfig,
    /// LLM access: the models offered and the limits of upstream calls (`[llm]`, `[[llm.models]]`).
    pub llm: bk_llm::LlmConfig,
    /// Credits (`[credits]`): the signup grant.
    pub credits: bk_llm::CreditsConfig,
    pub knowledge: crate::knowledge::KnowledgeConfig,
}

/// The bounds of one agent run (`use-agent`, agent chat).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// Model turns per run (1 to 50).
    pub max_steps: u32,
    /// Wall time per run, in seconds (1 to 900).
    pub max_wall_secs: u64,
    /// Credits one run may spend (at least 1; checked before each turn).
    pub max_credits_per_run: i64,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        let d = bk_agents::LoopLimits::default();
        Self { max_steps: d.max_steps, max_wall_secs: d.max_wall.as_secs(), max_credits_per_run: d.max_credits }
    }
}

impl AgentsConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if !(1..=50).contains(&self.max_steps) {
            bail!("agents.max_steps must be 1 to 50");
        }
        if !(1..=900).contains(&self.max_wall_secs) {
            bail!("agents.max_wall_secs must be 1 to 900");
        }
        if self.max_credits_per_run < 1 {
            bail!("agents.max_credits_per_run must be at least 1");
        }
        Ok(())
    }

    pub fn limits(&self) -> bk_agents::LoopLimits {
        bk_agents::LoopLimits {
            max_steps: self.max_steps,
            max_wall: std::time::Duration::from_secs(self.max_wall_secs),
            max_credits: self.max_credits_per_run,
        }
    }
}

/// Sign-In with Ethereum (EIP-4361): `GET /api/v1/auth/nonce`, `POST /api/v1/auth/authenticate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiweConfig {
    /// Off: both endpoints answer 404 and the pages offer no wallet button.
    pub enabled: bool,
    /// The EIP-155 chain ids a message may name (a list; in the environment, separated by commas).
    #[serde(deserialize_with = "chain_list")]
    pub chain_ids: Vec<u64>,
    /// How long a nonce may wait for its signed message (30 to 3600 s).
    pub nonce_ttl_secs: i64,
    /// Nonces handed out per source address (IPv6: per /64) per minute.
    pub nonces_per_minute: u32,
    /// Whether an address no account holds gets an account of its own (otherwise it is refused).
    pub create_accounts: bool,
}

impl Default for SiweConfig {
    fn default() -> Self {
        let d = bk_web::siwe::SiweSettings::default();
        Self {
            enabled: d.enabled,
            chain_ids: d.chain_ids,
            nonce_ttl_secs: d.nonce_ttl_secs,
            nonces_per_minute: d.nonces_per_minute,
            create_accounts: d.create_accounts,
        }
    }
}

impl SiweConfig {
    /// The settings the web face takes.
    pub fn settings(&self) -> bk_web::siwe::SiweSettings {
        bk_web::siwe::SiweSettings {
            enabled: self.enabled,
            chain_ids: self.chain_ids.clone(),
            nonce_ttl_secs: self.nonce_ttl_secs,
            nonces_per_minute: self.nonces_per_minute,
            create_accounts: self.create_accounts,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.chain_ids.is_empty() {
            bail!(
                "siwe.chain_ids must name at least one chain id (turn Sign-In with Ethereum off with siwe.enabled = false)"
            );
        }
        if !(30..=3600).contains(&self.nonce_ttl_secs) {
            bail!("siwe.nonce_ttl_secs must be 30 to 3600");
        }
        if self.nonces_per_minute == 0 {
            bail!("siwe.nonces_per_minute must be at least 1");
        }
        Ok(())
    }
}

/// Chain ids: a list of numbers, one number, or a string of numbers separated by commas (as an
/// environment variable gives it).
fn chain_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Chains {
        One(u64),
        Many(Vec<u64>),
        Text(String),
    }
    match Chains::deserialize(d)? {
        Chains::One(n) => Ok(vec![n]),
        Chains::Many(v) => Ok(v),
        Chains::Text(s) => s
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| {
                c.parse::<u64>()
                    .map_err(|_| serde::de::Error::custom(format!("siwe.chain_ids: {c:?} is not a chain id")))
            })
            .collect(),
    }
}

/// Signing keys: optional rotation on a period (`keys rotate` rotates by hand).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// A new signing key becomes active once the active one is this many days old, on whichever
    /// instance notices first (0: never). Older keys stay published until their tokens expire.
    pub rotate_every_days: u32,
    /// The same period in seconds (at least 10), for drills and tests; instead of `rotate_every_days`.
    pub rotate_every_secs: Option<u64>,
}

impl KeysConfig {
    /// The rotation period in seconds, if rotation on a period is on.
    pub fn rotation_period_secs(&self) -> Option<i64> {
        match (self.rotate_every_secs, self.rotate_every_days) {
            (Some(secs), _) => i64::try_from(secs).ok(),
            (None, 0) => None,
            (None, days) => Some(i64::from(days) * 86_400),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.rotate_every_secs.is_some() && self.rotate_every_days > 0 {
            bail!("keys: set rotate_every_days or rotate_every_secs, not both");
        }
        if self.rotate_every_days > 3650 {
            bail!("keys.rotate_every_days must be 0 (never) to 3650");
        }
        if let Some(secs) = self.rotate_every_secs
            && !(10..=3650 * 86_400).contains(&secs)
        {
            bail!("keys.rotate_every_secs must be 10 to 315360000 (3650 days)");
        }
        Ok(())
    }
}

/// Rules for every account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Every account must sign in with a second factor: one without sets it up right after its
    /// password, before it is signed in; none can turn it off.
    pub require_second_factor: bool,
}

/// Mail: verification links, password-reset links and security notices.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// `smtps://user:pass@host[:port]`, `smtp://user:pass@host:587?tls=required`, or plain
    /// `smtp://localhost:port` (loopback only). Unset: log-only mode, messages written to `outbox_dir`.
    pub smtp_url: Option<String>,
    /// The sender, `Name <address>`.
    pub from: String,
    /// Where messages go in log-only mode (default `{data_dir}/outbox`).
    pub outbox_dir: Option<PathBuf>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self { smtp_url: None, from: "Bridgekeeper <no-reply@localhost>".into(), outbox_dir: None }
    }
}

/// The SMTP URL may hold a password: never printed.
impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("smtp_url", &self.smtp_url.as_ref().map(|_| "[set]"))
            .field("from", &self.from)
            .field("outbox_dir", &self.outbox_dir)
            .finish()
    }
}

/// The provider catalog's operator layers (see `bk_connections::catalog`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// A catalog file in the format of the shipped `providers.toml`, layered over it: adds
    /// providers, overrides fields of shipped ones, or hides them (`enabled = false`).
    pub catalog_file: Option<PathBuf>,
    /// Providers added or overridden here, layered last (`[connections.providers.<id>]`, or
    /// `BRIDGEKEEPER_CONNECTIONS__PROVIDERS__<ID>__OAUTH2__CLIENT_ID` …): typically the operator's
    /// client id and secret for each provider.
    pub providers: toml::Table,
    /// Also reach providers on loopback and private addresses (development and tests only: a
    /// provider's URLs are the operator's, but a name can be pointed anywhere).
    pub allow_private_addresses: bool,
    /// Also reach providers on this machine over plain http (`localhost`, `127.0.0.1`, `[::1]`):
    /// development and tests only; needs `allow_private_addresses`.
    pub allow_http_loopback: bool,
    /// A PEM file of CA certificates trusted for providers, besides the system's.
    pub extra_ca_file: Option<PathBuf>,
    /// Time for a whole call to a provider (token exchange, user info).
    pub timeout_ms: u64,
    /// A connection's access token is refreshed before use when it expires within this many seconds.
    pub refresh_skew_secs: i64,
    /// The client id Bridgekeeper uses at upstream MCP servers' authorization servers that accept
    /// client ID metadata documents: an https URL serving the document of `GET
    /// /.well-known/oauth-client` (default: that path under `public_url`, when it is https; an
    /// operator may serve the same document elsewhere). Without an https URL, dynamic registration.
    pub client_metadata_url: Option<String>,
    /// The name Bridgekeeper gives itself as that client (metadata document, registrations).
    pub client_name: String,
    /// Connecting to a tenant's upstream MCP server and listing what it offers: a server slower
    /// than this is left out of that listing.
    pub mcp_list_timeout_ms: u64,
    /// One call to an upstream tool, prompt or resource.
    pub mcp_call_timeout_ms: u64,
    /// Consecutive failures of an upstream server (unreachable, timed out, 5xx) after which it is
    /// left alone for `breaker_cooldown_ms`: calls fail at once, listings leave its tools out
    /// (0: never).
    pub breaker_failures: u32,
    /// How long a failing upstream server is left alone before one request may try it again.
    pub breaker_cooldown_ms: u64,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            catalog_file: None,
            providers: toml::Table::new(),
            allow_private_addresses: false,
            allow_http_loopback: false,
            extra_ca_file: None,
            timeout_ms: 10_000,
            refresh_skew_secs: 60,
            client_metadata_url: None,
            client_name: "Bridgekeeper".into(),
            mcp_list_timeout_ms: 5_000,
            mcp_call_timeout_ms: 60_000,
            breaker_failures: 5,
            breaker_cooldown_ms: 30_000,
        }
    }
}

/// Names the providers configured, never their fields (client secrets live there).
impl std::fmt::Debug for ConnectionsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionsConfig")
            .field("catalog_file", &self.catalog_file)
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("allow_private_addresses", &self.allow_private_addresses)
            .field("allow_http_loopback", &self.allow_http_loopback)
            .field("extra_ca_file", &self.extra_ca_file)
            .field("timeout_ms", &self.timeout_ms)
            .field("refresh_skew_secs", &self.refresh_skew_secs)
            .field("client_metadata_url", &self.client_metadata_url)
            .field("client_name", &self.client_name)
            .field("mcp_list_timeout_ms", &self.mcp_list_timeout_ms)
            .field("mcp_call_timeout_ms", &self.mcp_call_timeout_ms)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_cooldown_ms", &self.breaker_cooldown_ms)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port`: rate limits shared by every instance. Without it they are counted in memory.
    pub url: Option<String>,
    /// When Redis cannot be reached: `closed` refuses limited requests (the default: safe), `open` allows them.
    pub failure_mode: String,
    /// Prefix of every key Bridgekeeper writes (several deployments may share one Redis).
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self { url: None, failure_mode: "closed".into(), key_prefix: "bridgekeeper".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// Record audit events (turn off only to measure the audit log's cost).
    pub enabled: bool,
    /// Delete audit rows older than this many days (0 = keep forever).
    pub retention_days: u32,
    /// Keep at most this many audit rows (0 = no limit).
    pub max_rows: i64,
    /// Extra redaction patterns (regular expressions) applied before anything is stored or streamed.
    pub redact: Vec<String>,
    /// Events waiting to be written before new ones are dropped (counted and logged).
    pub buffer: usize,
    /// Publish every audit event to this NATS server (subject `bridgekeeper.audit.<account_id>`).
    pub nats_url: Option<String>,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self { enabled: true, retention_days: 365, max_rows: 0, redact: Vec::new(), buffer: 10_000, nats_url: None }
    }
}

impl AuditSection {
    pub fn to_config(&self) -> bk_audit::AuditConfig {
        bk_audit::AuditConfig {
            enabled: self.enabled,
            retention_days: (self.retention_days > 0).then_some(self.retention_days),
            max_rows: (self.max_rows > 0).then_some(self.max_rows),
            redact: self.redact.clone(),
            buffer: self.buffer,
            nats_url: self.nats_url.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Host header values (`host` or `host:port`) `/mcp` accepts besides the issuer's host and loopback.
    pub allowed_hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`) `/mcp` accepts besides the issuer's origin and loopback origins.
    pub allowed_origins: Vec<String>,
    /// MCP requests per account per minute.
    pub rate_limit_per_minute: u32,
    /// How long an MCP session lives after `initialize`, in seconds.
    pub session_ttl_secs: i64,
    /// Tool calls (on `/mcp` and the REST face alike) limited per tool, tenant and client.
    pub tool_rate_limits: ToolRateLimitsConfig,
}

/// Limits on tool calls, each a table of `name-or-glob = "N/unit"` (unit `s`, `sec`, `second`,
/// `min`, `minute`, `h`, `hour`, `d`, `day`): the exact name wins, else the most specific glob
/// (`*` any run of characters, `?` one), else `_default`; a name nothing matches is not limited.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolRateLimitsConfig {
    /// Each tenant's calls of each tool, by the tool's name as clients see it (`github_*`,
    /// `everything_echo`, `whoami`).
    pub per_tool: std::collections::BTreeMap<String, String>,
    /// All tool calls of one tenant, by account id.
    pub per_tenant: std::collections::BTreeMap<String, String>,
    /// All tool calls through one client (an app, for all the tenants it serves), by client id.
    pub per_client: std::collections::BTreeMap<String, String>,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            rate_limit_per_minute: 600,
            session_ttl_secs: 24 * 3600,
            tool_rate_limits: ToolRateLimitsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://…`; defaults to `sqlite://{data_dir}/bridgekeeper.db`.
    pub url: Option<String>,
    /// Connections in the pool (0 = 8 on SQLite, 16 on PostgreSQL).
    pub max_connections: u32,
    /// PostgreSQL statement timeout in milliseconds (0 = none).
    pub statement_timeout_ms: u64,
    /// Give up starting after this many seconds of failed connection attempts (0 = keep trying).
    pub connect_retry_secs: u64,
    /// SQLite: keep the write-ahead log below this many MiB (at least 1).
    pub sqlite_wal_limit_mb: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 0,
            statement_timeout_ms: 30_000,
            connect_retry_secs: 0,
            sqlite_wal_limit_mb: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    pub access_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    pub code_ttl_secs: i64,
    /// Seconds during which an immediate reuse of a refresh token by the same client continues from
    /// its successor instead of revoking the session (0 = every reuse revokes; see README).
    pub refresh_reuse_grace_secs: i64,
    /// Lifetime in days of a personal access token created without `expires_in` (1 to 366; a PAT that
    /// never expires must be asked for with `"expires_in": "never"`).
    pub pat_default_ttl_days: i64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 7 * 24 * 3600,
            code_ttl_secs: 60,
            refresh_reuse_grace_secs: 0,
            pat_default_ttl_days: 90,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitConfig {
    /// New clients created by dynamic registration per minute per source address (IPv6: per /64).
    /// A registration that reuses an identical earlier one creates nothing and does not count.
    pub registrations_per_minute: u32,
    /// Dynamic registration requests of any outcome (reuses and refusals included) per minute per
    /// source: the ceiling on what a stranger can make the registration endpoint do (never below
    /// `registrations_per_minute`).
    pub registration_attempts_per_minute: u32,
    /// Failed sign-ins per account and source address per minute before that source's further
    /// attempts for that account are refused for a while.
    pub login_failures_per_minute: u32,
    /// Failed sign-ins per source address (IPv6: per /64) per minute, whatever the accounts.
    pub login_failures_per_source_per_minute: u32,
    /// Failed sign-ins per account per minute from every source together (the ceiling a distributed
    /// attacker meets; reaching it refuses the account's sign-ins from everywhere until it slides).
    pub login_failures_per_account_per_minute: u32,
    /// Clients an account may own (created through `/api/v1/auth-clients`; deleted ones do not count).
    pub max_clients_per_account: u32,
    /// Live (unrevoked, unexpired) personal access tokens an account may hold.
    pub max_pats_per_account: u32,
    /// Connections to upstream providers an account may hold (whatever their status).
    pub max_connections_per_account: u32,
    /// Connect flows (`POST /api/v1/connections/initiate`) an account may start per minute.
    pub connects_per_minute: u32,
    /// Connect callbacks one source address (IPv6: per /64) may send per minute.
    pub connect_callbacks_per_source_per_minute: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            registrations_per_minute: 5,
            registration_attempts_per_minute: 60,
            login_failures_per_minute: 5,
            login_failures_per_source_per_minute: 20,
            login_failures_per_account_per_minute: 20,
            max_clients_per_account: 50,
            max_pats_per_account: 100,
            max_connections_per_account: 100,
            connects_per_minute: 30,
            connect_callbacks_per_source_per_minute: 60,
        }
    }
}

/// Dynamic client registration (RFC 7591/7592).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// A public registration identical to one from the same source this recent answers with that
    /// client instead of creating another.
    pub reuse_window_secs: i64,
    /// A dynamically registered client that has not completed an authorization this long after it
    /// registered is deleted (checked every quarter of this, at most hourly).
    pub unused_ttl_secs: i64,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self { reuse_window_secs: 86_400, unused_ttl_secs: 86_400 }
    }
}

/// Client ID Metadata Documents: a `client_id` that is an HTTPS URL names the client's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientDocumentsConfig {
    /// Accept them (advertised as `client_id_metadata_document_supported`).
    pub enabled: bool,
    /// Fetch documents from loopback and private addresses too. Development only: it lets anyone
    /// who can start an authorization make this server send requests into its own network.
    pub allow_private_addresses: bool,
    /// A PEM file of CA certificates trusted for fetching documents, besides the system's.
    pub extra_ca_file: Option<PathBuf>,
    /// Largest document accepted (the draft recommends 5 KB).
    pub max_bytes: usize,
    /// Time for the whole fetch.
    pub timeout_ms: u64,
}

impl Default for ClientDocumentsConfig {
    fn default() -> Self {
        Self { enabled: true, allow_private_addresses: false, extra_ca_file: None, max_bytes: 5120, timeout_ms: 5000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (for people: colour only on a terminal) or `json` (one object a line, for machines).
    pub format: String,
    /// A tracing filter such as `info` or `bridgekeeper=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: "text".into(), level: "info".into() }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` only on this separate address (e.g. an internal interface), without a
    /// token; the main address then has no `/metrics`.
    pub listen: Option<String>,
    /// Serve `/metrics` on the main address to anyone. Off by default: it needs an operator token.
    pub public: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopConfig {
    /// Require server nonces in DPoP proofs (RFC 9449 §8): a proof without the current nonce is
    /// answered `use_dpop_nonce` with a `DPoP-Nonce` header, which bounds how long a proof made in
    /// advance can be used. Off by default (proofs are then bounded by their `iat` and single use).
    pub require_nonce: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Export traces over OTLP/HTTP to this collector (e.g. `http://127.0.0.1:4318`; `/v1/traces`
    /// is added unless the URL already ends with it). Off when unset (`BRIDGEKEEPER_OTLP_ENDPOINT`).
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` (the default) or `http/json`.
    pub otlp_protocol: String,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// The share of new traces sampled (0.0–1.0); a request continuing a trace follows its parent's choice.
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_protocol: "http/protobuf".into(),
            service_name: "bridgekeeper".into(),
            sample_ratio: 1.0,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            issuer: None,
            data_dir: PathBuf::from("./data"),
            master_key: None,
            open_only_master_keys: Vec::new(),
            database: DatabaseConfig::default(),
            tokens: TokenConfig::default(),
            limits: LimitConfig::default(),
            registration: RegistrationConfig::default(),
            client_metadata_documents: ClientDocumentsConfig::default(),
            mcp: McpConfig::default(),
            audit: AuditSection::default(),
            redis: RedisConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            telemetry: TelemetryConfig::default(),
            dpop: DpopConfig::default(),
            trusted_proxies: Vec::new(),
            connections: ConnectionsConfig::default(),
            email: EmailConfig::default(),
            accounts: AccountsConfig::default(),
            keys: KeysConfig::default(),
            siwe: SiweConfig::default(),
            idp: crate::idp_config::IdpSection::default(),
            agents: AgentsConfig::default(),
            llm: bk_llm::LlmConfig::default(),
            credits: bk_llm::CreditsConfig::default(),
            knowledge: crate::knowledge::KnowledgeConfig::default(),
        }
    }
}

/// A list of keys, or one string of keys separated by commas (as an environment variable gives it).
fn key_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Keys {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Keys::deserialize(d)? {
        Keys::One(s) => s.split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect(),
        Keys::Many(v) => v,
    })
}

/// Environment variables with a flat name map to these keys; anything else under the prefix must
/// use `__` for nesting (`BRIDGEKEEPER_TOKENS__ACCESS_TOKEN_TTL_SECS`).
const FLAT_ENV: &[(&str, &str)] = &[
    ("LISTEN", "listen"),
    ("ISSUER", "issuer"),
    ("DATA_DIR", "data_dir"),
    ("MASTER_KEY", "master_key"),
    ("OPEN_ONLY_MASTER_KEYS", "open_only_master_keys"),
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "redis.url"),
    ("SMTP_URL", "email.smtp_url"),
    ("LOG_FORMAT", "log.format"),
    ("LOG_LEVEL", "log.level"),
    ("OTLP_ENDPOINT", "telemetry.otlp_endpoint"),
    ("TRUSTED_PROXIES", "trusted_proxies"),
];

/// Variables under the prefix that are not configuration (used by the test suite).
const RESERVED_ENV_PREFIXES: &[&str] = &["TEST_"];

/// Command-line overrides.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

impl Config {
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                bail!("configuration file {} does not exist", path.display());
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        for (key, _) in std::env::vars() {
            let Some(rest) = key.strip_prefix("BRIDGEKEEPER_") else {
                continue;
            };
            if RESERVED_ENV_PREFIXES.iter().any(|p| rest.starts_with(p)) {
                continue;
            }
            if !rest.contains("__") && !FLAT_ENV.iter().any(|(k, _)| *k == rest) {
                let known: Vec<String> = FLAT_ENV.iter().map(|(k, _)| format!("BRIDGEKEEPER_{k}")).collect();
                bail!(
                    "unknown environment variable {key}; known: {} (nested keys use __, e.g. BRIDGEKEEPER_TOKENS__CODE_TTL_SECS)",
                    known.join(", ")
                );
            }
        }
        let env = Env::prefixed("BRIDGEKEEPER_")
            .filter(|k| !RESERVED_ENV_PREFIXES.iter().any(|p| k.as_str().to_ascii_uppercase().starts_with(p)))
            .map(|k| {
                let upper = k.as_str().to_ascii_uppercase();
                match FLAT_ENV.iter().find(|(e, _)| *e == upper) {
                    Some((_, path)) => (*path).into(),
                    None => k.as_str().replace("__", ".").into(),
                }
            });
        fig = fig.merge(env).merge(Serialized::defaults(overrides));
        let cfg: Config = fig.extract().context("invalid configuration")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The tool-call limits, parsed (an error names the table and the rule).
    pub fn tool_limit_rules(&self) -> Result<bk_gateway::ToolLimitRules, String> {
        let t = &self.mcp.tool_rate_limits;
        bk_gateway::ToolLimitRules::parse(&t.per_tool, &t.per_tenant, &t.per_client)
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.listen
            .parse::<SocketAddr>()
            .with_context(|| format!("listen: {:?} is not an address such as 127.0.0.1:8080", self.listen))?;
        if let Some(issuer) = &self.issuer {
            let u = url::Url::parse(issuer).with_context(|| format!("issuer: {issuer:?} is not a URL"))?;
            if !matches!(u.scheme(), "http" | "https") || u.query().is_some() || u.fragment().is_some() {
                bail!("issuer must be an http(s) URL without query or fragment (RFC 8414 §2)");
            }
        }
        if let Some(m) = &self.metrics.listen {
            m.parse::<SocketAddr>()
                .with_context(|| format!("metrics.listen: {m:?} is not an address such as 127.0.0.1:9090"))?;
        }
        crate::observe::parse_trusted(&self.trusted_proxies)?;
        let t = &self.telemetry;
        if !matches!(t.otlp_protocol.as_str(), "http/protobuf" | "http/json") {
            bail!("telemetry.otlp_protocol must be http/protobuf or http/json, not {:?}", t.otlp_protocol);
        }
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            bail!("telemetry.sample_ratio must be between 0.0 and 1.0");
        }
        if let Some(e) = &t.otlp_endpoint {
            let u = url::Url::parse(e).with_context(|| format!("telemetry.otlp_endpoint: {e:?} is not a URL"))?;
            if !matches!(u.scheme(), "http" | "https") {
                bail!("telemetry.otlp_endpoint must be an http(s) URL");
            }
        }
        if let Err(e) = self.tool_limit_rules() {
            bail!("{e}");
        }
        if self.mcp.rate_limit_per_minute == 0 {
            bail!("mcp.rate_limit_per_minute must be at least 1");
        }
        if self.mcp.session_ttl_secs < 60 {
            bail!("mcp.session_ttl_secs must be at least 60");
        }
        if self.limits.login_failures_per_source_per_minute == 0
            || self.limits.login_failures_per_account_per_minute == 0
        {
            bail!(
                "limits.login_failures_per_source_per_minute and limits.login_failures_per_account_per_minute must be at least 1"
            );
        }
        if !matches!(self.redis.failure_mode.as_str(), "open" | "closed") {
            bail!("redis.failure_mode must be open or closed, not {:?}", self.redis.failure_mode);
        }
        if !matches!(self.log.format.as_str(), "json" | "text") {
            bail!("log.format must be json or text, not {:?}", self.log.format);
        }
        if self.tokens.access_token_ttl_secs < 30
            || self.tokens.code_ttl_secs < 5
            || self.tokens.refresh_token_ttl_secs < 60
        {
            bail!("tokens: TTLs are too short (access ≥ 30 s, code ≥ 5 s, refresh ≥ 60 s)");
        }
        if !(0..=60).contains(&self.tokens.refresh_reuse_grace_secs) {
            bail!("tokens.refresh_reuse_grace_secs must be 0 to 60");
        }
        if !(1..=366).contains(&self.tokens.pat_default_ttl_days) {
            bail!("tokens.pat_default_ttl_days must be 1 to 366 (ask for \"expires_in\": \"never\" per token instead)");
        }
        if self.limits.max_clients_per_account == 0 || self.limits.max_pats_per_account == 0 {
            bail!("limits.max_clients_per_account and limits.max_pats_per_account must be at least 1");
        }
        if !(100..=60_000).contains(&self.connections.timeout_ms) {
            bail!("connections.timeout_ms must be 100 to 60000");
        }
        if !(0..=3600).contains(&self.connections.refresh_skew_secs) {
            bail!("connections.refresh_skew_secs must be 0 to 3600");
        }
        if self.limits.max_connections_per_account == 0 {
            bail!("limits.max_connections_per_account must be at least 1");
        }
        if self.limits.connects_per_minute == 0 || self.limits.connect_callbacks_per_source_per_minute == 0 {
            bail!("limits.connects_per_minute and limits.connect_callbacks_per_source_per_minute must be at least 1");
        }
        if self.limits.registrations_per_minute == 0 || self.limits.registration_attempts_per_minute == 0 {
            bail!("limits.registrations_per_minute and limits.registration_attempts_per_minute must be at least 1");
        }
        if !(0..=30 * 86_400).contains(&self.registration.reuse_window_secs) {
            bail!("registration.reuse_window_secs must be 0 (never reuse) to 2592000 (30 days)");
        }
        if !(256..=1_048_576).contains(&self.client_metadata_documents.max_bytes)
            || !(100..=60_000).contains(&self.client_metadata_documents.timeout_ms)
        {
            bail!("client_metadata_documents: max_bytes must be 256 to 1048576 and timeout_ms 100 to 60000");
        }
        if self.registration.unused_ttl_secs < 1 {
            bail!("registration.unused_ttl_secs must be at least 1");
        }
        self.keys.validate()?;
        self.siwe.validate()?;
        self.idp.settings()?;
        self.agents.validate()?;
        self.knowledge.validate()?;
        Ok(())
    }

    /// The provider catalog: the shipped one with `connections.catalog_file` and
    /// `connections.providers` over it. An error names the file, the provider and the field.
    pub fn catalog(&self) -> anyhow::Result<bk_connections::Catalog> {
        use bk_connections::{Catalog, CatalogSources, ConfigLayer};
        let file = match &self.connections.catalog_file {
            Some(p) => Some((
                p.display().to_string(),
                std::fs::read_to_string(p)
                    .with_context(|| format!("connections.catalog_file: cannot read {}", p.display()))?,
            )),
            None => None,
        };
        let sources = CatalogSources {
            operator_file: file.as_ref().map(|(name, text)| (name.as_str(), text.as_str())),
            config: (!self.connections.providers.is_empty()).then_some(ConfigLayer {
                name: "server configuration (connections.providers)",
                providers: &self.connections.providers,
            }),
            allow_http_loopback: self.connections.allow_http_loopback && self.connections.allow_private_addresses,
        };
        Ok(Catalog::load(&sources, &|var| std::env::var(var).ok())?)
    }

    pub fn database_url(&self) -> String {
        self.database
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("bridgekeeper.db").display()))
    }

    /// The issuer, given the address actually bound (so `--listen 127.0.0.1:0` works).
    pub fn issuer_for(&self, bound: SocketAddr) -> String {
        match &self.issuer {
            Some(i) => i.trim_end_matches('/').to_owned(),
            None => format!("http://{bound}"),
        }
    }
}
