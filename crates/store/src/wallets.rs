//! Wallet identities (Sign-In with Ethereum) and the nonces of their sign-in messages. A nonce is
//! spent by deleting it, in the same write transaction as what its sign-in does, so that of two
//! uses one wins and a refused action leaves the nonce unspent.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::ids::AccountId;
use bk_domain::ports::wallets::WalletStore;
use bk_domain::ports::{Result, StoreError};
use bk_domain::siwe::Address;
use bk_domain::wallet::{StoredSiweNonce, WalletAction, WalletIdentity, WalletRedemption, WalletUnlink};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::clients::lock_account;
use crate::rows::{Db, db_error, is_unique_violation};

const COLUMNS: &str = "address, account_id, created_at, last_used_at";

type Tx = sqlx::Transaction<'static, sqlx::Any>;

#[async_trait]
impl WalletStore for SqlStore {
    async fn create_siwe_nonce(&self, n: &StoredSiweNonce) -> Result<()> {
        sqlx::query("INSERT INTO siwe_nonces (nonce_hash, created_at, expires_at) VALUES ($1, $2, $3)")
            .bind(n.nonce_hash.clone())
            .bind(n.created_at)
            .bind(n.expires_at)
            .execute(&self.writer)
            .await
            .db()?;
        Ok(())
    }

    async fn siwe_nonce(&self, nonce_hash: &[u8]) -> Result<Option<StoredSiweNonce>> {
        let row = sqlx::query("SELECT nonce_hash, created_at, expires_at FROM siwe_nonces WHERE nonce_hash = $1")
            .bind(nonce_hash.to_vec())
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.map(|r| {
            Ok(StoredSiweNonce {
                nonce_hash: r.try_get("nonce_hash").db()?,
                created_at: r.try_get("created_at").db()?,
                expires_at: r.try_get("expires_at").db()?,
            })
        })
        .transpose()
    }

    async fn redeem_siwe_nonce(
        &self,
        nonce_hash: &[u8],
        now: UnixTime,
        action: &WalletAction,
    ) -> Result<WalletRedemption> {
        let mut tx = self.begin_write().await?;
        // Deleted as it is spent: a concurrent use of the same nonce waits for this transaction
        // (the row's lock on PostgreSQL, the single writer on SQLite) and then finds nothing.
        let spent =
            sqlx::query("DELETE FROM siwe_nonces WHERE nonce_hash = $1 AND expires_at > $2 RETURNING created_at")
                .bind(nonce_hash.to_vec())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        if spent.is_none() {
            tx.rollback().await.db()?;
            return Ok(WalletRedemption::NonceSpent);
        }
        let outcome = match action {
            WalletAction::SignIn { account_id, address } => {
                let used = sqlx::query(
                    "UPDATE wallet_identities SET last_used_at = $1 WHERE address = $2 AND account_id = $3",
                )
                .bind(now)
                .bind(address.lower())
                .bind(account_id.as_str().to_owned())
                .execute(&mut *tx)
                .await
                .db()?;
                if used.rows_affected() == 1 { WalletRedemption::Done } else { WalletRedemption::IdentityGone }
            }
            WalletAction::Link { account_id, address } => {
                lock_account(&mut tx, self.backend, account_id).await?;
                let owner: Option<String> =
                    sqlx::query_scalar("SELECT account_id FROM wallet_identities WHERE address = $1")
                        .bind(address.lower())
                        .fetch_optional(&mut *tx)
                        .await
                        .db()?;
                match owner {
                    Some(o) if o == account_id.as_str() => {
                        sqlx::query("UPDATE wallet_identities SET last_used_at = $1 WHERE address = $2")
                            .bind(now)
                            .bind(address.lower())
                            .execute(&mut *tx)
                            .await
                            .db()?;
                        WalletRedemption::AlreadyLinked
                    }
                    Some(_) => WalletRedemption::AddressTaken,
                    None => insert_identity(&mut tx, address, account_id, now).await?,
                }
            }
            WalletAction::SignUp { account, address } => {
                let created = sqlx::query(
                    "INSERT INTO accounts (id, email, password_hash, created_at, email_verified_at, disabled_at, deleted_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(account.id.as_str().to_owned())
                .bind(account.email.clone())
                .bind(account.password_hash.clone())
                .bind(account.created_at)
                .bind(account.email_verified_at)
                .bind(account.disabled_at)
                .bind(account.deleted_at)
                .execute(&mut *tx)
                .await;
                match created {
                    Ok(_) => insert_identity(&mut tx, address, &account.id, now).await?,
                    Err(e) if is_unique_violation(&e) => {
                        return Err(StoreError::Conflict("an account with this email"));
                    }
                    Err(e) => return Err(db_error(e)),
                }
            }
        };
        match outcome {
            WalletRedemption::Done | WalletRedemption::AlreadyLinked => tx.commit().await.db()?,
            _ => tx.rollback().await.db()?,
        }
        Ok(outcome)
    }

    async fn wallet(&self, address: &Address) -> Result<Option<WalletIdentity>> {
        let sql = format!("SELECT {COLUMNS} FROM wallet_identities WHERE address = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(address.lower()).fetch_optional(&self.pool).await.db()?;
        row.as_ref().map(identity_from_row).transpose()
    }

    async fn wallets_of(&self, account: &AccountId) -> Result<Vec<WalletIdentity>> {
        let sql = format!("SELECT {COLUMNS} FROM wallet_identities WHERE account_id = $1 ORDER BY created_at, address");
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account.as_str().to_owned()).fetch_all(&self.pool).await.db()?;
        rows.iter().map(identity_from_row).collect()
    }

    async fn unlink_wallet(&self, account: &AccountId, address: &Address) -> Result<WalletUnlink> {
        let mut tx = self.begin_write().await?;
        // Two unlinks of one account's last two addresses at once: the second sees the first's.
        lock_account(&mut tx, self.backend, account).await?;
        let id = account.as_str().to_owned();
        let held: Option<String> =
            sqlx::query_scalar("SELECT address FROM wallet_identities WHERE address = $1 AND account_id = $2")
                .bind(address.lower())
                .bind(id.clone())
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        if held.is_none() {
            tx.rollback().await.db()?;
            return Ok(WalletUnlink::NotFound);
        }
        let others: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM wallet_identities WHERE account_id = $1 AND address <> $2")
                .bind(id.clone())
                .bind(address.lower())
                .fetch_one(&mut *tx)
                .await
                .db()?;
        let password: Option<String> = sqlx::query_scalar("SELECT password_hash FROM accounts WHERE id = $1")
            .bind(id.clone())
            .fetch_optional(&mut *tx)
            .await
            .db()?
            .flatten();
        let passkeys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM passkeys WHERE account_id = $1")
            .bind(id.clone())
            .fetch_one(&mut *tx)
            .await
            .db()?;
        // An identity provider's sign-in is a way in too.
        let idp_identities: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idp_identities WHERE account_id = $1")
            .bind(account.as_str().to_owned())
            .fetch_one(&mut *tx)
            .await
            .db()?;
        if others == 0 && password.is_none() && passkeys == 0 && idp_identities == 0 {
            tx.rollback().await.db()?;
            return Ok(WalletUnlink::LastSignInMethod);
        }
        sqlx::query("DELETE FROM wallet_identities WHERE address = $1 AND account_id = $2")
            .bind(address.lower())
            .bind(id)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(WalletUnlink::Unlinked)
    }
}

/// Inserts the identity; `AddressTaken` if the address is another account's (a concurrent link or
/// sign-up of the same address included).
async fn insert_identity(
    tx: &mut Tx,
    address: &Address,
    account: &AccountId,
    now: UnixTime,
) -> Result<WalletRedemption> {
    let inserted = sqlx::query(
        "INSERT INTO wallet_identities (address, account_id, created_at, last_used_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(address.lower())
    .bind(account.as_str().to_owned())
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await;
    match inserted {
        Ok(_) => Ok(WalletRedemption::Done),
        Err(e) if is_unique_violation(&e) => Ok(WalletRedemption::AddressTaken),
        Err(e) => Err(db_error(e)),
    }
}

fn identity_from_row(r: &AnyRow) -> Result<WalletIdentity> {
    let text: String = r.try_get("address").db()?;
    Ok(WalletIdentity {
        address: Address::parse_any_case(&text)
            .ok_or_else(|| StoreError::Corrupt(format!("bad wallet address {text:?}")))?,
        account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
        created_at: r.try_get("created_at").db()?,
        last_used_at: r.try_get("last_used_at").db()?,
    })
}
