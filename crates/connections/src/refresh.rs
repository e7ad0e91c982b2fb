//! Refresh, exactly once. Of all the callers that ask to refresh one connection at the same time,
//! on any number of instances, one takes the connection's lease in the database (a compare-and-set)
//! and calls the provider; the others wait and, when the connection's refresh generation moves,
//! use its result instead of refreshing again (the re-read that makes it exactly once). The new
//! access token and a rotated refresh token are stored in one write, before anyone uses them.
//! `invalid_grant` marks the connection `expired`; a failure that may pass leaves it as it was, with
//! `last_error`, and no new attempt for 30 seconds.

use std::time::Duration;

use bk_domain::access::Clock;
use bk_domain::connection::{Connection, ConnectionStatus, RefreshDecision, refresh_decision};
use bk_domain::ids::{ConnectionId, TenantId};
use bk_domain::ports::{ConnectionStore, LeaseAttempt, StoreError};

use crate::catalog::{AuthKind, Catalog};
use crate::oauth2::{Upstream, UpstreamError};
use crate::vault::{Credential, Vault};

/// How often a waiting caller looks again.
const POLL: Duration = Duration::from_millis(50);

/// What became of a request to refresh.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// Refreshed — by this caller (`by_this_caller`) or by another while it waited — or settled by
    /// the provider's refusal (the status says). `previous` is the status before, when this caller
    /// changed it.
    Settled {
        connection: Connection,
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
    /// Another caller held the lease for longer than this one would wait.
    Busy,
    Missing,
}

/// Everything a refresh needs.
pub struct Refresher<'a> {
    pub store: &'a dyn ConnectionStore,
    pub vault: &'a Vault,
    pub upstream: &'a Upstream,
    pub catalog: &'a Catalog,
    pub clock: &'a dyn Clock,
    /// How long a lease holds: longer than a call to the provider may take.
    pub lease: Duration,
}

impl Refresher<'_> {
    pub async fn refresh(&self, tenant: &TenantId, id: &ConnectionId) -> Result<RefreshOutcome, StoreError> {
        let deadline = std::time::Instant::now() + self.lease + Duration::from_secs(2);
        let lease_secs = i64::try_from(self.lease.as_secs()).unwrap_or(60).max(1);
        let mut first_seen: Option<i64> = None;
        loop {
            let now = self.clock.now();
            match self.store.acquire_refresh_lease(tenant, id, now, now + lease_secs).await? {
                LeaseAttempt::Missing => return Ok(RefreshOutcome::Missing),
                LeaseAttempt::Held { generation } => {
                    if first_seen.is_some_and(|g| generation > g) {
                        return self.settled_by_another(tenant, id).await;
                    }
                    first_seen.get_or_insert(generation);
                    if std::time::Instant::now() >= deadline {
                        return Ok(RefreshOutcome::Busy);
                    }
                    tokio::time::sleep(POLL).await;
                }
                LeaseAttempt::Acquired(lease) => {
                    let seen = *first_seen.get_or_insert(lease.generation);
                    let decision = refresh_decision(&lease.connection, lease.generation, seen, lease.failed_at, now);
                    let refreshable = match decision {
                        RefreshDecision::Refresh => self.oauth2_of(&lease.connection),
                        _ => None,
                    };
                    let Some(provider) = refreshable else {
                        self.store.release_refresh_lease(tenant, id).await?;
                        return Ok(match decision {
                            RefreshDecision::AlreadyDone => RefreshOutcome::Settled {
                                connection: lease.connection,
                                by_this_caller: false,
                                previous: None,
                            },
                            RefreshDecision::CoolingDown { retry_after } => {
                                RefreshOutcome::RetryLater { retry_after, connection: Some(lease.connection) }
                            }
                            RefreshDecision::CannotRefresh | RefreshDecision::Refresh => {
                                RefreshOutcome::CannotRefresh(lease.connection)
                            }
                        });
                    };
                    return self.refresh_held(tenant, lease.connection, &lease.sealed, provider).await;
                }
            }
        }
    }

    fn oauth2_of(&self, c: &Connection) -> Option<&crate::catalog::OAuth2> {
        match &self.catalog.get(&c.provider_id)?.auth {
            AuthKind::OAuth2(o) => Some(o),
            _ => None,
        }
    }

    async fn settled_by_another(&self, tenant: &TenantId, id: &ConnectionId) -> Result<RefreshOutcome, StoreError> {
        Ok(match self.store.connection(tenant, id).await? {
            Some(connection) => RefreshOutcome::Settled { connection, by_this_caller: false, previous: None },
            None => RefreshOutcome::Missing,
        })
    }

    /// The lease is ours: call the provider and store the outcome (which releases the lease).
    async fn refresh_held(
        &self,
        tenant: &TenantId,
        mut c: Connection,
        sealed: &[u8],
        o: &crate::catalog::OAuth2,
    ) -> Result<RefreshOutcome, StoreError> {
        let previous = c.status;
        let credential = match self.vault.open(tenant, &c.id, sealed) {
            Ok(cred) => cred,
            Err(e) => {
                tracing::error!(connection = %c.id, error = %e, "a stored credential does not open");
                c.status = ConnectionStatus::Error;
                c.last_error = Some("the stored credential could not be read; reconnect".into());
                c.updated_at = self.clock.now();
                self.store.finish_refresh(tenant, &c, None, None).await?;
                return Ok(RefreshOutcome::Settled { connection: c, by_this_caller: true, previous: Some(previous) });
            }
        };
        if !matches!(credential, Credential::OAuth { refresh_token: Some(_), .. }) {
            self.store.release_refresh_lease(tenant, &c.id).await?;
            return Ok(RefreshOutcome::CannotRefresh(c));
        }
        let result = self.upstream.refresh(o, &credential).await;
        drop(credential);
        let now = self.clock.now();
        c.updated_at = now;
        match result {
            Ok(tokens) => {
                let sealed = match self.vault.seal(tenant, &c.id, &tokens.credential) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(connection = %c.id, error = %e, "sealing a refreshed credential failed");
                        self.store.release_refresh_lease(tenant, &c.id).await?;
                        return Ok(RefreshOutcome::RetryLater { retry_after: 1, connection: None });
                    }
                };
                c.status = ConnectionStatus::Active;
                c.last_error = None;
                c.expires_at = tokens.expires_in.map(|s| now.saturating_add(s));
                if let Some(scopes) = tokens.scopes {
                    c.scopes = scopes;
                }
                self.store.finish_refresh(tenant, &c, Some(&sealed), None).await?;
                let changed = (previous != c.status).then_some(previous);
                Ok(RefreshOutcome::Settled { connection: c, by_this_caller: true, previous: changed })
            }
            Err(UpstreamError::Refused { error, .. }) if error == "invalid_grant" => {
                c.status = ConnectionStatus::Expired;
                c.last_error = Some(
                    "the provider no longer accepts this connection's refresh token (invalid_grant): reconnect".into(),
                );
                self.store.finish_refresh(tenant, &c, None, None).await?;
                Ok(RefreshOutcome::Settled { connection: c, by_this_caller: true, previous: Some(previous) })
            }
            Err(UpstreamError::Refused { error, .. }) => {
                c.status = ConnectionStatus::Error;
                c.last_error = Some(format!("the provider refused the refresh ({error})"));
                self.store.finish_refresh(tenant, &c, None, Some(now)).await?;
                Ok(RefreshOutcome::Settled { connection: c, by_this_caller: true, previous: Some(previous) })
            }
            Err(e) => {
                tracing::warn!(connection = %c.id, provider = %c.provider_id, error = %e, "refresh failed");
                c.last_error = Some("the provider could not be reached to refresh; retrying after a pause".into());
                self.store.finish_refresh(tenant, &c, None, Some(now)).await?;
                Ok(RefreshOutcome::RetryLater {
                    retry_after: bk_domain::connection::REFRESH_COOLDOWN_SECS,
                    connection: Some(c),
                })
            }
        }
    }
}
