//! Signing-key rotation on every backend: a periodic rotation is conditional and atomic, so that
//! instances sharing one database which all find the active key due at the same moment create
//! exactly one new key between them; an operator's rotation always happens.

use std::sync::Arc;

use bk_domain::ids::KeyId;
use bk_domain::ports::{SigningKeyRotation, SigningKeyStore, StoredSigningKey};
use bridgekeeper_store::SqlStore;

shared_store_tests!(
    concurrent_periodic_rotations_create_exactly_one_key,
    a_periodic_rotation_happens_only_when_the_active_key_is_due,
    an_operator_rotation_always_happens,
);

fn key(kid: &str, created_at: i64) -> StoredSigningKey {
    StoredSigningKey {
        kid: KeyId::from_string(kid),
        alg: "RS256".into(),
        sealed_private_key: kid.as_bytes().to_vec(),
        created_at,
        retire_after: None,
    }
}

fn kids(keys: &[StoredSigningKey]) -> Vec<&str> {
    keys.iter().map(|k| k.kid.as_str()).collect()
}

/// `n` instances try the same periodic rotation at the same moment; the rotations that happened.
async fn rotate_at_once(store: &Arc<SqlStore>, n: usize, round: &str, now: i64, due_before: i64) -> Vec<String> {
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (store, start) = (store.clone(), start.clone());
            let kid = format!("key_{round}_{i}");
            tokio::spawn(async move {
                start.wait().await;
                let done = store.rotate_signing_key(&key(&kid, now), Some(due_before), now + 960).await.unwrap();
                done.map(|_| kid)
            })
        })
        .collect();
    let mut rotated = Vec::new();
    for t in tasks {
        rotated.extend(t.await.unwrap());
    }
    rotated
}

async fn concurrent_periodic_rotations_create_exactly_one_key(store: Arc<SqlStore>) {
    store.insert_signing_key(&key("key_first", 100)).await.unwrap();
    // A period of 1000 s: at 1100 the first key is due, and 8 instances notice at once.
    let rotated = rotate_at_once(&store, 8, "a", 1100, 1100 - 1000 + 1).await;
    assert_eq!(rotated.len(), 1, "exactly one instance rotates: {rotated:?}");
    let keys = store.signing_keys(1100).await.unwrap();
    assert_eq!(kids(&keys), [rotated[0].as_str(), "key_first"], "the new key is active, the old one still published");
    // The old key leaves the ring once every token it signed has expired; the new one stays.
    assert_eq!(kids(&store.signing_keys(1100 + 960).await.unwrap()), [rotated[0].as_str()]);
    // The next period: again exactly one, replacing the key of the first round.
    let rotated2 = rotate_at_once(&store, 8, "b", 2200, 2200 - 1000 + 1).await;
    assert_eq!(rotated2.len(), 1, "exactly one instance rotates: {rotated2:?}");
    assert_eq!(kids(&store.signing_keys(2200).await.unwrap()), [rotated2[0].as_str(), rotated[0].as_str()]);
}

async fn a_periodic_rotation_happens_only_when_the_active_key_is_due(store: Arc<SqlStore>) {
    // No key yet: a rotation creates the first.
    let first = store.rotate_signing_key(&key("key_1", 10), Some(10), 100).await.unwrap();
    assert_eq!(first, Some(SigningKeyRotation { replaced: None, retired: 0 }));
    // The active key was created at 10: not due before 10 (created before 10 is required) …
    assert_eq!(store.rotate_signing_key(&key("key_2", 20), Some(10), 100).await.unwrap(), None);
    assert_eq!(kids(&store.signing_keys(20).await.unwrap()), ["key_1"], "nothing changed");
    // … due when it was created before the bound.
    let done = store.rotate_signing_key(&key("key_2", 20), Some(11), 100).await.unwrap();
    assert_eq!(done, Some(SigningKeyRotation { replaced: Some(KeyId::from_string("key_1")), retired: 1 }));
    assert_eq!(kids(&store.signing_keys(20).await.unwrap()), ["key_2", "key_1"]);
}

async fn an_operator_rotation_always_happens(store: Arc<SqlStore>) {
    store.insert_signing_key(&key("key_1", 10)).await.unwrap();
    let periodic = store.rotate_signing_key(&key("key_2", 20), Some(15), 500).await.unwrap();
    assert!(periodic.is_some());
    // `keys rotate` right after: no condition, and no successor recorded (so it never conflicts).
    let manual = store.rotate_signing_key(&key("key_3", 21), None, 600).await.unwrap();
    assert_eq!(manual, Some(SigningKeyRotation { replaced: Some(KeyId::from_string("key_2")), retired: 1 }));
    let manual = store.rotate_signing_key(&key("key_4", 22), None, 600).await.unwrap();
    assert_eq!(manual.map(|r| r.retired), Some(1), "key_3 retires; key_1 and key_2 keep their earlier time");
    assert_eq!(kids(&store.signing_keys(499).await.unwrap()), ["key_4", "key_3", "key_2", "key_1"]);
    assert_eq!(kids(&store.signing_keys(500).await.unwrap()), ["key_4", "key_3", "key_2"]);
    assert_eq!(kids(&store.signing_keys(600).await.unwrap()), ["key_4"]);
}
