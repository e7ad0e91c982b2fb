//! The command line (the contract scripts and operators rely on; see DESIGN.md).

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use bk_domain::account::{Account, NewAccountError, check_new_account};
use bk_domain::ids::AccountId;
use bk_domain::ports::{AccountStore, AuditStore, ClientStore, OperatorTokenStore, StoreError};
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};

#[derive(Parser, Debug)]
#[command(name = "bridgekeeper", version, about = "Multi-tenant OAuth 2.1 authorization server and MCP gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the configuration comes from; shared by every command so admin commands act on the same database.
#[derive(Args, Debug, Default)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data directory for the embedded database and generated keys (default ./data).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Public base URL (default http://{listen}).
        #[arg(long)]
        issuer: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Key material: the master key ring.
    Keys {
        #[command(flatten)]
        cfg: ConfigArgs,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Administration.
    Admin {
        #[command(flatten)]
        cfg: ConfigArgs,
        #[command(subcommand)]
        what: Admin,
    },
}

#[derive(Subcommand, Debug)]
pub enum Admin {
    /// Accounts (tenants).
    Account {
        #[command(subcommand)]
        action: AccountAction,
    },
    /// Operator API tokens (manage every client through /api/v1/auth-clients).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// OAuth clients.
    Client {
        #[command(subcommand)]
        action: ClientAction,
    },
    /// LLM models' upstream API keys, stored sealed under the master key.
    Llm {
        #[command(subcommand)]
        action: LlmAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum LlmAction {
    /// Store a configured model's upstream API key (sealed; it takes precedence over the model's
    /// `api_key_env` / `api_key_file` on every instance within two seconds). Audited (`llm.api_key.set`).
    SetKey {
        /// A model id of `[[llm.models]]`.
        #[arg(long)]
        model: String,
        /// Read the key from standard input (the only way: never on the command line).
        #[arg(long, required = true)]
        key_stdin: bool,
    },
    /// Remove a model's stored key: its configured key applies again. Audited (`llm.api_key.cleared`).
    ClearKey {
        #[arg(long)]
        model: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// The master keys of the configured ring (active first), how many stored values each seals,
    /// and the signing keys.
    List {
        #[arg(long, default_value = "text", value_parser = ["json", "text"])]
        format: String,
    },
    /// Make a new signing key the active one. The older keys stay in the JWKS (tokens they signed
    /// keep verifying) until every such token has expired — the access-token lifetime plus a minute —
    /// and then leave it; every running instance signs with the new key within ten seconds. Audited
    /// (`signing_key.rotated`). To rotate on a period instead, set `keys.rotate_every_days`.
    Rotate,
    /// Re-seal every stored secret (connection credentials, client secret copies, signing keys)
    /// under the active master key, row by row, while servers keep serving. Every instance must
    /// already hold the active key in its ring (see the README).
    RotateMaster,
}

#[derive(Subcommand, Debug)]
pub enum ClientAction {
    /// List clients (deleted ones are left out, except with --dynamic).
    List {
        /// Only dynamically registered clients (RFC 7591), with where they registered from, whether
        /// they ever completed an authorization, and when an unused one will be purged.
        #[arg(long)]
        dynamic: bool,
        #[arg(long, default_value = "text", value_parser = ["json", "text"])]
        format: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Print audit events, oldest first.
    Tail {
        /// Only this account's events.
        #[arg(long)]
        account: Option<String>,
        /// Only events of the last N minutes.
        #[arg(long)]
        since_mins: Option<i64>,
        #[arg(long, default_value = "text", value_parser = ["json", "text"])]
        format: String,
        /// At most this many events.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// Walk the hash chain and report the first broken link (exit status 1 if any).
    Verify,
}

#[derive(Subcommand, Debug)]
pub enum TokenAction {
    /// Create an operator token; prints its id and the token (shown once), labelled, or as JSON.
    Create {
        #[arg(long)]
        name: String,
        /// `text` (`id: …`, `token: …`) or `json` (`{"id", "name", "token"}`, for scripts).
        #[arg(long, default_value = "text", value_parser = ["json", "text"])]
        format: String,
    },
    /// Revoke an operator token by id.
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
pub enum AccountAction {
    /// Create an account; prints its id.
    Create {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (the only way: never on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List accounts, newest first: status, and counts of live grants, PATs and connections.
    List {
        /// Only accounts whose email contains this (any case).
        #[arg(long)]
        email: Option<String>,
        #[arg(long, value_parser = ["active", "disabled", "deleted"])]
        status: Option<String>,
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// At most this many (1 to 100).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, default_value = "text", value_parser = ["json", "text"])]
        format: String,
    },
    /// One account: status, and counts of live grants, PATs and connections.
    Show {
        id: String,
        #[arg(long, default_value = "text", value_parser = ["json", "text"])]
        format: String,
    },
    /// Disable an account: every app session, PAT and browser session is revoked at once, and it
    /// cannot sign in until enabled again. Idempotent.
    Disable {
        id: String,
        #[arg(long, default_value = "text", value_parser = ["json", "text"])]
        format: String,
    },
    /// Enable a disabled account (nothing that was revoked comes back).
    Enable {
        id: String,
        #[arg(long, default_value = "text", value_parser = ["json", "text"])]
        format: String,
    },
    /// Delete an account, irreversibly: disabled, then its connections (sealed credentials), PATs,
    /// emailed links and browser sessions erased, its email replaced and its password cleared.
    /// Its audit rows are kept.
    Delete {
        id: String,
        /// Required: deleting cannot be undone.
        #[arg(long)]
        yes: bool,
        #[arg(long, default_value = "text", value_parser = ["json", "text"])]
        format: String,
    },
}

pub(crate) fn load(cfg: &ConfigArgs, listen: Option<String>, issuer: Option<String>) -> anyhow::Result<Config> {
    Config::load(cfg.config.as_deref(), &Overrides { listen, issuer, data_dir: cfg.data_dir.clone() })
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { cfg, listen, issuer } => crate::serve::serve(load(&cfg, listen, issuer)?).await,
        Command::Migrate { cfg } => {
            let config = load(&cfg, None, None)?;
            let (store, _) = crate::serve::open_store(&config).await?;
            drop(store);
            println!("migrations applied to {}", redact_url(&config.database_url()));
            Ok(())
        }
        Command::Keys { cfg, action } => {
            let config = load(&cfg, None, None)?;
            let (store, embedded) = crate::serve::open_store(&config).await?;
            let master = crate::keys::master_key(&config, embedded)?;
            match action {
                KeysAction::List { format } => {
                    let counts = crate::keys::sealed_by_key(&store).await?;
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
                    let signing = bk_domain::ports::SigningKeyStore::signing_keys(&store, now).await?;
                    let ring: Vec<&str> = master.ids();
                    let unknown: Vec<(&String, &usize)> =
                        counts.iter().filter(|(id, _)| !ring.contains(&id.as_str())).collect();
                    if format == "json" {
                        let keys: Vec<serde_json::Value> = ring
                            .iter()
                            .enumerate()
                            .map(|(i, id)| {
                                serde_json::json!({"id": id, "active": i == 0, "sealed_values": counts.get(*id).copied().unwrap_or(0)})
                            })
                            .collect();
                        let unknown: Vec<serde_json::Value> =
                            unknown.iter().map(|(id, n)| serde_json::json!({"id": id, "sealed_values": n})).collect();
                        let signing: Vec<serde_json::Value> = signing
                            .iter()
                            .enumerate()
                            .map(|(i, k)| serde_json::json!({"kid": k.kid.as_str(), "alg": k.alg, "active": i == 0, "created_at": k.created_at}))
                            .collect();
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&serde_json::json!({
                                "master_keys": keys, "not_in_ring": unknown, "signing_keys": signing
                            }))?
                        );
                    } else {
                        for (i, id) in ring.iter().enumerate() {
                            let role = if i == 0 { "active" } else { "open-only" };
                            println!("master  {id:<20} {role:<10} seals {}", counts.get(*id).copied().unwrap_or(0));
                        }
                        for (id, n) in &unknown {
                            println!("master  {id:<20} MISSING    seals {n} (not in this ring: these do not open)");
                        }
                        for (i, k) in signing.iter().enumerate() {
                            let role = if i == 0 { "active" } else { "verify" };
                            println!("signing {:<20} {role:<10} {} created={}", k.kid.as_str(), k.alg, k.created_at);
                        }
                    }
                    Ok(())
                }
                KeysAction::Rotate => {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
                    let retire_after = now + config.tokens.access_token_ttl_secs + 60;
                    let (kid, done) = crate::keys::rotate_signing(&store, &master, now, retire_after).await?;
                    println!("active signing key: {kid}");
                    println!(
                        "older keys: {}, published until {retire_after} (Unix time; {} s from now), when every \
                         token they signed has expired",
                        done.retired,
                        retire_after - now
                    );
                    // Audited like the periodic rotation, through the same writer (redaction, hash chain).
                    let log = bk_audit::AuditLog::start(std::sync::Arc::new(store), &config.audit.to_config())?;
                    bk_domain::audit::AuditSink::record(
                        log.as_ref(),
                        crate::keys::rotation_event(&kid, &done, retire_after, now.saturating_mul(1000), "cli"),
                    );
                    log.flush().await;
                    Ok(())
                }
                KeysAction::RotateMaster => {
                    let r = crate::keys::rotate_master(&store, &master).await?;
                    println!(
                        "re-sealed {} values under {} ({} already under it)",
                        r.resealed,
                        master.id(),
                        r.already_current
                    );
                    if !r.failed.is_empty() {
                        for f in &r.failed {
                            println!("not re-sealed: {f}");
                        }
                        bail!("{} values were not re-sealed", r.failed.len());
                    }
                    Ok(())
                }
            }
        }
        Command::Admin { cfg, what: Admin::Account { action } } => account(&cfg, action).await,
        Command::Admin { cfg, what: Admin::Llm { action } } => crate::llm_keys::run(&cfg, action).await,
        Command::Admin { cfg, what: Admin::Audit { action } } => {
            let config = load(&cfg, None, None)?;
            let (store, _) = crate::serve::open_store(&config).await?;
            match action {
                AuditAction::Tail { account, since_mins, format, limit } => {
                    if !(1..=100_000).contains(&limit) {
                        bail!("--limit must be 1 to 100000");
                    }
                    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
                    let q = bk_domain::ports::AuditQuery {
                        since_ms: since_mins.map(|m| now_ms - m.max(0) * 60_000),
                        limit,
                        ..Default::default()
                    };
                    let tenant = account.map(bk_domain::ids::AccountId::from_string);
                    let rows = store.query_audit(tenant.as_ref(), &q).await?;
                    if format == "json" {
                        println!("{}", serde_json::to_string_pretty(&rows)?);
                    } else {
                        for r in rows {
                            let e = &r.event;
                            println!(
                                "{seq:>6} {at} {kind:<22} {outcome:<8} account={account} client={client} target={target} {details}",
                                seq = r.seq,
                                at = e.at_ms,
                                kind = e.kind,
                                outcome = e.outcome.as_str(),
                                account = e.account_id.as_ref().map(|a| a.as_str()).unwrap_or("-"),
                                client = e.actor.client_id.as_deref().unwrap_or("-"),
                                target = e.target.as_deref().unwrap_or("-"),
                                details = e.details,
                            );
                        }
                    }
                    Ok(())
                }
                AuditAction::Verify => {
                    let v = bk_audit::verify(&store).await?;
                    match v.broken {
                        None => {
                            println!(
                                "audit chain intact: {} rows checked (anchor {}, head {}){}",
                                v.checked,
                                v.anchor_seq,
                                v.head_seq,
                                if v.redacted > 0 {
                                    format!("; {} redacted when their account was deleted", v.redacted)
                                } else {
                                    String::new()
                                }
                            );
                            Ok(())
                        }
                        Some((seq, why)) => {
                            println!("audit chain BROKEN at row {seq}: {why} ({} rows verified before it)", v.checked);
                            std::process::exit(1);
                        }
                    }
                }
            }
        }
        Command::Admin { cfg, what: Admin::Client { action: ClientAction::List { dynamic, format } } } => {
            let config = load(&cfg, None, None)?;
            let (store, _) = crate::serve::open_store(&config).await?;
            let rows: Vec<serde_json::Value> = if dynamic {
                let ttl = config.registration.unused_ttl_secs;
                store.dynamic_clients().await?.iter().map(|d| dynamic_client_row(d, ttl)).collect()
            } else {
                store.list_clients(None).await?.iter().map(client_row).collect()
            };
            if format == "json" {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in &rows {
                    let text = |k: &str| match &r[k] {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => "-".into(),
                        v => v.to_string(),
                    };
                    let mut line = format!(
                        "{:<26} {:<12} {:<20} created={} {}",
                        text("client_id"),
                        text("type"),
                        text("role"),
                        text("created_at"),
                        text("name")
                    );
                    if dynamic {
                        line.push_str(&format!(
                            " used={} deleted={} source={} purge_at={}",
                            text("used"),
                            text("deleted"),
                            text("source"),
                            text("purge_at")
                        ));
                    }
                    println!("{line}");
                }
                if dynamic {
                    let unused = rows.iter().filter(|r| r["used"] == false && r["deleted"] == false).count();
                    println!("{} dynamically registered clients, {unused} live and never used", rows.len());
                }
            }
            Ok(())
        }
        Command::Admin { cfg, what: Admin::Token { action } } => {
            let config = load(&cfg, None, None)?;
            let (store, _) = crate::serve::open_store(&config).await?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
            match action {
                TokenAction::Create { name, format } => {
                    let name = name.trim().to_owned();
                    if name.is_empty() || name.len() > 100 {
                        bail!("--name must be 1 to 100 characters");
                    }
                    let token = bk_crypto::secret::new_token(bk_access::operator::OPERATOR_TOKEN_PREFIX);
                    let id = format!("opt_{}", bk_crypto::secret::b64url(&bk_crypto::secret::random_bytes::<9>()));
                    store
                        .create_operator_token(&bk_domain::token::OperatorToken {
                            id: id.clone(),
                            name: name.clone(),
                            hash: bk_crypto::secret::token_hash(token.expose()),
                            created_at: now,
                            revoked_at: None,
                        })
                        .await?;
                    if format == "json" {
                        println!("{}", serde_json::json!({"id": id, "name": name, "token": token.expose()}));
                    } else {
                        println!("id: {id}");
                        println!(
                            "token: {} (shown once: store it now; revoke with `admin token revoke {id}`)",
                            token.expose()
                        );
                    }
                    Ok(())
                }
                TokenAction::Revoke { id } => {
                    if store.revoke_operator_token(&id, now).await? {
                        println!("revoked {id}");
                        Ok(())
                    } else {
                        bail!("no live operator token {id}")
                    }
                }
            }
        }
    }
}

/// `admin account create`: the same rules and messages as the sign-up page.
async fn create_account(cfg: &ConfigArgs, email: String, password_stdin: bool) -> anyhow::Result<()> {
    if !password_stdin {
        bail!("--password-stdin is required");
    }
    let config = load(cfg, None, None)?;
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password).context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    let (store, _) = crate::serve::open_store(&config).await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    // The same rules and messages as the sign-up page: the domain's, then argon2 off the async threads.
    let email = check_new_account(&email, &password)?;
    let hash = tokio::task::spawn_blocking(move || bk_crypto::password::hash_password(&password)).await;
    let Some(hash) = hash.ok().and_then(Result::ok) else { bail!("The server could not hash the password.") };
    let account = Account::with_password(AccountId::generate(), email, hash, now);
    match store.create_account(&account).await {
        Ok(()) => {
            println!("{}", account.id);
            Ok(())
        }
        Err(StoreError::Conflict(_)) => Err(NewAccountError::EmailTaken.into()),
        Err(e) => {
            tracing::error!(error = %e, "account creation failed");
            bail!("The server could not create the account right now.")
        }
    }
}

/// `admin account …`: create, or the operator's list, show, disable, enable and delete, on the
/// configured database. The changes are audited (`account.disabled`, `.enabled`, `.deleted`, marked
/// `via: cli`); a running server sees them within a second.
async fn account(cfg: &ConfigArgs, action: AccountAction) -> anyhow::Result<()> {
    use bk_api::admin_accounts::{account_json, deleted_event, disabled_event, enabled_event};
    use bk_domain::account::{AccountEnabling, AccountQuery, AccountStatus, MAX_ACCOUNTS_PAGE};
    use bk_domain::audit::{AuditEvent, AuditSink, Outcome};

    if let AccountAction::Create { email, password_stdin } = action {
        return create_account(cfg, email, password_stdin).await;
    }
    let config = load(cfg, None, None)?;
    let (store, _) = crate::serve::open_store(&config).await?;
    let store = std::sync::Arc::new(store);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let now_ms = now.saturating_mul(1000);
    let overview = |id: AccountId| {
        let store = store.clone();
        async move { store.account_overview(&id, now).await?.with_context(|| format!("no account {id}")) }
    };
    // Changes are audited like the API's, through the same writer (redaction, hash chain).
    let audit = |e: AuditEvent| {
        let store = store.clone();
        let config = config.audit.to_config();
        async move {
            let log = bk_audit::AuditLog::start(store, &config)?;
            log.record(e.detail("via", "cli"));
            log.flush().await;
            anyhow::Ok(())
        }
    };
    let event = |kind: &str| AuditEvent::new(kind, Outcome::Success, now_ms);
    match action {
        // Answered above, before the database is opened here.
        AccountAction::Create { .. } => Ok(()),
        AccountAction::List { email, status, page, limit, format } => {
            if page == 0 || !(1..=MAX_ACCOUNTS_PAGE).contains(&limit) {
                bail!("--page must be at least 1 and --limit 1 to {MAX_ACCOUNTS_PAGE}");
            }
            let email = email.map(|e| e.trim().to_lowercase()).filter(|e| !e.is_empty());
            if email.as_ref().is_some_and(|e| e.len() > bk_domain::account::MAX_EMAIL_BYTES) {
                bail!("--email is at most 254 bytes");
            }
            let q = AccountQuery {
                email_contains: email,
                status: status.as_deref().and_then(AccountStatus::parse),
                page,
                limit,
            };
            let found = store.list_accounts(&q, now).await?;
            let rows: Vec<serde_json::Value> = found.items.iter().map(account_json).collect();
            if format == "json" {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "accounts": rows, "page": page, "limit": limit, "total": found.total,
                    }))?
                );
            } else {
                for r in &rows {
                    println!("{}", account_line(r));
                }
                println!("{} accounts match (page {page}, {} per page)", found.total, limit);
            }
            Ok(())
        }
        AccountAction::Show { id, format } => {
            let v = account_json(&overview(AccountId::from_string(id)).await?);
            if format == "json" {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for key in [
                    "id",
                    "email",
                    "emailVerified",
                    "status",
                    "createdAt",
                    "disabledAt",
                    "deletedAt",
                    "liveGrants",
                    "livePats",
                    "connections",
                ] {
                    println!("{key:<14} {}", text_of(&v[key]));
                }
            }
            Ok(())
        }
        AccountAction::Disable { id, format } => {
            let id = AccountId::from_string(id);
            let r = store.disable_account(&id, now).await?.with_context(|| format!("no account {id}"))?;
            audit(disabled_event(event("account.disabled"), &id, &r)).await?;
            let v = account_json(&overview(id.clone()).await?);
            if format == "json" {
                let revoked = serde_json::json!({
                    "alreadyDisabled": !r.newly_disabled, "sessions": r.sessions.len(), "pats": r.pats,
                    "browserSessions": r.browser_sessions,
                });
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({"account": v, "revoked": revoked}))?);
            } else {
                let was = if r.newly_disabled { "disabled" } else { "already disabled;" };
                println!(
                    "{was} {id}: revoked {} sessions, {} PATs, {} browser sessions",
                    r.sessions.len(),
                    r.pats,
                    r.browser_sessions
                );
            }
            Ok(())
        }
        AccountAction::Enable { id, format } => {
            let id = AccountId::from_string(id);
            let outcome = store.enable_account(&id).await?.with_context(|| format!("no account {id}"))?;
            audit(enabled_event(event("account.enabled"), &id, outcome)).await?;
            if outcome == AccountEnabling::Deleted {
                bail!("{id} is deleted: a deleted account cannot be enabled");
            }
            let v = account_json(&overview(id.clone()).await?);
            if format == "json" {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if outcome == AccountEnabling::Enabled {
                println!("enabled {id} (it signs in again; nothing that was revoked comes back)");
            } else {
                println!("{id} is already active");
            }
            Ok(())
        }
        AccountAction::Delete { id, yes, format } => {
            if !yes {
                bail!("deleting an account cannot be undone: add --yes to delete {id}");
            }
            let id = AccountId::from_string(id);
            let x = store.delete_account(&id, now).await?.with_context(|| format!("no account {id}"))?;
            audit(deleted_event(event("account.deleted"), &id, &x)).await?;
            let v = account_json(&overview(id.clone()).await?);
            if format == "json" {
                let erased = serde_json::json!({
                    "alreadyDeleted": !x.newly_deleted, "sessionsRevoked": x.revoked.sessions.len(),
                    "connections": x.connections, "pats": x.pats, "emailLinks": x.email_links,
                    "browserSessions": x.browser_sessions,
                });
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({"account": v, "erased": erased}))?);
            } else {
                let was = if x.newly_deleted { "deleted" } else { "already deleted;" };
                println!(
                    "{was} {id}: revoked {} sessions; erased {} connections, {} PATs, {} emailed links, {} browser sessions; email now {}",
                    x.revoked.sessions.len(),
                    x.connections,
                    x.pats,
                    x.email_links,
                    x.browser_sessions,
                    text_of(&v["email"])
                );
            }
            Ok(())
        }
    }
}

/// A JSON value as a column of text output (`-` for null).
fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        v => v.to_string(),
    }
}

/// One account as a line of `admin account list`.
fn account_line(r: &serde_json::Value) -> String {
    format!(
        "{:<36} {:<8} verified={:<5} created={} disabled={} grants={} pats={} connections={} {}",
        text_of(&r["id"]),
        text_of(&r["status"]),
        text_of(&r["emailVerified"]),
        text_of(&r["createdAt"]),
        text_of(&r["disabledAt"]),
        text_of(&r["liveGrants"]),
        text_of(&r["livePats"]),
        text_of(&r["connections"]),
        text_of(&r["email"]),
    )
}

/// A database URL without its password, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

fn client_row(c: &bk_domain::client::Client) -> serde_json::Value {
    serde_json::json!({
        "client_id": c.id,
        "name": c.name,
        "type": c.client_type.as_str(),
        "role": c.role.as_str(),
        "origin": c.origin.as_str(),
        "redirect_uris": c.redirect_uris,
        "scope": c.allowed_scopes.to_string(),
        "owner": c.owner,
        "created_at": c.created_at,
    })
}

/// A dynamically registered client for the operator: when it was never used, when the purge takes it.
fn dynamic_client_row(d: &bk_domain::registration::DynamicClient, unused_ttl_secs: i64) -> serde_json::Value {
    let mut row = client_row(&d.client);
    row["used"] = serde_json::json!(d.used);
    row["deleted"] = serde_json::json!(d.deleted);
    row["purge_at"] =
        if d.used { serde_json::Value::Null } else { serde_json::json!(d.client.created_at + unused_ttl_secs) };
    if let Some(r) = &d.registration {
        row["source"] = serde_json::json!(r.source);
        row["software_id"] = serde_json::json!(r.metadata.software_id);
        row["software_version"] = serde_json::json!(r.metadata.software_version);
        row["registration_updated_at"] = serde_json::json!(r.updated_at);
    }
    row
}
