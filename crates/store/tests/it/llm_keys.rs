//! Operators' sealed LLM upstream API keys on every backend: set, replaced, read, removed; and among
//! what `keys rotate-master` re-seals (a compare-and-set on the old ciphertext).

use std::sync::Arc;

use bk_domain::ports::{LlmApiKeyStore, MasterSealedKind, MasterSealedStore};
use bridgekeeper_store::SqlStore;

shared_store_tests!(llm_api_keys_are_set_replaced_and_removed_per_model, llm_api_keys_are_resealed_by_compare_and_set);

async fn llm_api_keys_are_set_replaced_and_removed_per_model(store: Arc<SqlStore>) {
    assert_eq!(store.llm_api_key("m1").await.unwrap(), None);
    store.put_llm_api_key("m1", b"sealed-1", 10).await.unwrap();
    store.put_llm_api_key("m2", b"sealed-other", 10).await.unwrap();
    assert_eq!(store.llm_api_key("m1").await.unwrap().as_deref(), Some(&b"sealed-1"[..]));
    store.put_llm_api_key("m1", b"sealed-2", 20).await.unwrap();
    assert_eq!(store.llm_api_key("m1").await.unwrap().as_deref(), Some(&b"sealed-2"[..]));
    assert!(store.delete_llm_api_key("m1").await.unwrap());
    assert!(!store.delete_llm_api_key("m1").await.unwrap());
    assert_eq!(store.llm_api_key("m1").await.unwrap(), None);
    assert_eq!(store.llm_api_key("m2").await.unwrap().as_deref(), Some(&b"sealed-other"[..]), "the other model's");
}

async fn llm_api_keys_are_resealed_by_compare_and_set(store: Arc<SqlStore>) {
    store.put_llm_api_key("m1", b"sealed-1", 10).await.unwrap();
    let values = store.master_sealed_values().await.unwrap();
    let v = values.iter().find(|v| v.kind == MasterSealedKind::LlmApiKey).unwrap();
    assert_eq!((v.id.as_str(), v.sealed.as_slice()), ("m1", &b"sealed-1"[..]));
    assert!(!store.reseal_value(MasterSealedKind::LlmApiKey, "m1", b"stale", b"sealed-x").await.unwrap());
    assert!(store.reseal_value(MasterSealedKind::LlmApiKey, "m1", b"sealed-1", b"sealed-2").await.unwrap());
    assert_eq!(store.llm_api_key("m1").await.unwrap().as_deref(), Some(&b"sealed-2"[..]));
}
