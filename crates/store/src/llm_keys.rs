//! Operators' upstream API keys of LLM models (`llm_api_keys`), sealed under the master key by the
//! caller; this adapter only stores the ciphertext.

use async_trait::async_trait;
use bk_domain::ports::{LlmApiKeyStore, Result};
use sqlx::Row;

use crate::SqlStore;
use crate::rows::Db;

#[async_trait]
impl LlmApiKeyStore for SqlStore {
    async fn llm_api_key(&self, model_id: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT sealed FROM llm_api_keys WHERE model_id = $1")
            .bind(model_id)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.map(|r| r.try_get::<Vec<u8>, _>("sealed").db()).transpose()
    }

    async fn put_llm_api_key(&self, model_id: &str, sealed: &[u8], now_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO llm_api_keys (model_id, sealed, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (model_id) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
        )
        .bind(model_id)
        .bind(sealed.to_vec())
        .bind(now_ms)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }

    async fn delete_llm_api_key(&self, model_id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM llm_api_keys WHERE model_id = $1")
            .bind(model_id)
            .execute(&self.writer)
            .await
            .db()?;
        Ok(r.rows_affected() > 0)
    }
}
