//! Knowledge bases and documents. Every method takes the tenant first; a base or document of
//! another account is `None` / `NotFound`, exactly like one that does not exist.

use async_trait::async_trait;

use super::Result;
use crate::ids::AccountId;
use crate::knowledge::{
    BaseChange, BaseCreation, BaseDeletion, Document, DocumentAddition, DocumentSummary, KnowledgeBase, SearchHit,
};

/// Which of an account's bases a read covers: every one, or those named (a grant's
/// `allowedKnowledgeBaseIds`; unknown ids match nothing).
pub type BaseFilter<'a> = Option<&'a [String]>;

#[async_trait]
pub trait KnowledgeStore: Send + Sync {
    /// The account's bases (within `only`), the default first, then by name.
    async fn knowledge_bases(&self, account: &AccountId, only: BaseFilter<'_>) -> Result<Vec<KnowledgeBase>>;
    async fn knowledge_base(&self, account: &AccountId, id: &str) -> Result<Option<KnowledgeBase>>;
    /// By name, compared without case.
    async fn knowledge_base_named(&self, account: &AccountId, name: &str) -> Result<Option<KnowledgeBase>>;
    /// The account's default base; created (as `fresh`) when it has none — or, when a base already
    /// has that name, that base becomes the default. Of concurrent first needs, one creates it.
    async fn default_knowledge_base(&self, account: &AccountId, fresh: &KnowledgeBase) -> Result<KnowledgeBase>;
    /// Creates `base` unless its name is taken or the account holds `max_bases` already.
    async fn create_knowledge_base(&self, base: &KnowledgeBase, max_bases: u32) -> Result<BaseCreation>;
    /// Renames and/or re-describes a base.
    async fn update_knowledge_base(
        &self,
        account: &AccountId,
        id: &str,
        name: Option<&str>,
        description: Option<&str>,
        now: i64,
    ) -> Result<BaseChange>;
    /// Makes `id` the account's one default base; `None` when there is no such base.
    async fn set_default_knowledge_base(
        &self,
        account: &AccountId,
        id: &str,
        now: i64,
    ) -> Result<Option<KnowledgeBase>>;
    /// Deletes a base that is not the default, and its documents.
    async fn delete_knowledge_base(&self, account: &AccountId, id: &str) -> Result<BaseDeletion>;
    /// Adds a document to its base unless the base holds `max_documents` already.
    async fn add_document(&self, account: &AccountId, doc: &Document, max_documents: u32) -> Result<DocumentAddition>;
    /// A base's documents, newest first, `limit` after skipping `offset`; `None` when no such base.
    async fn documents(
        &self,
        account: &AccountId,
        base: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Option<Vec<DocumentSummary>>>;
    async fn document(&self, account: &AccountId, base: &str, id: &str) -> Result<Option<Document>>;
    /// Whether it existed (and is now gone).
    async fn delete_document(&self, account: &AccountId, base: &str, id: &str) -> Result<bool>;
    /// Full-text search of the account's documents (within `only`), best first. `terms` are plain
    /// words (`knowledge::query_terms`); a document matches when it holds any of them (stemmed), and
    /// ranks higher the more (and the rarer) of them it holds.
    async fn search_documents(
        &self,
        account: &AccountId,
        only: BaseFilter<'_>,
        terms: &[String],
        limit: u32,
    ) -> Result<Vec<SearchHit>>;
}
