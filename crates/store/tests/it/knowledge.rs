//! Knowledge bases and documents on every backend: names unique per account (without case; two
//! accounts may share one), exactly one default that cannot be deleted, quotas held under
//! concurrency, tenant-scoped reads, ranked full-text search whose input is never syntax.

use std::sync::Arc;

use bk_domain::account::Account;
use bk_domain::ids::AccountId;
use bk_domain::knowledge::{
    BaseChange, BaseCreation, BaseDeletion, Document, DocumentAddition, KnowledgeBase, SourceType, query_terms,
};
use bk_domain::ports::{AccountStore, KnowledgeStore};
use bridgekeeper_store::SqlStore;

shared_store_tests!(
    knowledge_bases_round_trip_per_account,
    knowledge_base_names_are_unique_per_account_without_case,
    the_default_knowledge_base_is_one_and_undeletable,
    knowledge_base_quota_holds_under_concurrency,
    documents_round_trip_and_stay_in_their_tenant,
    document_quota_holds,
    search_ranks_the_better_match_first,
    search_is_tenant_and_filter_scoped,
    search_syntax_in_queries_is_harmless,
    deleting_a_base_removes_its_documents_from_search,
    deleting_an_account_erases_its_knowledge_bases,
);

async fn account(store: &SqlStore) -> AccountId {
    let id = AccountId::generate();
    let a = Account::with_password(id.clone(), format!("{id}@example.com"), "$argon2id$x".into(), 1);
    store.create_account(&a).await.unwrap();
    id
}

async fn base(store: &SqlStore, account: &AccountId, name: &str) -> KnowledgeBase {
    let b = KnowledgeBase::new(account, name, "", false, 10);
    assert_eq!(store.create_knowledge_base(&b, 100).await.unwrap(), BaseCreation::Created);
    b
}

async fn doc(store: &SqlStore, account: &AccountId, base: &KnowledgeBase, title: &str, text: &str) -> Document {
    let d = Document::new(&base.id, title, SourceType::Text, None, text.into(), 20);
    assert_eq!(store.add_document(account, &d, 1000).await.unwrap(), DocumentAddition::Added);
    d
}

async fn knowledge_bases_round_trip_per_account(store: Arc<SqlStore>) {
    let (a, b) = (account(&store).await, account(&store).await);
    let kb = base(&store, &a, "Recipes").await;
    let got = store.knowledge_base(&a, &kb.id).await.unwrap().unwrap();
    assert_eq!((got.name.as_str(), got.is_default, got.document_count), ("Recipes", false, 0));
    assert_eq!(store.knowledge_base_named(&a, "recipes").await.unwrap().unwrap().id, kb.id);
    // Another account sees nothing of it, by id or by name, and cannot change it.
    assert!(store.knowledge_base(&b, &kb.id).await.unwrap().is_none());
    assert!(store.knowledge_base_named(&b, "Recipes").await.unwrap().is_none());
    assert_eq!(store.update_knowledge_base(&b, &kb.id, Some("x"), None, 11).await.unwrap(), BaseChange::NotFound);
    assert_eq!(store.delete_knowledge_base(&b, &kb.id).await.unwrap(), BaseDeletion::NotFound);
    assert!(store.set_default_knowledge_base(&b, &kb.id, 11).await.unwrap().is_none());
    assert!(store.knowledge_bases(&b, None).await.unwrap().is_empty());
    // Rename and describe.
    let BaseChange::Changed(r) = store.update_knowledge_base(&a, &kb.id, Some("Cooking"), Some("d"), 12).await.unwrap()
    else {
        panic!("renamed")
    };
    assert_eq!((r.name.as_str(), r.description.as_str(), r.updated_at), ("Cooking", "d", 12));
    // A list filtered by ids names only those (unknown ids match nothing; an empty list nothing).
    let other = base(&store, &a, "Other").await;
    let only = [other.id.clone(), "kb_unknown".to_owned()];
    let listed = store.knowledge_bases(&a, Some(&only)).await.unwrap();
    assert_eq!(listed.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(), [other.id.as_str()]);
    assert!(store.knowledge_bases(&a, Some(&[])).await.unwrap().is_empty());
    assert_eq!(store.knowledge_bases(&a, None).await.unwrap().len(), 2);
}

async fn knowledge_base_names_are_unique_per_account_without_case(store: Arc<SqlStore>) {
    let (a, b) = (account(&store).await, account(&store).await);
    base(&store, &a, "Notes").await;
    let dup = KnowledgeBase::new(&a, "NOTES", "", false, 10);
    assert_eq!(store.create_knowledge_base(&dup, 100).await.unwrap(), BaseCreation::NameTaken);
    // Another account may use the same name.
    base(&store, &b, "Notes").await;
    // A rename onto a taken name changes nothing.
    let other = base(&store, &a, "Other").await;
    assert_eq!(
        store.update_knowledge_base(&a, &other.id, Some("notes"), None, 11).await.unwrap(),
        BaseChange::NameTaken
    );
    assert_eq!(store.knowledge_base(&a, &other.id).await.unwrap().unwrap().name, "Other");
}

async fn the_default_knowledge_base_is_one_and_undeletable(store: Arc<SqlStore>) {
    let a = account(&store).await;
    // Concurrent first needs create one default.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, a) = (store.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            let fresh = KnowledgeBase::new(&a, "default", "", true, 10);
            store.default_knowledge_base(&a, &fresh).await.unwrap().id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one default: {ids:?}");
    let default_id = ids[0].clone();
    assert_eq!(store.delete_knowledge_base(&a, &default_id).await.unwrap(), BaseDeletion::IsDefault);
    assert!(store.knowledge_base(&a, &default_id).await.unwrap().is_some());
    // set-default moves the flag: exactly one default, and the old one becomes deletable.
    let other = base(&store, &a, "Work").await;
    let now_default = store.set_default_knowledge_base(&a, &other.id, 30).await.unwrap().unwrap();
    assert!(now_default.is_default);
    let all = store.knowledge_bases(&a, None).await.unwrap();
    assert_eq!(all.iter().filter(|b| b.is_default).count(), 1);
    assert_eq!(all[0].id, other.id, "the default is listed first");
    assert_eq!(store.delete_knowledge_base(&a, &other.id).await.unwrap(), BaseDeletion::IsDefault);
    assert_eq!(store.delete_knowledge_base(&a, &default_id).await.unwrap(), BaseDeletion::Deleted);
    // Setting the default twice is harmless.
    assert!(store.set_default_knowledge_base(&a, &other.id, 31).await.unwrap().unwrap().is_default);
    let fresh = KnowledgeBase::new(&a, "default", "", true, 40);
    assert_eq!(store.default_knowledge_base(&a, &fresh).await.unwrap().id, other.id);
}

async fn knowledge_base_quota_holds_under_concurrency(store: Arc<SqlStore>) {
    let a = account(&store).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (store, a) = (store.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            store.create_knowledge_base(&KnowledgeBase::new(&a, &format!("kb{i}"), "", false, 10), 4).await.unwrap()
        }));
    }
    let mut created = 0;
    for t in tasks {
        if t.await.unwrap() == BaseCreation::Created {
            created += 1;
        }
    }
    assert_eq!(created, 4);
    assert_eq!(store.knowledge_bases(&a, None).await.unwrap().len(), 4);
}

async fn documents_round_trip_and_stay_in_their_tenant(store: Arc<SqlStore>) {
    let (a, b) = (account(&store).await, account(&store).await);
    let kb = base(&store, &a, "Docs").await;
    let first = doc(&store, &a, &kb, "First", "alpha beta").await;
    let second = doc(&store, &a, &kb, "Second", "gamma").await;
    let got = store.document(&a, &kb.id, &first.summary.id).await.unwrap().unwrap();
    assert_eq!(got, first);
    assert_eq!(got.summary.size, 10);
    let list = store.documents(&a, &kb.id, 10, 0).await.unwrap().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(store.documents(&a, &kb.id, 1, 1).await.unwrap().unwrap().len(), 1);
    assert_eq!(store.knowledge_base(&a, &kb.id).await.unwrap().unwrap().document_count, 2);
    // Another tenant: no list, no document, no deletion, no addition to the base.
    assert!(store.documents(&b, &kb.id, 10, 0).await.unwrap().is_none());
    assert!(store.document(&b, &kb.id, &first.summary.id).await.unwrap().is_none());
    assert!(!store.delete_document(&b, &kb.id, &first.summary.id).await.unwrap());
    let intruder = Document::new(&kb.id, "x", SourceType::Text, None, "x".into(), 1);
    assert_eq!(store.add_document(&b, &intruder, 1000).await.unwrap(), DocumentAddition::BaseNotFound);
    // A document is reached only through its own base.
    let other = base(&store, &a, "Other").await;
    assert!(store.document(&a, &other.id, &first.summary.id).await.unwrap().is_none());
    assert!(store.delete_document(&a, &kb.id, &second.summary.id).await.unwrap());
    assert!(!store.delete_document(&a, &kb.id, &second.summary.id).await.unwrap());
    assert_eq!(store.documents(&a, &kb.id, 10, 0).await.unwrap().unwrap().len(), 1);
}

async fn document_quota_holds(store: Arc<SqlStore>) {
    let a = account(&store).await;
    let kb = base(&store, &a, "Small").await;
    for i in 0..3 {
        let d = Document::new(&kb.id, &format!("d{i}"), SourceType::Text, None, "t".into(), 1);
        assert_eq!(store.add_document(&a, &d, 3).await.unwrap(), DocumentAddition::Added);
    }
    let d = Document::new(&kb.id, "over", SourceType::Text, None, "t".into(), 1);
    assert_eq!(store.add_document(&a, &d, 3).await.unwrap(), DocumentAddition::QuotaReached);
    assert_eq!(store.documents(&a, &kb.id, 10, 0).await.unwrap().unwrap().len(), 3);
}

async fn search_ranks_the_better_match_first(store: Arc<SqlStore>) {
    let a = account(&store).await;
    let kb = base(&store, &a, "Garden").await;
    let weak = doc(&store, &a, &kb, "Vegetables", "Carrots and potatoes grow in the garden; tomatoes too.").await;
    let strong = doc(
        &store,
        &a,
        &kb,
        "Tomatoes",
        "Growing tomatoes: tomatoes need sun. Water tomatoes daily and stake the tomato plants.",
    )
    .await;
    doc(&store, &a, &kb, "Unrelated", "Nothing about that vegetable here, only roses.").await;
    let hits = store.search_documents(&a, None, &query_terms("tomatoes"), 10).await.unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.document_id.as_str()).collect();
    assert_eq!(ids, [strong.summary.id.as_str(), weak.summary.id.as_str()], "{hits:?}");
    assert!(hits[0].score > hits[1].score);
    assert!(hits[0].snippet.contains("**"), "matched words are marked: {}", hits[0].snippet);
    assert_eq!((hits[0].knowledge_base_name.as_str(), hits[0].title.as_str()), ("Garden", "Tomatoes"));
    // Stemming: "tomato" finds "tomatoes"; a document holding more of the words ranks higher.
    let hits = store.search_documents(&a, None, &query_terms("tomato sun"), 10).await.unwrap();
    assert_eq!(hits[0].document_id, strong.summary.id);
    let hits = store.search_documents(&a, None, &query_terms("potatoes"), 1).await.unwrap();
    assert_eq!(hits.iter().map(|h| h.document_id.as_str()).collect::<Vec<_>>(), [weak.summary.id.as_str()]);
}

async fn search_is_tenant_and_filter_scoped(store: Arc<SqlStore>) {
    let (a, b) = (account(&store).await, account(&store).await);
    let one = base(&store, &a, "One").await;
    let two = base(&store, &a, "Two").await;
    let theirs = base(&store, &b, "Theirs").await;
    doc(&store, &a, &one, "In one", "zebra stripes").await;
    doc(&store, &a, &two, "In two", "zebra crossing").await;
    doc(&store, &b, &theirs, "Other tenant", "zebra zebra zebra").await;
    let terms = query_terms("zebra");
    assert_eq!(store.search_documents(&a, None, &terms, 10).await.unwrap().len(), 2);
    let only = [two.id.clone()];
    let hits = store.search_documents(&a, Some(&only), &terms, 10).await.unwrap();
    assert_eq!(hits.iter().map(|h| h.title.as_str()).collect::<Vec<_>>(), ["In two"]);
    // Naming another tenant's base reaches nothing of it.
    let foreign = [theirs.id.clone()];
    assert!(store.search_documents(&a, Some(&foreign), &terms, 10).await.unwrap().is_empty());
    assert!(store.search_documents(&a, Some(&[]), &terms, 10).await.unwrap().is_empty());
    assert_eq!(store.search_documents(&b, None, &terms, 10).await.unwrap().len(), 1);
}

async fn search_syntax_in_queries_is_harmless(store: Arc<SqlStore>) {
    let a = account(&store).await;
    let kb = base(&store, &a, "Syntax").await;
    doc(&store, &a, &kb, "Rust", "rust and tokio NEAR the async runtime").await;
    for q in [
        "\"rust",
        "rust AND",
        "NEAR(rust tokio",
        "title:rust",
        "*",
        "rust OR OR OR",
        "(((",
        "^rust",
        "-rust",
        "rust'; DROP TABLE knowledge_documents; --",
        "!!! & | <-> :*",
        "",
    ] {
        let hits = store.search_documents(&a, None, &query_terms(q), 10).await.unwrap();
        assert!(hits.len() <= 1, "{q}: {hits:?}");
    }
    assert_eq!(store.search_documents(&a, None, &query_terms("\"rust\" AND NEAR"), 10).await.unwrap().len(), 1);
    // Terms are checked again by the adapter: what is not a plain word is dropped, never spliced.
    let raw = vec!["rust\"".to_owned(), "a OR b".to_owned()];
    assert!(store.search_documents(&a, None, &raw, 10).await.unwrap().is_empty());
    assert_eq!(store.documents(&a, &kb.id, 10, 0).await.unwrap().unwrap().len(), 1);
}

async fn deleting_a_base_removes_its_documents_from_search(store: Arc<SqlStore>) {
    let a = account(&store).await;
    let kb = base(&store, &a, "Temp").await;
    doc(&store, &a, &kb, "Gone", "ephemeral words").await;
    assert_eq!(store.search_documents(&a, None, &query_terms("ephemeral"), 10).await.unwrap().len(), 1);
    assert_eq!(store.delete_knowledge_base(&a, &kb.id).await.unwrap(), BaseDeletion::Deleted);
    assert!(store.search_documents(&a, None, &query_terms("ephemeral"), 10).await.unwrap().is_empty());
    assert!(store.knowledge_base(&a, &kb.id).await.unwrap().is_none());
}

async fn deleting_an_account_erases_its_knowledge_bases(store: Arc<SqlStore>) {
    let (a, b) = (account(&store).await, account(&store).await);
    let kb = base(&store, &a, "Private").await;
    doc(&store, &a, &kb, "Diary", "confidential thoughts").await;
    let theirs = base(&store, &b, "Kept").await;
    doc(&store, &b, &theirs, "Other", "confidential too").await;
    assert!(store.delete_account(&a, 100).await.unwrap().is_some());
    assert!(store.knowledge_base(&a, &kb.id).await.unwrap().is_none());
    assert!(store.search_documents(&a, None, &query_terms("confidential"), 10).await.unwrap().is_empty());
    // Only that account's.
    assert_eq!(store.search_documents(&b, None, &query_terms("confidential"), 10).await.unwrap().len(), 1);
}
