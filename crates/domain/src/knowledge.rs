//! Knowledge bases and their documents: account-owned, a name unique per account (compared without
//! case), exactly one default per account (created on first need, never deleted). The rules for
//! what a person may name or store are here; storage and search are the adapter's
//! (`ports::KnowledgeStore`), fetching and tools are `bridgekeeper-knowledge`'s.

use serde::{Deserialize, Serialize};

use crate::ids::AccountId;

/// The name the default knowledge base is created with.
pub const DEFAULT_NAME: &str = "default";
/// The longest name, title and URL accepted (characters, bytes, bytes).
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_URL_BYTES: usize = 2048;
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
/// The most words of a search query that count (the rest are ignored), and its longest form.
pub const MAX_QUERY_BYTES: usize = 1000;
pub const MAX_QUERY_TERMS: usize = 32;
/// The most results one search answers.
pub const MAX_SEARCH_LIMIT: u32 = 50;

/// A knowledge base as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KnowledgeBase {
    /// `kb_…`
    pub id: String,
    #[serde(skip)]
    pub account_id: AccountId,
    pub name: String,
    pub description: String,
    /// The account's default knowledge base (exactly one; it cannot be deleted).
    pub is_default: bool,
    /// Documents it holds.
    pub document_count: u64,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

impl KnowledgeBase {
    /// A new, empty base of `account` (id generated).
    pub fn new(account_id: &AccountId, name: &str, description: &str, is_default: bool, now: i64) -> Self {
        Self {
            id: format!("kb_{}", uuid::Uuid::now_v7().simple()),
            account_id: account_id.clone(),
            name: name.to_owned(),
            description: description.to_owned(),
            is_default,
            document_count: 0,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Where a document's text came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    /// Given as text.
    Text,
    /// Fetched from a URL (its text extracted).
    Url,
}

impl SourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Text => "text",
            SourceType::Url => "url",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(SourceType::Text),
            "url" => Some(SourceType::Url),
            _ => None,
        }
    }
}

/// A document without its content (lists).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DocumentSummary {
    /// `doc_…`
    pub id: String,
    pub knowledge_base_id: String,
    pub title: String,
    pub source_type: SourceType,
    /// The URL it was fetched from (`url` documents).
    pub url: Option<String>,
    /// Bytes of its text (UTF-8).
    pub size: u64,
    /// Unix seconds.
    pub created_at: i64,
}

/// A document with its text.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Document {
    #[serde(flatten)]
    pub summary: DocumentSummary,
    pub content: String,
}

impl Document {
    pub fn new(
        knowledge_base_id: &str,
        title: &str,
        source_type: SourceType,
        url: Option<String>,
        content: String,
        now: i64,
    ) -> Self {
        Self {
            summary: DocumentSummary {
                id: format!("doc_{}", uuid::Uuid::now_v7().simple()),
                knowledge_base_id: knowledge_base_id.to_owned(),
                title: title.to_owned(),
                source_type,
                url,
                size: content.len() as u64,
                created_at: now,
            },
            content,
        }
    }
}

/// One search result: where, how good, and the matching passage.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SearchHit {
    pub document_id: String,
    pub knowledge_base_id: String,
    pub knowledge_base_name: String,
    pub title: String,
    pub source_type: SourceType,
    pub url: Option<String>,
    /// Higher is better; comparable within one answer only.
    pub score: f64,
    /// The passage around the matches, matched words between `**`.
    pub snippet: String,
}

/// The comparison key of a name: names differing only in case are the same name.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// A knowledge base name: 1 to 100 printable characters, no leading or trailing space.
pub fn check_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(format!("a knowledge base name has 1 to {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) || name.trim() != name {
        return Err("a knowledge base name has no control characters and no leading or trailing space".into());
    }
    Ok(())
}

/// A document title: 1 to 200 printable characters.
pub fn check_title(title: &str) -> Result<(), String> {
    let n = title.chars().count();
    if n == 0 || n > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
        return Err(format!("a title has 1 to {MAX_TITLE_CHARS} printable characters"));
    }
    Ok(())
}

/// A description: at most 1000 characters, no control characters but newlines and tabs.
pub fn check_description(d: &str) -> Result<(), String> {
    if d.chars().count() > MAX_DESCRIPTION_CHARS || d.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(format!("a description has at most {MAX_DESCRIPTION_CHARS} printable characters"));
    }
    Ok(())
}

/// A title for a document given none: its first line (or the URL), cut to fit.
pub fn title_from(content: &str, url: Option<&str>) -> String {
    let first = content.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let base = if first.is_empty() { url.unwrap_or("Untitled") } else { first };
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(80).collect();
    if cleaned.trim().is_empty() { "Untitled".into() } else { cleaned.trim().to_owned() }
}

/// The words of a query a full-text search looks for: letters and digits, lower-cased, at most
/// [`MAX_QUERY_TERMS`]. Operators and quotes of any search syntax are dropped, so no query can be
/// a syntax error.
pub fn query_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in query.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let w = word.to_lowercase();
        if !terms.contains(&w) {
            terms.push(w);
        }
        if terms.len() == MAX_QUERY_TERMS {
            break;
        }
    }
    terms
}

/// The outcome of creating a knowledge base.
#[derive(Clone, Debug, PartialEq)]
pub enum BaseCreation {
    Created,
    /// The account has a base of that name (compared without case).
    NameTaken,
    /// The account holds the most bases it may.
    QuotaReached,
}

/// The outcome of renaming one.
#[derive(Clone, Debug, PartialEq)]
pub enum BaseChange {
    Changed(KnowledgeBase),
    NotFound,
    NameTaken,
}

/// The outcome of deleting one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseDeletion {
    Deleted,
    NotFound,
    /// The default base is never deleted (make another one the default first).
    IsDefault,
}

/// The outcome of adding a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentAddition {
    Added,
    /// No such base of this account.
    BaseNotFound,
    /// The base holds the most documents it may.
    QuotaReached,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_terms_drop_every_operator() {
        assert_eq!(
            query_terms("\"rust\" AND (tokio OR NEAR(x y)) * -col:val ^"),
            ["rust", "and", "tokio", "or", "near", "x", "y", "col", "val"]
        );
        assert!(query_terms("\" * () : ^ -").is_empty());
        assert_eq!(query_terms("Élan élan"), ["élan"]);
    }

    #[test]
    fn names_are_bounded_and_printable() {
        assert!(check_name("Notes").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(" x").is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name(&"x".repeat(101)).is_err());
        assert_eq!(name_key("Notes"), name_key("NOTES"));
    }

    #[test]
    fn titles_come_from_the_first_line() {
        assert_eq!(title_from("\n  Hello world\nmore", None), "Hello world");
        assert_eq!(title_from("", Some("https://e.com/a")), "https://e.com/a");
        assert_eq!(title_from("", None), "Untitled");
    }
}
