//! Knowledge bases: the rules both faces share — the REST API (`bridgekeeper-api`, `/api/v1/knowledge/…`)
//! and the MCP tools (`tools.rs`: `add-to-knowledge-base`, `search-knowledge-base`). A caller is an
//! account and the knowledge bases its grant may reach (`allowedKnowledgeBaseIds`, `None` = all):
//! a base outside them is "not found", exactly like another account's, so ids do not leak.
//! Limits (bases per account, documents per base, bytes per document) are checked before anything
//! is stored. Documents named by URL are fetched request-forgery safe (`bk_outbound`: public
//! addresses only, every redirect checked again, bounded size and time) and reduced to text
//! (`extract.rs`). Search goes through a [`Retriever`]: full-text today, room for embeddings later.
#![forbid(unsafe_code)]

pub mod extract;
pub mod tools;

use std::sync::Arc;

use async_trait::async_trait;
use bk_domain::access::Clock;
use bk_domain::ids::AccountId;
use bk_domain::knowledge::{
    self, BaseChange, BaseCreation, BaseDeletion, DEFAULT_NAME, Document, DocumentAddition, DocumentSummary,
    KnowledgeBase, SearchHit, SourceType,
};
use bk_domain::ports::{KnowledgeStore, StoreError};
use bk_outbound::{FetchError, SafeFetcher};

pub use tools::KnowledgeTools;

/// The per-account limits (from configuration).
#[derive(Clone, Copy, Debug)]
pub struct KnowledgeLimits {
    pub max_bases_per_account: u32,
    pub max_documents_per_base: u32,
    /// Of a document's text (UTF-8), whether given or extracted from a fetched page.
    pub max_document_bytes: usize,
}

impl Default for KnowledgeLimits {
    fn default() -> Self {
        Self { max_bases_per_account: 20, max_documents_per_base: 1000, max_document_bytes: 256 * 1024 }
    }
}

/// Why a knowledge-base operation did not happen. Each says what the caller can act on; nothing
/// was changed.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    /// No such base or document for this caller (another account's, outside the grant, or none).
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("a knowledge base named {0:?} exists already")]
    NameTaken(String),
    #[error("the default knowledge base cannot be deleted; make another one the default first")]
    DefaultUndeletable,
    #[error("{0}")]
    Quota(String),
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
    /// What a token limited to some knowledge bases may not do (account-wide changes).
    #[error("{0}")]
    Restricted(&'static str),
    /// The URL could not be fetched or is not a text document.
    #[error("{0}")]
    Fetch(String),
    /// Too many URL documents fetched for this account just now; retry after that many seconds.
    #[error("too many documents fetched from URLs for this account; retry in {0} s")]
    TooMany(u64),
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
}

/// Who is asking: the account, and the bases its grant may reach (`None` = every one).
#[derive(Clone, Copy, Debug)]
pub struct Reach<'a> {
    pub account: &'a AccountId,
    pub allowed: Option<&'a [String]>,
}

impl Reach<'_> {
    fn may(&self, base_id: &str) -> bool {
        self.allowed.is_none_or(|ids| ids.iter().any(|i| i == base_id))
    }
}

/// Finds the documents that answer a query. The full-text retriever is the one implementation;
/// an embedding retriever would sit beside it behind this trait.
#[async_trait]
pub trait Retriever: Send + Sync {
    /// The best `limit` hits among the account's documents (within `only`), best first.
    async fn retrieve(
        &self,
        account: &AccountId,
        only: Option<&[String]>,
        query: &str,
        limit: u32,
    ) -> Result<Vec<SearchHit>, StoreError>;
}

/// Full-text retrieval through the store's index (FTS5 / `tsvector`), with the query reduced to
/// plain words first so that no input is search syntax.
pub struct FullText(pub Arc<dyn KnowledgeStore>);

#[async_trait]
impl Retriever for FullText {
    async fn retrieve(
        &self,
        account: &AccountId,
        only: Option<&[String]>,
        query: &str,
        limit: u32,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let terms = knowledge::query_terms(query);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        self.0.search_documents(account, only, &terms, limit).await
    }
}

/// How documents are fetched from URLs.
pub struct UrlFetch {
    pub fetcher: SafeFetcher,
    pub max_redirects: usize,
    /// Counts each account's fetches (shared through Redis when configured): the server must not
    /// become anyone's crawler.
    pub limiter: Arc<dyn bk_limits::Limiter>,
    /// Fetches an account may start per minute.
    pub per_minute: u32,
}

/// A document to add, as a caller gave it.
pub struct NewDocument {
    pub title: Option<String>,
    pub source: NewSource,
}

pub enum NewSource {
    Text(String),
    Url(String),
}

/// The knowledge-base service: one per process.
pub struct Knowledge {
    store: Arc<dyn KnowledgeStore>,
    retriever: Arc<dyn Retriever>,
    fetch: UrlFetch,
    clock: Arc<dyn Clock>,
    pub limits: KnowledgeLimits,
}

/// The alias of the default base in paths (`/api/v1/knowledge/bases/default`).
pub const DEFAULT_ALIAS: &str = "default";

impl Knowledge {
    pub fn new(
        store: Arc<dyn KnowledgeStore>,
        retriever: Arc<dyn Retriever>,
        fetch: UrlFetch,
        clock: Arc<dyn Clock>,
        limits: KnowledgeLimits,
    ) -> Self {
        Self { store, retriever, fetch, clock, limits }
    }

    /// The account's default base, created on first need.
    async fn default_base(&self, account: &AccountId) -> Result<KnowledgeBase, KnowledgeError> {
        let fresh = KnowledgeBase::new(account, DEFAULT_NAME, "", true, self.clock.now());
        Ok(self.store.default_knowledge_base(account, &fresh).await?)
    }

    /// The bases the caller may reach, the default first (created on first need).
    pub async fn bases(&self, reach: Reach<'_>) -> Result<Vec<KnowledgeBase>, KnowledgeError> {
        self.default_base(reach.account).await?;
        Ok(self.store.knowledge_bases(reach.account, reach.allowed).await?)
    }

    /// One base by id (or `default`), if the caller may reach it.
    pub async fn base(&self, reach: Reach<'_>, id: &str) -> Result<KnowledgeBase, KnowledgeError> {
        let found = if id == DEFAULT_ALIAS {
            Some(self.default_base(reach.account).await?)
        } else {
            self.store.knowledge_base(reach.account, id).await?
        };
        found.filter(|b| reach.may(&b.id)).ok_or(KnowledgeError::NotFound("knowledge base"))
    }

    /// One base by name (compared without case), if the caller may reach it.
    pub async fn base_named(&self, reach: Reach<'_>, name: &str) -> Result<KnowledgeBase, KnowledgeError> {
        // A base of that name first; `default` names the default base only when no base is called so
        // (the default may have been renamed, or another base made the default).
        let found = match self.store.knowledge_base_named(reach.account, name).await? {
            Some(b) => Some(b),
            None if knowledge::name_key(name) == DEFAULT_NAME => Some(self.default_base(reach.account).await?),
            None => None,
        };
        found.filter(|b| reach.may(&b.id)).ok_or(KnowledgeError::NotFound("knowledge base"))
    }

    /// The base a tool means: by name, or the default when none is named.
    pub async fn base_for_tool(&self, reach: Reach<'_>, name: Option<&str>) -> Result<KnowledgeBase, KnowledgeError> {
        match name {
            Some(n) => self.base_named(reach, n).await,
            None => self.base(reach, DEFAULT_ALIAS).await,
        }
    }

    pub async fn create_base(
        &self,
        reach: Reach<'_>,
        name: &str,
        description: &str,
    ) -> Result<KnowledgeBase, KnowledgeError> {
        if reach.allowed.is_some() {
            return Err(KnowledgeError::Restricted(
                "this token is limited to named knowledge bases and cannot create one (a new base would be outside \
                 its reach)",
            ));
        }
        knowledge::check_name(name).map_err(|message| KnowledgeError::Invalid { field: "name", message })?;
        knowledge::check_description(description)
            .map_err(|message| KnowledgeError::Invalid { field: "description", message })?;
        // The default exists before any other, so the first base a person makes is not it by accident.
        self.default_base(reach.account).await?;
        let base = KnowledgeBase::new(reach.account, name, description, false, self.clock.now());
        match self.store.create_knowledge_base(&base, self.limits.max_bases_per_account).await? {
            BaseCreation::Created => Ok(base),
            BaseCreation::NameTaken => Err(KnowledgeError::NameTaken(name.to_owned())),
            BaseCreation::QuotaReached => Err(KnowledgeError::Quota(format!(
                "this account holds the most knowledge bases it may ({}); delete one first",
                self.limits.max_bases_per_account
            ))),
        }
    }

    pub async fn update_base(
        &self,
        reach: Reach<'_>,
        id: &str,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<KnowledgeBase, KnowledgeError> {
        if let Some(n) = name {
            knowledge::check_name(n).map_err(|message| KnowledgeError::Invalid { field: "name", message })?;
        }
        if let Some(d) = description {
            knowledge::check_description(d)
                .map_err(|message| KnowledgeError::Invalid { field: "description", message })?;
        }
        let base = self.base(reach, id).await?;
        match self.store.update_knowledge_base(reach.account, &base.id, name, description, self.clock.now()).await? {
            BaseChange::Changed(b) => Ok(b),
            BaseChange::NotFound => Err(KnowledgeError::NotFound("knowledge base")),
            BaseChange::NameTaken => Err(KnowledgeError::NameTaken(name.unwrap_or_default().to_owned())),
        }
    }

    pub async fn set_default(&self, reach: Reach<'_>, id: &str) -> Result<KnowledgeBase, KnowledgeError> {
        let base = self.base(reach, id).await?;
        if reach.allowed.is_some() {
            // The default is the account's, not one base's: changing it changes another base too.
            return Err(KnowledgeError::Restricted(
                "this token is limited to named knowledge bases and cannot change the account's default",
            ));
        }
        self.store
            .set_default_knowledge_base(reach.account, &base.id, self.clock.now())
            .await?
            .ok_or(KnowledgeError::NotFound("knowledge base"))
    }

    pub async fn delete_base(&self, reach: Reach<'_>, id: &str) -> Result<KnowledgeBase, KnowledgeError> {
        let base = self.base(reach, id).await?;
        match self.store.delete_knowledge_base(reach.account, &base.id).await? {
            BaseDeletion::Deleted => Ok(base),
            BaseDeletion::NotFound => Err(KnowledgeError::NotFound("knowledge base")),
            BaseDeletion::IsDefault => Err(KnowledgeError::DefaultUndeletable),
        }
    }

    /// Adds a document to `base` (already resolved for this caller): the text checked (or fetched and
    /// extracted) and bounded first; nothing is stored when any check fails.
    pub async fn add_document(
        &self,
        reach: Reach<'_>,
        base: &KnowledgeBase,
        new: NewDocument,
    ) -> Result<DocumentSummary, KnowledgeError> {
        if !reach.may(&base.id) || &base.account_id != reach.account {
            return Err(KnowledgeError::NotFound("knowledge base"));
        }
        if let Some(t) = &new.title {
            knowledge::check_title(t).map_err(|message| KnowledgeError::Invalid { field: "title", message })?;
        }
        let max = self.limits.max_document_bytes;
        let (source, url, content, found_title) = match new.source {
            NewSource::Text(text) => {
                if text.len() > max {
                    return Err(KnowledgeError::TooLarge(max));
                }
                (SourceType::Text, None, text, None)
            }
            NewSource::Url(u) => {
                let (url, text, title) = self.fetch_text(reach.account, &u).await?;
                (SourceType::Url, Some(url), text, title)
            }
        };
        if content.trim().is_empty() {
            return Err(KnowledgeError::Invalid { field: "content", message: "the document has no text".into() });
        }
        if content.len() > max {
            return Err(KnowledgeError::TooLarge(max));
        }
        let title = new
            .title
            .or(found_title.map(|t| t.chars().take(knowledge::MAX_TITLE_CHARS).collect()))
            .unwrap_or_else(|| knowledge::title_from(&content, url.as_deref()));
        let doc = Document::new(&base.id, &title, source, url, content, self.clock.now());
        match self.store.add_document(reach.account, &doc, self.limits.max_documents_per_base).await? {
            DocumentAddition::Added => Ok(doc.summary),
            DocumentAddition::BaseNotFound => Err(KnowledgeError::NotFound("knowledge base")),
            DocumentAddition::QuotaReached => Err(KnowledgeError::Quota(format!(
                "this knowledge base holds the most documents it may ({}); delete one first",
                self.limits.max_documents_per_base
            ))),
        }
    }

    /// The text at `url`: (the URL as parsed, its text, a title it names).
    async fn fetch_text(
        &self,
        account: &AccountId,
        raw: &str,
    ) -> Result<(String, String, Option<String>), KnowledgeError> {
        if raw.len() > knowledge::MAX_URL_BYTES {
            return Err(KnowledgeError::Invalid {
                field: "url",
                message: format!("a URL has at most {} bytes", knowledge::MAX_URL_BYTES),
            });
        }
        let url = url::Url::parse(raw)
            .map_err(|e| KnowledgeError::Invalid { field: "url", message: format!("not a URL: {e}") })?;
        if !matches!(url.scheme(), "https" | "http") || !url.username().is_empty() || url.password().is_some() {
            return Err(KnowledgeError::Invalid {
                field: "url",
                message: "an https URL without credentials is needed".into(),
            });
        }
        if let Err(wait) =
            self.fetch.limiter.acquire("knowledge_fetch", account.as_str(), self.fetch.per_minute, 60).await
        {
            return Err(KnowledgeError::TooMany(wait));
        }
        let fetched = self
            .fetch
            .fetcher
            .get_following(&url, "text/html, text/markdown, text/plain;q=0.9", self.fetch.max_redirects)
            .await
            .map_err(|e| match e {
                FetchError::NotHttps | FetchError::NotPublic(_) | FetchError::Unresolvable(_) => {
                    KnowledgeError::Invalid { field: "url", message: e.to_string() }
                }
                other => KnowledgeError::Fetch(format!("the document could not be fetched: {other}")),
            })?;
        let Some(kind) = extract::kind_of(&fetched.content_type) else {
            let shown: String = fetched.content_type.chars().filter(|c| !c.is_control()).take(100).collect();
            return Err(KnowledgeError::Fetch(format!(
                "the URL answered {shown:?}; only text/plain, text/markdown and text/html documents are taken"
            )));
        };
        let (text, title) = extract::text_of(kind, &fetched.body);
        Ok((url.to_string(), text, title))
    }

    pub async fn documents(
        &self,
        reach: Reach<'_>,
        base_id: &str,
        limit: u32,
        offset: u64,
    ) -> Result<(KnowledgeBase, Vec<DocumentSummary>), KnowledgeError> {
        let base = self.base(reach, base_id).await?;
        let docs = self
            .store
            .documents(reach.account, &base.id, limit, offset)
            .await?
            .ok_or(KnowledgeError::NotFound("knowledge base"))?;
        Ok((base, docs))
    }

    pub async fn document(&self, reach: Reach<'_>, base_id: &str, id: &str) -> Result<Document, KnowledgeError> {
        let base = self.base(reach, base_id).await?;
        self.store.document(reach.account, &base.id, id).await?.ok_or(KnowledgeError::NotFound("document"))
    }

    pub async fn delete_document(&self, reach: Reach<'_>, base_id: &str, id: &str) -> Result<(), KnowledgeError> {
        let base = self.base(reach, base_id).await?;
        if self.store.delete_document(reach.account, &base.id, id).await? {
            Ok(())
        } else {
            Err(KnowledgeError::NotFound("document"))
        }
    }

    /// Ranked hits in `base` (when given, already resolved for this caller) or every base the caller
    /// may reach.
    pub async fn search(
        &self,
        reach: Reach<'_>,
        base: Option<&KnowledgeBase>,
        query: &str,
        limit: u32,
    ) -> Result<Vec<SearchHit>, KnowledgeError> {
        if query.trim().is_empty() || query.len() > knowledge::MAX_QUERY_BYTES {
            return Err(KnowledgeError::Invalid {
                field: "query",
                message: format!("a query has 1 to {} bytes", knowledge::MAX_QUERY_BYTES),
            });
        }
        if limit == 0 || limit > knowledge::MAX_SEARCH_LIMIT {
            return Err(KnowledgeError::Invalid {
                field: "limit",
                message: format!("limit must be 1 to {}", knowledge::MAX_SEARCH_LIMIT),
            });
        }
        let one;
        let only = match base {
            Some(b) => {
                if !reach.may(&b.id) || &b.account_id != reach.account {
                    return Err(KnowledgeError::NotFound("knowledge base"));
                }
                one = [b.id.clone()];
                Some(&one[..])
            }
            None => reach.allowed,
        };
        Ok(self.retriever.retrieve(reach.account, only, query, limit).await?)
    }
}
