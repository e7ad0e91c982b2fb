//! Row mapping shared by the aggregates, and the one place a driver error becomes a store error
//! (the domain's `StoreError` carries no sqlx type).

use bk_domain::grant::{Grant, GrantKind};
use bk_domain::ids::{AccountId, ClientId, SessionId};
use bk_domain::ports::{Result, StoreError};
use bk_domain::restrictions::Restrictions;
use bk_domain::scope::ScopeSet;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A driver error as a store error.
pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    StoreError::Database(Box::new(e))
}

/// `.db()?` turns a driver result into a store result.
pub(crate) trait Db<T> {
    fn db(self) -> Result<T>;
}

impl<T> Db<T> for std::result::Result<T, sqlx::Error> {
    fn db(self) -> Result<T> {
        self.map_err(db_error)
    }
}

pub(crate) fn scopes_of(row: &AnyRow, col: &str) -> Result<ScopeSet> {
    Ok(ScopeSet::parse_lenient(&row.try_get::<String, _>(col).db()?))
}

pub(crate) fn grant_from_row(row: &AnyRow) -> Result<Grant> {
    Ok(Grant {
        id: SessionId::from_string(row.try_get::<String, _>("s_id").db()?),
        account_id: AccountId::from_string(row.try_get::<String, _>("s_account_id").db()?),
        client_id: ClientId::from_string(row.try_get::<String, _>("s_client_id").db()?),
        scopes: scopes_of(row, "s_scopes")?,
        restrictions: restrictions_of(row, "s_restrictions")?,
        kind: GrantKind::parse(&row.try_get::<String, _>("s_kind").db()?)
            .ok_or_else(|| StoreError::Corrupt("bad session kind".into()))?,
        resource: row.try_get("s_resource").db()?,
        auth_time: row.try_get("s_auth_time").db()?,
        created_at: row.try_get("s_created_at").db()?,
        revoked_at: row.try_get("s_revoked_at").db()?,
        dpop_jkt: row.try_get("s_dpop_jkt").db()?,
    })
}

pub(crate) const GRANT_COLUMNS: &str = "s.id AS s_id, s.account_id AS s_account_id, s.client_id AS s_client_id, \
     s.scopes AS s_scopes, s.resource AS s_resource, s.auth_time AS s_auth_time, \
     s.created_at AS s_created_at, s.revoked_at AS s_revoked_at, s.restrictions AS s_restrictions, s.kind AS s_kind, \
     s.dpop_jkt AS s_dpop_jkt";

pub(crate) fn restrictions_of(row: &AnyRow, col: &str) -> Result<Restrictions> {
    Restrictions::from_json(&row.try_get::<String, _>(col).db()?)
        .ok_or_else(|| StoreError::Corrupt(format!("bad {col}")))
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

pub(crate) fn json_col<T: serde::de::DeserializeOwned>(r: &AnyRow, col: &str) -> Result<T> {
    serde_json::from_str(&r.try_get::<String, _>(col).db()?)
        .map_err(|_| StoreError::Corrupt(format!("bad JSON in {col}")))
}

pub(crate) fn opt_json_col<T: serde::de::DeserializeOwned>(r: &AnyRow, col: &str) -> Result<Option<T>> {
    match r.try_get::<Option<String>, _>(col).db()? {
        Some(s) => serde_json::from_str(&s).map(Some).map_err(|_| StoreError::Corrupt(format!("bad JSON in {col}"))),
        None => Ok(None),
    }
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}
