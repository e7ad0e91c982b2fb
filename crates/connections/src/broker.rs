//! The credential broker: the one way to a usable upstream credential, for the gateway on every
//! upstream call and for `PUT /api/v1/connections/{id}/refresh`.
//!
//! [`Broker::credential`] reads the connection and its sealed credential in one query and opens it
//! for this one call (the plaintext is zeroized when the [`UsableCredential`] is dropped). When the
//! access token expires within the refresh skew (`connections.refresh_skew_secs`), or the caller
//! reports that the provider answered 401 ([`Broker::credential_after_401`]), the token is
//! refreshed exactly once:
//!
//! - **in this process** one refresh per connection is in flight at a time; every other caller
//!   awaits its result on a channel (no polling) — the flight runs in its own task, so a caller that
//!   gives up does not cancel it for the others;
//! - **across instances** the flight takes the connection's lease in the database (a
//!   compare-and-set, with a random lease token); while another instance holds it, the one flight of
//!   this process watches the connection's refresh generation and uses that instance's result;
//! - **finishing** is a compare-and-set on the lease token: a holder whose lease ran out and was
//!   taken by another instance cannot overwrite what the new holder stored;
//! - the new access token and a rotated refresh token are sealed and stored in one write before any
//!   caller gets them.
//!
//! `invalid_grant` marks the connection `expired` (or `error` when the previous holder of the lease
//! stopped mid-refresh — the provider may have rotated the refresh token to one that was never
//! stored — so the tenant is told to reconnect instead of it failing silently); a failure that may
//! pass leaves the connection as it was, with `last_error`, and no new attempt for 30 seconds.
//! Every refresh made and every status change is audited (and so on the live event stream).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bk_domain::access::Clock;
use bk_domain::audit::{AuditEvent, AuditSink, Outcome};
use bk_domain::connection::{Connection, ConnectionStatus, REFRESH_COOLDOWN_SECS, RefreshDecision, refresh_decision};
use bk_domain::ids::{AccountId, ConnectionId};
use bk_domain::ports::{ConnectionStore, LeaseAttempt, StoreError};
use tokio::sync::watch;

use crate::catalog::{AuthKind, Catalog, OAuth2};
use crate::oauth2::{Upstream, UpstreamError};
use crate::vault::{Credential, Vault};

/// How often the one waiting flight of a process looks at a lease held by another instance.
const POLL: Duration = Duration::from_millis(50);

/// How the broker refreshes.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    /// Refresh when the access token expires within this many seconds.
    pub refresh_skew_secs: i64,
    /// How long a refresh lease holds: longer than a call to the provider may take.
    pub lease: Duration,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self { refresh_skew_secs: 60, lease: Duration::from_secs(15) }
    }
}

/// An upstream credential ready for one call. The plaintext is zeroized when this is dropped; its
/// `Debug` names only the connection and the kind.
pub struct UsableCredential {
    connection: Connection,
    credential: Credential,
    generation: i64,
}

impl UsableCredential {
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// The refresh generation the credential belongs to (what `credential_after_401` compares).
    pub fn generation(&self) -> i64 {
        self.generation
    }
}

impl fmt::Debug for UsableCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UsableCredential({}, {:?})", self.connection.id, self.credential)
    }
}

/// Why no usable credential could be given. Never carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No such connection for this tenant (another tenant's id included).
    #[error("no such connection")]
    Missing,
    /// The connection needs the tenant (reconnect): expired, revoked, in error, or its token ran out
    /// with nothing to refresh it with.
    #[error("the connection is not usable ({}): {reason}", status.as_str())]
    NotUsable { status: ConnectionStatus, reason: String, connection: Box<Connection> },
    /// The provider could not refresh just now and the old token is no longer good.
    #[error("the provider could not refresh the connection; retry in {retry_after} s")]
    RetryLater { retry_after: i64, connection: Option<Box<Connection>> },
    /// Another instance held the refresh for longer than a caller waits.
    #[error("a refresh of this connection is still under way")]
    Busy,
    /// The stored credential does not open (the connection is marked `error`).
    #[error("the stored credential could not be read")]
    Unreadable,
    #[error("storage: {0}")]
    Store(Arc<StoreError>),
}

impl From<StoreError> for BrokerError {
    fn from(e: StoreError) -> Self {
        BrokerError::Store(Arc::new(e))
    }
}

/// What became of a refresh (shared by every caller that awaited it).
#[derive(Clone, Debug)]
pub enum RefreshOutcome {
    /// Refreshed — by this flight (`by_this_caller`) or by another instance while it waited — or
    /// settled by the provider's refusal (the status says). `sealed` is the credential as stored,
    /// when the connection is usable. `previous` is the status before, when this flight changed it.
    Settled {
        connection: Connection,
        sealed: Option<Arc<Vec<u8>>>,
        generation: i64,
        by_this_caller: bool,
        previous: Option<ConnectionStatus>,
    },
    /// Nothing to refresh with (no refresh token, not an OAuth connection, or already expired).
    CannotRefresh(Connection),
    /// A recent failure that may pass, or the provider unavailable now: retry in this many seconds.
    RetryLater {
        retry_after: i64,
        connection: Option<Connection>,
    },
    /// Another instance held the lease for longer than this one would wait.
    Busy,
    Missing,
}

type FlightResult = Result<RefreshOutcome, Arc<StoreError>>;
type FlightKey = (AccountId, ConnectionId);

/// Why a refresh was asked for (in the audit row).
#[derive(Clone, Copy, Debug)]
enum Trigger {
    Expiring,
    Upstream401,
    Requested,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Expiring => "expiring",
            Trigger::Upstream401 => "upstream_401",
            Trigger::Requested => "requested",
        }
    }
}

/// The credential broker (cheap to clone; clones share the in-process flights).
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ConnectionStore>,
    vault: Vault,
    upstream: Arc<Upstream>,
    catalog: Arc<Catalog>,
    clock: Arc<dyn Clock>,
    settings: BrokerSettings,
    events: Arc<dyn AuditSink>,
    flights: Mutex<HashMap<FlightKey, watch::Receiver<Option<FlightResult>>>>,
}

impl Broker {
    pub fn new(
        store: Arc<dyn ConnectionStore>,
        vault: Vault,
        upstream: Arc<Upstream>,
        catalog: Arc<Catalog>,
        clock: Arc<dyn Clock>,
        settings: BrokerSettings,
        events: Arc<dyn AuditSink>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                vault,
                upstream,
                catalog,
                clock,
                settings,
                events,
                flights: Mutex::default(),
            }),
        }
    }

    pub fn settings(&self) -> &BrokerSettings {
        &self.inner.settings
    }

    /// A usable credential of the tenant's connection, refreshed first when it expires within the
    /// skew.
    pub async fn credential(&self, account: &AccountId, id: &ConnectionId) -> Result<UsableCredential, BrokerError> {
        let row = self.inner.store.sealed_connection(account, id).await?.ok_or(BrokerError::Missing)?;
        let now = self.inner.clock.now();
        let c = row.connection;
        if c.status != ConnectionStatus::Active {
            return Err(not_usable(c));
        }
        let expiring = c.expires_at.is_some_and(|at| at - now <= self.inner.settings.refresh_skew_secs);
        if !expiring {
            return self.inner.open(c, &row.sealed, row.generation).await;
        }
        let still_valid = c.expires_at.is_some_and(|at| at > now);
        if !c.can_refresh {
            return if still_valid {
                self.inner.open(c, &row.sealed, row.generation).await
            } else {
                Err(BrokerError::NotUsable {
                    status: c.status,
                    reason: "the provider's token ran out and there is no refresh token: reconnect".into(),
                    connection: Box::new(c),
                })
            };
        }
        let outcome = self.refresh_once(account, id, row.generation, Trigger::Expiring).await?;
        // A refresh that cannot happen now leaves a token that is still good in use until it runs out.
        let fallback = still_valid.then_some((c, row.sealed, row.generation));
        self.usable(outcome, fallback).await
    }

    /// The provider answered 401 to `rejected`: a refreshed credential (by this caller, or by anyone
    /// who refreshed since `rejected` was handed out).
    pub async fn credential_after_401(
        &self,
        account: &AccountId,
        id: &ConnectionId,
        rejected: &UsableCredential,
    ) -> Result<UsableCredential, BrokerError> {
        let row = self.inner.store.sealed_connection(account, id).await?.ok_or(BrokerError::Missing)?;
        if row.connection.status != ConnectionStatus::Active {
            return Err(not_usable(row.connection));
        }
        if row.generation > rejected.generation {
            // Refreshed since: that one has not been rejected.
            return self.inner.open(row.connection, &row.sealed, row.generation).await;
        }
        if !row.connection.can_refresh {
            // The provider no longer takes it and nothing can renew it: the connection says so.
            let reason = "the provider refused the credential (401) and it cannot be refreshed: reconnect";
            let marked = self
                .inner
                .under_lease(account, id, |c| {
                    c.status = ConnectionStatus::Expired;
                    c.last_error = Some(reason.into());
                })
                .await?;
            let c = match marked {
                Some(c) => {
                    self.inner.events.record(
                        self.inner
                            .emit(&c, "connection.status_changed", Outcome::Success)
                            .detail("from", ConnectionStatus::Active.as_str())
                            .detail("to", c.status.as_str())
                            .detail("reason", reason),
                    );
                    c
                }
                None => row.connection,
            };
            return Err(BrokerError::NotUsable {
                status: ConnectionStatus::Expired,
                reason: reason.into(),
                connection: Box::new(c),
            });
        }
        let outcome = self.refresh_once(account, id, rejected.generation, Trigger::Upstream401).await?;
        self.usable(outcome, None).await
    }

    /// The provider asked for more access than the connection holds (403 `insufficient_scope`):
    /// the scopes it named are kept in the connection's `metadata.requiredScopes` (a reconnect asks
    /// for them too) and `lastError` says so; audited `connection.scope_required`.
    pub async fn scope_required(
        &self,
        account: &AccountId,
        id: &ConnectionId,
        scopes: &[String],
    ) -> Result<(), BrokerError> {
        let changed = self
            .inner
            .under_lease(account, id, |c| {
                let mut required: Vec<String> = c
                    .metadata
                    .get("requiredScopes")
                    .and_then(serde_json::Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                for s in scopes.iter().filter(|s| !s.is_empty() && s.len() <= 256).take(50) {
                    if !required.contains(s) {
                        required.push(s.clone());
                    }
                }
                if !c.metadata.is_object() {
                    c.metadata = serde_json::json!({});
                }
                c.metadata["requiredScopes"] = serde_json::json!(required);
                c.last_error = Some(format!(
                    "the provider asked for more access (scope {}): reconnect to grant it",
                    required.join(" ")
                ));
            })
            .await?;
        if let Some(c) = changed {
            let scopes = c.metadata["requiredScopes"].as_array().map(|a| a.len()).unwrap_or(0);
            self.inner.events.record(
                self.inner
                    .emit(&c, "connection.scope_required", Outcome::Success)
                    .detail("scopes", c.metadata["requiredScopes"].to_string())
                    .detail("count", scopes as u64),
            );
        }
        Ok(())
    }

    /// Refreshes now (`PUT /api/v1/connections/{id}/refresh`): once, however many callers ask at
    /// the same moment on any instance; a caller that finds a refresh made since it asked uses it.
    pub async fn refresh_now(&self, account: &AccountId, id: &ConnectionId) -> Result<RefreshOutcome, BrokerError> {
        let Some(row) = self.inner.store.sealed_connection(account, id).await? else {
            return Ok(RefreshOutcome::Missing);
        };
        self.refresh_once(account, id, row.generation, Trigger::Requested).await
    }

    /// The in-process single flight: one refresh task per connection; everyone awaits its result.
    async fn refresh_once(
        &self,
        account: &AccountId,
        id: &ConnectionId,
        seen_generation: i64,
        trigger: Trigger,
    ) -> Result<RefreshOutcome, BrokerError> {
        let mut rx = {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            let key = (account.clone(), id.clone());
            match flights.get(&key) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    flights.insert(key.clone(), rx.clone());
                    let inner = self.inner.clone();
                    tokio::spawn(async move {
                        let flight = Flight { inner, key };
                        let (account, id) = &flight.key;
                        let result =
                            flight.inner.refresh(account, id, seen_generation, trigger).await.map_err(Arc::new);
                        // Gone from the map before the result is published: a caller arriving later
                        // starts a new flight, which sees the new generation and uses this result.
                        drop(flight);
                        let _ = tx.send(Some(result));
                    });
                    rx
                }
            }
        };
        let result = rx.wait_for(Option::is_some).await.map_err(|_| BrokerError::Busy)?.clone();
        match result {
            Some(Ok(outcome)) => Ok(outcome),
            Some(Err(e)) => Err(BrokerError::Store(e)),
            None => Err(BrokerError::Busy),
        }
    }

    /// A refresh's outcome as a usable credential, or why not. `fallback`: the credential held
    /// before, still good for a while, used when the refresh could not happen now.
    async fn usable(
        &self,
        outcome: RefreshOutcome,
        fallback: Option<(Connection, Vec<u8>, i64)>,
    ) -> Result<UsableCredential, BrokerError> {
        match outcome {
            RefreshOutcome::Settled { connection, sealed: Some(sealed), generation, .. }
                if connection.status == ConnectionStatus::Active =>
            {
                self.inner.open(connection, &sealed, generation).await
            }
            RefreshOutcome::Settled { connection, .. } => Err(not_usable(connection)),
            RefreshOutcome::Missing => Err(BrokerError::Missing),
            other => match fallback {
                Some((c, sealed, generation)) => self.inner.open(c, &sealed, generation).await,
                None => Err(match other {
                    RefreshOutcome::CannotRefresh(c) => not_usable(c),
                    RefreshOutcome::RetryLater { retry_after, connection } => {
                        BrokerError::RetryLater { retry_after, connection: connection.map(Box::new) }
                    }
                    _ => BrokerError::Busy,
                }),
            },
        }
    }
}

/// A flight in the map; leaving it (finished, or its task panicked) takes it out, so a failed
/// flight never leaves later callers waiting on a channel nobody will answer.
struct Flight {
    inner: Arc<Inner>,
    key: FlightKey,
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.inner.flights.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

/// Where a connection's refresh goes: the catalog's provider, or (`mcp`) the authorization server
/// its credential was issued by.
enum RefreshVia<'a> {
    Catalog(&'a OAuth2),
    Discovered,
}

fn not_usable(c: Connection) -> BrokerError {
    let reason = c.last_error.clone().unwrap_or_else(|| match c.status {
        ConnectionStatus::Expired => "the provider no longer accepts this connection: reconnect".into(),
        ConnectionStatus::Revoked => "the connection was revoked: reconnect".into(),
        _ => "the connection cannot be used: reconnect".into(),
    });
    BrokerError::NotUsable { status: c.status, reason, connection: Box::new(c) }
}

impl Inner {
    /// Opens a sealed credential for one use (a refresh that meets one that does not open marks the
    /// connection `error`).
    async fn open(&self, c: Connection, sealed: &[u8], generation: i64) -> Result<UsableCredential, BrokerError> {
        match self.vault.open(&c.account_id, &c.id, sealed) {
            Ok(credential) => Ok(UsableCredential { connection: c, credential, generation }),
            Err(e) => {
                tracing::error!(connection = %c.id, error = %e, "a stored credential does not open");
                Err(BrokerError::Unreadable)
            }
        }
    }

    fn refresh_via(&self, c: &Connection) -> Option<RefreshVia<'_>> {
        match &self.catalog.get(&c.provider_id)?.auth {
            AuthKind::OAuth2(o) => Some(RefreshVia::Catalog(o)),
            AuthKind::Mcp(_) => Some(RefreshVia::Discovered),
            _ => None,
        }
    }

    /// Changes a connection's state under its refresh lease, so a refresh under way (or landing at
    /// the same moment) is never undone: `None` (nothing written) when another holds the lease, or
    /// when the last holder stopped mid-refresh (its evidence is left for the next refresh).
    async fn under_lease(
        &self,
        account: &AccountId,
        id: &ConnectionId,
        change: impl FnOnce(&mut Connection),
    ) -> Result<Option<Connection>, StoreError> {
        let now = self.clock.now();
        let token = bk_crypto::secret::b64url(&bk_crypto::secret::random_bytes::<16>());
        match self.store.acquire_refresh_lease(account, id, now, now + 5, &token).await? {
            LeaseAttempt::Acquired(held) if !held.interrupted => {
                let mut c = held.connection;
                change(&mut c);
                c.updated_at = now;
                let stored = self.store.finish_refresh(account, &c, None, held.failed_at, &token).await?;
                Ok(stored.then_some(c))
            }
            // Left to run out: the next refresh still sees that the previous holder stopped.
            LeaseAttempt::Acquired(_) => Ok(None),
            LeaseAttempt::Held { .. } | LeaseAttempt::Missing => Ok(None),
        }
    }

    fn emit(&self, c: &Connection, kind: &str, outcome: Outcome) -> AuditEvent {
        AuditEvent::new(kind, outcome, self.clock.now_ms())
            .account(&c.account_id)
            .target(&c.id)
            .detail("provider", c.provider_id.clone())
    }

    /// The refresh across instances (one per process at a time: see `refresh_once`).
    async fn refresh(
        &self,
        account: &AccountId,
        id: &ConnectionId,
        seen: i64,
        trigger: Trigger,
    ) -> Result<RefreshOutcome, StoreError> {
        let lease = self.settings.lease;
        let deadline = std::time::Instant::now() + lease + Duration::from_secs(2);
        let lease_secs = i64::try_from(lease.as_secs()).unwrap_or(60).max(1);
        let token = bk_crypto::secret::b64url(&bk_crypto::secret::random_bytes::<16>());
        loop {
            let now = self.clock.now();
            match self.store.acquire_refresh_lease(account, id, now, now + lease_secs, &token).await? {
                LeaseAttempt::Missing => return Ok(RefreshOutcome::Missing),
                LeaseAttempt::Held { generation } => {
                    if generation > seen {
                        // Another instance finished a refresh since this caller looked: use it.
                        return Ok(match self.store.sealed_connection(account, id).await? {
                            Some(row) => RefreshOutcome::Settled {
                                sealed: Some(Arc::new(row.sealed)),
                                generation: row.generation,
                                connection: row.connection,
                                by_this_caller: false,
                                previous: None,
                            },
                            None => RefreshOutcome::Missing,
                        });
                    }
                    if std::time::Instant::now() >= deadline {
                        return Ok(RefreshOutcome::Busy);
                    }
                    tokio::time::sleep(POLL).await;
                }
                LeaseAttempt::Acquired(held) => {
                    let decision = refresh_decision(&held.connection, held.generation, seen, held.failed_at, now);
                    let refreshable = match decision {
                        RefreshDecision::Refresh => self.refresh_via(&held.connection),
                        _ => None,
                    };
                    let Some(provider) = refreshable else {
                        self.store.release_refresh_lease(account, id, &token).await?;
                        return Ok(match decision {
                            RefreshDecision::AlreadyDone => RefreshOutcome::Settled {
                                connection: held.connection,
                                sealed: Some(Arc::new(held.sealed)),
                                generation: held.generation,
                                by_this_caller: false,
                                previous: None,
                            },
                            RefreshDecision::CoolingDown { retry_after } => {
                                RefreshOutcome::RetryLater { retry_after, connection: Some(held.connection) }
                            }
                            RefreshDecision::CannotRefresh | RefreshDecision::Refresh => {
                                RefreshOutcome::CannotRefresh(held.connection)
                            }
                        });
                    };
                    let held = *held;
                    match self.refresh_held(account, held, provider, &token, trigger).await? {
                        Some(outcome) => return Ok(outcome),
                        // The lease ran out under this holder and another took it: wait for
                        // that one's result like any other waiter.
                        None => continue,
                    }
                }
            }
        }
    }

    /// The lease is ours: call the provider and store the outcome (which releases the lease).
    /// `None` when the lease was lost before the outcome could be stored.
    async fn refresh_held(
        &self,
        account: &AccountId,
        held: bk_domain::ports::RefreshLease,
        via: RefreshVia<'_>,
        token: &str,
        trigger: Trigger,
    ) -> Result<Option<RefreshOutcome>, StoreError> {
        let mut c = held.connection;
        let previous = c.status;
        let credential = match self.vault.open(account, &c.id, &held.sealed) {
            Ok(cred) => cred,
            Err(e) => {
                tracing::error!(connection = %c.id, error = %e, "a stored credential does not open");
                c.status = ConnectionStatus::Error;
                c.last_error = Some("the stored credential could not be read; reconnect".into());
                c.updated_at = self.clock.now();
                return self.finished(account, c, None, None, token, held.generation, previous, trigger).await;
            }
        };
        // An `mcp` connection refreshes where its tokens came from (kept, sealed, with them).
        let (discovered, carried) = match (&via, &credential) {
            (RefreshVia::Discovered, Credential::OAuth { upstream: Some(u), .. }) => {
                (u.auth.oauth2(u.client_secret.as_deref()).ok(), Some(u.clone()))
            }
            _ => (None, None),
        };
        let o = match (&via, &discovered) {
            (RefreshVia::Catalog(o), _) => Some(*o),
            (RefreshVia::Discovered, d) => d.as_ref(),
        };
        let Some(o) = o.filter(|_| matches!(credential, Credential::OAuth { refresh_token: Some(_), .. })) else {
            self.store.release_refresh_lease(account, &c.id, token).await?;
            return Ok(Some(RefreshOutcome::CannotRefresh(c)));
        };
        let result = self.upstream.refresh(o, &credential).await.map(|mut tokens| {
            if let Credential::OAuth { upstream, .. } = &mut tokens.credential {
                *upstream = carried;
            }
            tokens
        });
        drop(credential);
        let now = self.clock.now();
        c.updated_at = now;
        match result {
            Ok(tokens) => {
                let sealed = match self.vault.seal(account, &c.id, &tokens.credential) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(connection = %c.id, error = %e, "sealing a refreshed credential failed");
                        self.store.release_refresh_lease(account, &c.id, token).await?;
                        return Ok(Some(RefreshOutcome::RetryLater { retry_after: 1, connection: None }));
                    }
                };
                c.status = ConnectionStatus::Active;
                c.last_error = None;
                c.expires_at = tokens.expires_in.map(|s| now.saturating_add(s));
                if let Some(scopes) = tokens.scopes {
                    c.scopes = scopes;
                }
                self.finished(account, c, Some(sealed), None, token, held.generation, previous, trigger).await
            }
            Err(UpstreamError::Refused { error, .. }) if error == "invalid_grant" => {
                if held.interrupted {
                    // The previous holder stopped mid-refresh: the provider may have rotated the
                    // refresh token to one that never reached the database. Say so.
                    c.status = ConnectionStatus::Error;
                    c.last_error = Some(
                        "a refresh was interrupted (the server making it stopped) and the provider no longer accepts \
                         the previous refresh token (invalid_grant): reconnect"
                            .into(),
                    );
                } else {
                    c.status = ConnectionStatus::Expired;
                    c.last_error = Some(
                        "the provider no longer accepts this connection's refresh token (invalid_grant): reconnect"
                            .into(),
                    );
                }
                self.finished(account, c, None, None, token, held.generation, previous, trigger).await
            }
            Err(UpstreamError::Refused { error, .. }) => {
                c.status = ConnectionStatus::Error;
                c.last_error = Some(format!("the provider refused the refresh ({error})"));
                self.finished(account, c, None, Some(now), token, held.generation, previous, trigger).await
            }
            Err(e) => {
                tracing::warn!(connection = %c.id, provider = %c.provider_id, error = %e, "refresh failed");
                c.last_error = Some("the provider could not be reached to refresh; retrying after a pause".into());
                if !self.store.finish_refresh(account, &c, None, Some(now), token).await? {
                    return Ok(None);
                }
                self.events.record(
                    self.emit(&c, "connection.refreshed", Outcome::Failure)
                        .detail("trigger", trigger.as_str())
                        .detail("error", "unavailable"),
                );
                Ok(Some(RefreshOutcome::RetryLater { retry_after: REFRESH_COOLDOWN_SECS, connection: Some(c) }))
            }
        }
    }

    /// Stores a settled outcome under the lease (compare-and-set on its token) and audits it.
    #[allow(clippy::too_many_arguments)]
    async fn finished(
        &self,
        account: &AccountId,
        c: Connection,
        sealed: Option<Vec<u8>>,
        failed_at: Option<i64>,
        token: &str,
        generation: i64,
        previous: ConnectionStatus,
        trigger: Trigger,
    ) -> Result<Option<RefreshOutcome>, StoreError> {
        if !self.store.finish_refresh(account, &c, sealed.as_deref(), failed_at, token).await? {
            tracing::error!(
                connection = %c.id,
                "a refresh's outcome was discarded: this holder's lease ran out and another caller took it"
            );
            return Ok(None);
        }
        let ok = c.status == ConnectionStatus::Active;
        self.events.record(
            self.emit(&c, "connection.refreshed", if ok { Outcome::Success } else { Outcome::Failure })
                .detail("trigger", trigger.as_str()),
        );
        let changed = (previous != c.status).then_some(previous);
        if let Some(from) = changed {
            let mut e = self
                .emit(&c, "connection.status_changed", Outcome::Success)
                .detail("from", from.as_str())
                .detail("to", c.status.as_str());
            if let Some(reason) = &c.last_error {
                e = e.detail("reason", reason.clone());
            }
            self.events.record(e);
        }
        Ok(Some(RefreshOutcome::Settled {
            sealed: sealed.filter(|_| ok).map(Arc::new),
            generation: generation + 1,
            connection: c,
            by_this_caller: true,
            previous: changed,
        }))
    }
}
