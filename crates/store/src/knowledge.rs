//! Knowledge bases and documents, and their full-text search: FTS5 with `bm25()` and `snippet()` on
//! SQLite, a generated `tsvector` with a GIN index, `ts_rank` and `ts_headline` on PostgreSQL. Every
//! query names the account; quotas are counted inside the write that they guard (the account's or
//! the base's row locked on PostgreSQL; SQLite's writes are serial).

use async_trait::async_trait;
use bk_domain::ids::AccountId;
use bk_domain::knowledge::{
    BaseChange, BaseCreation, BaseDeletion, Document, DocumentAddition, DocumentSummary, KnowledgeBase, SearchHit,
    SourceType, name_key,
};
use bk_domain::ports::{BaseFilter, KnowledgeStore, Result, StoreError};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::pool::Backend;
use crate::rows::{Db, is_unique_violation};

const BASE_COLUMNS: &str = "b.id, b.account_id, b.name, b.description, b.is_default, b.created_at, b.updated_at, \
     (SELECT COUNT(*) FROM knowledge_documents d WHERE d.knowledge_base_id = b.id) AS document_count";
const SUMMARY_COLUMNS: &str = "id, knowledge_base_id, title, source_type, url, size_bytes, created_at";

fn base_from(r: &AnyRow) -> Result<KnowledgeBase> {
    Ok(KnowledgeBase {
        id: r.try_get("id").db()?,
        account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
        name: r.try_get("name").db()?,
        description: r.try_get("description").db()?,
        is_default: r.try_get::<i64, _>("is_default").db()? != 0,
        document_count: u64::try_from(r.try_get::<i64, _>("document_count").db()?).unwrap_or(0),
        created_at: r.try_get("created_at").db()?,
        updated_at: r.try_get("updated_at").db()?,
    })
}

fn source_of(r: &AnyRow) -> Result<SourceType> {
    let s: String = r.try_get("source_type").db()?;
    SourceType::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("unknown document source type {s:?}")))
}

fn summary_from(r: &AnyRow) -> Result<DocumentSummary> {
    Ok(DocumentSummary {
        id: r.try_get("id").db()?,
        knowledge_base_id: r.try_get("knowledge_base_id").db()?,
        title: r.try_get("title").db()?,
        source_type: source_of(r)?,
        url: r.try_get("url").db()?,
        size: u64::try_from(r.try_get::<i64, _>("size_bytes").db()?).unwrap_or(0),
        created_at: r.try_get("created_at").db()?,
    })
}

/// `$first, $first+1, …` for `n` binds.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// ` AND {col} IN (…)` for a filter (binds from `$first`); a filter naming nothing matches nothing.
fn filter_clause(col: &str, only: BaseFilter<'_>, first: usize) -> String {
    match only {
        None => String::new(),
        Some([]) => " AND 1 = 0".into(),
        Some(ids) => format!(" AND {col} IN ({})", placeholders(first, ids.len())),
    }
}

impl SqlStore {
    /// Locks the account's row for the rest of the transaction (PostgreSQL; SQLite's write
    /// transactions are serial already), so a count and the insert it guards are one step.
    async fn lock_account(&self, tx: &mut sqlx::Transaction<'static, sqlx::Any>, account: &AccountId) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE")
                .bind(account.as_str().to_owned())
                .fetch_optional(&mut **tx)
                .await
                .db()?;
        }
        Ok(())
    }

    async fn base_in(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        account: &AccountId,
        id: &str,
    ) -> Result<Option<KnowledgeBase>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BASE_COLUMNS} FROM knowledge_bases b WHERE b.account_id = $1 AND b.id = $2"
        )))
        .bind(account.as_str().to_owned())
        .bind(id.to_owned())
        .fetch_optional(&mut **tx)
        .await
        .db()?;
        row.as_ref().map(base_from).transpose()
    }
}

#[async_trait]
impl KnowledgeStore for SqlStore {
    async fn knowledge_bases(&self, account: &AccountId, only: BaseFilter<'_>) -> Result<Vec<KnowledgeBase>> {
        let sql = format!(
            "SELECT {BASE_COLUMNS} FROM knowledge_bases b WHERE b.account_id = $1{} \
             ORDER BY b.is_default DESC, b.name_key, b.id",
            filter_clause("b.id", only, 2)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account.as_str().to_owned());
        for id in only.unwrap_or_default() {
            q = q.bind(id.clone());
        }
        q.fetch_all(&self.pool).await.db()?.iter().map(base_from).collect()
    }

    async fn knowledge_base(&self, account: &AccountId, id: &str) -> Result<Option<KnowledgeBase>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BASE_COLUMNS} FROM knowledge_bases b WHERE b.account_id = $1 AND b.id = $2"
        )))
        .bind(account.as_str().to_owned())
        .bind(id.to_owned())
        .fetch_optional(&self.pool)
        .await
        .db()?;
        row.as_ref().map(base_from).transpose()
    }

    async fn knowledge_base_named(&self, account: &AccountId, name: &str) -> Result<Option<KnowledgeBase>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BASE_COLUMNS} FROM knowledge_bases b WHERE b.account_id = $1 AND b.name_key = $2"
        )))
        .bind(account.as_str().to_owned())
        .bind(name_key(name))
        .fetch_optional(&self.pool)
        .await
        .db()?;
        row.as_ref().map(base_from).transpose()
    }

    async fn default_knowledge_base(&self, account: &AccountId, fresh: &KnowledgeBase) -> Result<KnowledgeBase> {
        if &fresh.account_id != account {
            return Err(StoreError::Corrupt("a knowledge base must belong to the tenant storing it".into()));
        }
        let find = format!("SELECT {BASE_COLUMNS} FROM knowledge_bases b WHERE b.account_id = $1 AND b.is_default = 1");
        if let Some(r) = sqlx::query(sqlx::AssertSqlSafe(find.clone()))
            .bind(account.as_str().to_owned())
            .fetch_optional(&self.pool)
            .await
            .db()?
        {
            return base_from(&r);
        }
        let mut tx = self.begin_write().await?;
        self.lock_account(&mut tx, account).await?;
        // Looked for again under the lock: a concurrent first need may have made it.
        if let Some(r) = sqlx::query(sqlx::AssertSqlSafe(find.clone()))
            .bind(account.as_str().to_owned())
            .fetch_optional(&mut *tx)
            .await
            .db()?
        {
            let b = base_from(&r)?;
            tx.commit().await.db()?;
            return Ok(b);
        }
        // A base already named like the default becomes it; otherwise the default is created.
        let adopted = sqlx::query(
            "UPDATE knowledge_bases SET is_default = 1, updated_at = $3 WHERE account_id = $1 AND name_key = $2",
        )
        .bind(account.as_str().to_owned())
        .bind(name_key(&fresh.name))
        .bind(fresh.created_at)
        .execute(&mut *tx)
        .await
        .db()?
        .rows_affected();
        if adopted == 0 {
            sqlx::query(
                "INSERT INTO knowledge_bases (id, account_id, name, name_key, description, is_default, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
            )
            .bind(fresh.id.clone())
            .bind(account.as_str().to_owned())
            .bind(fresh.name.clone())
            .bind(name_key(&fresh.name))
            .bind(fresh.description.clone())
            .bind(fresh.created_at)
            .execute(&mut *tx)
            .await
            .db()?;
        }
        let r =
            sqlx::query(sqlx::AssertSqlSafe(find)).bind(account.as_str().to_owned()).fetch_one(&mut *tx).await.db()?;
        let b = base_from(&r)?;
        tx.commit().await.db()?;
        Ok(b)
    }

    async fn create_knowledge_base(&self, base: &KnowledgeBase, max_bases: u32) -> Result<BaseCreation> {
        let account = base.account_id.as_str().to_owned();
        let mut tx = self.begin_write().await?;
        self.lock_account(&mut tx, &base.account_id).await?;
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM knowledge_bases WHERE account_id = $1")
            .bind(account.clone())
            .fetch_one(&mut *tx)
            .await
            .db()?;
        if held >= i64::from(max_bases) {
            tx.rollback().await.db()?;
            return Ok(BaseCreation::QuotaReached);
        }
        let inserted = sqlx::query(
            "INSERT INTO knowledge_bases (id, account_id, name, name_key, description, is_default, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(base.id.clone())
        .bind(account)
        .bind(base.name.clone())
        .bind(name_key(&base.name))
        .bind(base.description.clone())
        .bind(i64::from(base.is_default))
        .bind(base.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                tx.commit().await.db()?;
                Ok(BaseCreation::Created)
            }
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await.db()?;
                Ok(BaseCreation::NameTaken)
            }
            Err(e) => Err(crate::rows::db_error(e)),
        }
    }

    async fn update_knowledge_base(
        &self,
        account: &AccountId,
        id: &str,
        name: Option<&str>,
        description: Option<&str>,
        now: i64,
    ) -> Result<BaseChange> {
        let mut tx = self.begin_write().await?;
        let Some(current) = Self::base_in(&mut tx, account, id).await? else {
            tx.rollback().await.db()?;
            return Ok(BaseChange::NotFound);
        };
        let name = name.unwrap_or(&current.name).to_owned();
        let description = description.unwrap_or(&current.description).to_owned();
        let updated = sqlx::query(
            "UPDATE knowledge_bases SET name = $3, name_key = $4, description = $5, updated_at = $6 \
             WHERE account_id = $1 AND id = $2",
        )
        .bind(account.as_str().to_owned())
        .bind(id.to_owned())
        .bind(name.clone())
        .bind(name_key(&name))
        .bind(description)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match updated {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await.db()?;
                return Ok(BaseChange::NameTaken);
            }
            Err(e) => return Err(crate::rows::db_error(e)),
        }
        let b = Self::base_in(&mut tx, account, id).await?;
        tx.commit().await.db()?;
        Ok(b.map_or(BaseChange::NotFound, BaseChange::Changed))
    }

    async fn set_default_knowledge_base(
        &self,
        account: &AccountId,
        id: &str,
        now: i64,
    ) -> Result<Option<KnowledgeBase>> {
        let mut tx = self.begin_write().await?;
        self.lock_account(&mut tx, account).await?;
        if Self::base_in(&mut tx, account, id).await?.is_none() {
            tx.rollback().await.db()?;
            return Ok(None);
        }
        // The old default first, so the one-default index never sees two.
        sqlx::query(
            "UPDATE knowledge_bases SET is_default = 0, updated_at = $3 WHERE account_id = $1 AND is_default = 1 \
             AND id <> $2",
        )
        .bind(account.as_str().to_owned())
        .bind(id.to_owned())
        .bind(now)
        .execute(&mut *tx)
        .await
        .db()?;
        sqlx::query(
            "UPDATE knowledge_bases SET is_default = 1, updated_at = $3 WHERE account_id = $1 AND id = $2 \
             AND is_default = 0",
        )
        .bind(account.as_str().to_owned())
        .bind(id.to_owned())
        .bind(now)
        .execute(&mut *tx)
        .await
        .db()?;
        let b = Self::base_in(&mut tx, account, id).await?;
        tx.commit().await.db()?;
        Ok(b)
    }

    async fn delete_knowledge_base(&self, account: &AccountId, id: &str) -> Result<BaseDeletion> {
        let mut tx = self.begin_write().await?;
        self.lock_account(&mut tx, account).await?;
        let Some(b) = Self::base_in(&mut tx, account, id).await? else {
            tx.rollback().await.db()?;
            return Ok(BaseDeletion::NotFound);
        };
        if b.is_default {
            tx.rollback().await.db()?;
            return Ok(BaseDeletion::IsDefault);
        }
        for sql in [
            "DELETE FROM knowledge_documents WHERE account_id = $1 AND knowledge_base_id = $2",
            "DELETE FROM knowledge_bases WHERE account_id = $1 AND id = $2 AND is_default = 0",
        ] {
            sqlx::query(sql).bind(account.as_str().to_owned()).bind(id.to_owned()).execute(&mut *tx).await.db()?;
        }
        tx.commit().await.db()?;
        Ok(BaseDeletion::Deleted)
    }

    async fn add_document(&self, account: &AccountId, doc: &Document, max_documents: u32) -> Result<DocumentAddition> {
        let d = &doc.summary;
        let mut tx = self.begin_write().await?;
        let lock = match self.backend {
            Backend::Sqlite => "SELECT id FROM knowledge_bases WHERE account_id = $1 AND id = $2",
            Backend::Postgres => "SELECT id FROM knowledge_bases WHERE account_id = $1 AND id = $2 FOR NO KEY UPDATE",
        };
        let found = sqlx::query(lock)
            .bind(account.as_str().to_owned())
            .bind(d.knowledge_base_id.clone())
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        if found.is_none() {
            tx.rollback().await.db()?;
            return Ok(DocumentAddition::BaseNotFound);
        }
        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM knowledge_documents WHERE account_id = $1 AND knowledge_base_id = $2",
        )
        .bind(account.as_str().to_owned())
        .bind(d.knowledge_base_id.clone())
        .fetch_one(&mut *tx)
        .await
        .db()?;
        if held >= i64::from(max_documents) {
            tx.rollback().await.db()?;
            return Ok(DocumentAddition::QuotaReached);
        }
        sqlx::query(
            "INSERT INTO knowledge_documents (id, account_id, knowledge_base_id, title, source_type, url, content, \
             size_bytes, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(d.id.clone())
        .bind(account.as_str().to_owned())
        .bind(d.knowledge_base_id.clone())
        .bind(d.title.clone())
        .bind(d.source_type.as_str())
        .bind(d.url.clone())
        .bind(doc.content.clone())
        .bind(i64::try_from(doc.content.len()).unwrap_or(i64::MAX))
        .bind(d.created_at)
        .execute(&mut *tx)
        .await
        .db()?;
        sqlx::query("UPDATE knowledge_bases SET updated_at = $3 WHERE account_id = $1 AND id = $2")
            .bind(account.as_str().to_owned())
            .bind(d.knowledge_base_id.clone())
            .bind(d.created_at)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(DocumentAddition::Added)
    }

    async fn documents(
        &self,
        account: &AccountId,
        base: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Option<Vec<DocumentSummary>>> {
        if self.knowledge_base(account, base).await?.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM knowledge_documents WHERE account_id = $1 AND knowledge_base_id = $2 \
             ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        )))
        .bind(account.as_str().to_owned())
        .bind(base.to_owned())
        .bind(i64::from(limit))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(summary_from).collect::<Result<Vec<_>>>().map(Some)
    }

    async fn document(&self, account: &AccountId, base: &str, id: &str) -> Result<Option<Document>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS}, content FROM knowledge_documents WHERE account_id = $1 \
             AND knowledge_base_id = $2 AND id = $3"
        )))
        .bind(account.as_str().to_owned())
        .bind(base.to_owned())
        .bind(id.to_owned())
        .fetch_optional(&self.pool)
        .await
        .db()?;
        row.map(|r| Ok(Document { summary: summary_from(&r)?, content: r.try_get("content").db()? })).transpose()
    }

    async fn delete_document(&self, account: &AccountId, base: &str, id: &str) -> Result<bool> {
        let n =
            sqlx::query("DELETE FROM knowledge_documents WHERE account_id = $1 AND knowledge_base_id = $2 AND id = $3")
                .bind(account.as_str().to_owned())
                .bind(base.to_owned())
                .bind(id.to_owned())
                .execute(&self.writer)
                .await
                .db()?
                .rows_affected();
        Ok(n > 0)
    }

    async fn search_documents(
        &self,
        account: &AccountId,
        only: BaseFilter<'_>,
        terms: &[String],
        limit: u32,
    ) -> Result<Vec<SearchHit>> {
        // Only letters and digits reach here (`knowledge::query_terms`), and each is bound, never
        // spliced: on SQLite every term is an FTS5 string ("…"), so no input is query syntax.
        let terms: Vec<&String> =
            terms.iter().filter(|t| !t.is_empty() && t.chars().all(char::is_alphanumeric)).collect();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let (sql, query) = match self.backend {
            // CROSS JOIN keeps the full-text index as the outer loop: left to itself the planner may
            // walk the account's documents and run the MATCH once per row (2000 documents: 94 ms a
            // search instead of 3 ms).
            Backend::Sqlite => (
                format!(
                    "SELECT d.id, d.knowledge_base_id, b.name AS base_name, d.title, d.source_type, d.url, \
                     -bm25(knowledge_documents_fts, 2.0, 1.0) AS score, \
                     snippet(knowledge_documents_fts, 1, '**', '**', '…', 24) AS snippet \
                     FROM knowledge_documents_fts f \
                     CROSS JOIN knowledge_documents d ON d.seq = f.rowid \
                     CROSS JOIN knowledge_bases b ON b.id = d.knowledge_base_id \
                     WHERE knowledge_documents_fts MATCH $1 AND d.account_id = $2{} \
                     ORDER BY bm25(knowledge_documents_fts, 2.0, 1.0), d.id LIMIT $3",
                    filter_clause("d.knowledge_base_id", only, 4)
                ),
                terms.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(" OR "),
            ),
            Backend::Postgres => (
                // Ranked over the index first; the headline (costly) only for the page returned.
                format!(
                    "WITH q AS (SELECT websearch_to_tsquery('english', $1) AS query), \
                     hits AS (SELECT d.id, d.knowledge_base_id, d.title, d.source_type, d.url, d.content, \
                       ts_rank(d.search, q.query)::float8 AS score \
                       FROM knowledge_documents d, q \
                       WHERE d.search @@ q.query AND d.account_id = $2{} \
                       ORDER BY score DESC, d.id LIMIT $3) \
                     SELECT h.id, h.knowledge_base_id, b.name AS base_name, h.title, h.source_type, h.url, h.score, \
                       ts_headline('english', h.content, q.query, \
                         'StartSel=**, StopSel=**, MaxWords=30, MinWords=10, MaxFragments=2, FragmentDelimiter=\" … \"') \
                         AS snippet \
                     FROM hits h JOIN knowledge_bases b ON b.id = h.knowledge_base_id, q \
                     ORDER BY h.score DESC, h.id",
                    filter_clause("d.knowledge_base_id", only, 4)
                ),
                // websearch syntax with `or` between the words: any of them matches.
                terms.iter().filter(|t| t.as_str() != "or").map(|t| t.as_str()).collect::<Vec<_>>().join(" or "),
            ),
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(query)
            .bind(account.as_str().to_owned())
            .bind(i64::from(limit.max(1)));
        for id in only.unwrap_or_default() {
            q = q.bind(id.clone());
        }
        let rows = q.fetch_all(&self.pool).await.db()?;
        rows.iter()
            .map(|r| {
                Ok(SearchHit {
                    document_id: r.try_get("id").db()?,
                    knowledge_base_id: r.try_get("knowledge_base_id").db()?,
                    knowledge_base_name: r.try_get("base_name").db()?,
                    title: r.try_get("title").db()?,
                    source_type: source_of(r)?,
                    url: r.try_get("url").db()?,
                    score: r.try_get("score").db()?,
                    snippet: r.try_get("snippet").db()?,
                })
            })
            .collect()
    }
}
