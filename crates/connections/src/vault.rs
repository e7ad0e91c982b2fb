//! The vault: upstream credentials sealed at rest with the AES-256-GCM envelope under the master key
//! (its key id inside the ciphertext, so keys can rotate), with the tenant and the connection id as
//! associated data — a ciphertext copied to another row or another tenant does not open.
//!
//! A [`Credential`] in the clear exists only between `open` and the end of the one upstream call
//! that needs it: its memory is zeroed when it is dropped, and its `Debug` names only its kind, so
//! it cannot reach a log, an audit row or an error message by accident.

use std::fmt;
use std::sync::Arc;

use bk_crypto::envelope::MasterKey;
use bk_domain::connection::credential_binding;
use bk_domain::ids::{AccountId, ConnectionId};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// What a connection holds to call its provider.
#[derive(Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credential {
    /// A key or token the tenant pasted (`api_key` providers).
    ApiKey { key: String },
    /// Tokens from an OAuth flow (`oauth2` and `mcp` providers).
    OAuth {
        access_token: String,
        refresh_token: Option<String>,
        /// As the provider named it (`Bearer` when it said nothing).
        token_type: String,
        /// For an `mcp` provider: the authorization server and client the tokens came from, which
        /// a refresh or revocation needs (they were discovered, not configured).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upstream: Option<Box<crate::mcp::McpClient>>,
    },
    /// A scoped token the tenant's backend issued (`token_exchange` providers).
    Exchanged { token: String },
}

impl Credential {
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::ApiKey { .. } => "api_key",
            Credential::OAuth { .. } => "oauth",
            Credential::Exchanged { .. } => "exchanged",
        }
    }
}

impl Zeroize for Credential {
    fn zeroize(&mut self) {
        match self {
            Credential::ApiKey { key } => key.zeroize(),
            Credential::OAuth { access_token, refresh_token, token_type, upstream } => {
                access_token.zeroize();
                refresh_token.zeroize();
                token_type.zeroize();
                if let Some(u) = upstream {
                    u.zeroize();
                }
            }
            Credential::Exchanged { token } => token.zeroize(),
        }
    }
}

impl Drop for Credential {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for Credential {}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({}, …)", self.kind())
    }
}

/// Why a credential could not be sealed or opened. Says nothing of the plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the credential could not be sealed")]
    Seal,
    /// Wrong key, wrong row or tenant, or tampered: the ciphertext does not open.
    #[error("the stored credential does not open under this connection (wrong key, row or tenant, or tampered)")]
    Open,
}

/// Seals and opens connection credentials.
#[derive(Clone)]
pub struct Vault {
    master: Arc<MasterKey>,
}

impl Vault {
    pub fn new(master: Arc<MasterKey>) -> Self {
        Self { master }
    }

    /// The ciphertext to store in the connection's row.
    pub fn seal(
        &self,
        account: &AccountId,
        connection: &ConnectionId,
        credential: &Credential,
    ) -> Result<Vec<u8>, VaultError> {
        let plain = Zeroizing::new(serde_json::to_vec(credential).map_err(|_| VaultError::Seal)?);
        self.master.seal(&credential_binding(account, connection), &plain).map_err(|_| VaultError::Seal)
    }

    /// The credential of this tenant's connection; refuses a ciphertext sealed for any other.
    pub fn open(
        &self,
        account: &AccountId,
        connection: &ConnectionId,
        sealed: &[u8],
    ) -> Result<Credential, VaultError> {
        let plain = Zeroizing::new(
            self.master.open(&credential_binding(account, connection), sealed).map_err(|_| VaultError::Open)?,
        );
        serde_json::from_slice(&plain).map_err(|_| VaultError::Open)
    }
}

use bk_domain::bridge::bridge_binding;

impl Vault {
    /// Seals a bridge-mode scoped token for the row `row` of `account`.
    pub fn seal_bridge(&self, account: &AccountId, row: &str, credential: &Credential) -> Result<Vec<u8>, VaultError> {
        let plain = Zeroizing::new(serde_json::to_vec(credential).map_err(|_| VaultError::Seal)?);
        self.master.seal(&bridge_binding(account, row), &plain).map_err(|_| VaultError::Seal)
    }

    /// Opens a bridge-mode token; refuses a ciphertext sealed for any other row or tenant.
    pub fn open_bridge(&self, account: &AccountId, row: &str, sealed: &[u8]) -> Result<Credential, VaultError> {
        let plain =
            Zeroizing::new(self.master.open(&bridge_binding(account, row), sealed).map_err(|_| VaultError::Open)?);
        serde_json::from_slice(&plain).map_err(|_| VaultError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        Vault::new(Arc::new(MasterKey::new("k1", [9u8; 32]).unwrap()))
    }

    fn oauth() -> Credential {
        Credential::OAuth {
            access_token: "ya29.upstream-access".into(),
            refresh_token: Some("1//upstream-refresh".into()),
            token_type: "Bearer".into(),
            upstream: None,
        }
    }

    #[test]
    fn a_sealed_credential_opens_for_its_own_row() {
        let v = vault();
        let (a, c) = (AccountId::generate(), ConnectionId::generate());
        let sealed = v.seal(&a, &c, &oauth()).unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"upstream"), "the ciphertext does not carry the token");
        assert_eq!(v.open(&a, &c, &sealed).unwrap(), oauth());
    }

    #[test]
    fn ciphertext_moved_to_another_row_does_not_open() {
        let v = vault();
        let a = AccountId::generate();
        let (c1, c2) = (ConnectionId::generate(), ConnectionId::generate());
        let sealed = v.seal(&a, &c1, &oauth()).unwrap();
        assert!(matches!(v.open(&a, &c2, &sealed), Err(VaultError::Open)));
    }

    #[test]
    fn ciphertext_moved_to_another_tenant_does_not_open() {
        let v = vault();
        let (a, b, c) = (AccountId::generate(), AccountId::generate(), ConnectionId::generate());
        let sealed = v.seal(&a, &c, &Credential::ApiKey { key: "sk_live_abc".into() }).unwrap();
        assert!(matches!(v.open(&b, &c, &sealed), Err(VaultError::Open)));
    }

    #[test]
    fn a_tampered_or_foreign_key_ciphertext_does_not_open() {
        let v = vault();
        let (a, c) = (AccountId::generate(), ConnectionId::generate());
        let mut sealed = v.seal(&a, &c, &oauth()).unwrap();
        let other = Vault::new(Arc::new(MasterKey::new("k2", [9u8; 32]).unwrap()));
        assert!(other.open(&a, &c, &sealed).is_err(), "the key id travels in the ciphertext");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(v.open(&a, &c, &sealed).is_err());
    }

    #[test]
    fn a_bridge_token_opens_only_for_its_own_row_and_tenant() {
        let v = vault();
        let (a, b) = (AccountId::generate(), AccountId::generate());
        let cred = Credential::Exchanged { token: "nexus_scoped_1".into() };
        let sealed = v.seal_bridge(&a, "brg_1", &cred).unwrap();
        assert_eq!(v.open_bridge(&a, "brg_1", &sealed).unwrap(), cred);
        assert!(v.open_bridge(&a, "brg_2", &sealed).is_err());
        assert!(v.open_bridge(&b, "brg_1", &sealed).is_err());
        let c = ConnectionId::from_string("brg_1");
        assert!(v.open(&a, &c, &sealed).is_err(), "not a connection's credential either");
    }

    #[test]
    fn plaintext_zeroized_after_use() {
        fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        zeroized_on_drop::<Credential>();
        let mut c = oauth();
        c.zeroize();
        match &c {
            Credential::OAuth { access_token, refresh_token, token_type, .. } => {
                assert!(access_token.is_empty() && refresh_token.is_none() && token_type.is_empty());
            }
            other => panic!("{other:?}"),
        }
        let mut k = Credential::ApiKey { key: "sk_live_abc".into() };
        k.zeroize();
        assert!(matches!(&k, Credential::ApiKey { key } if key.is_empty()));
    }

    #[test]
    fn nothing_debug_prints_a_secret() {
        let v = vault();
        let (a, c) = (AccountId::generate(), ConnectionId::generate());
        for cred in [
            oauth(),
            Credential::ApiKey { key: "sk_live_abc".into() },
            Credential::Exchanged { token: "tok_xyz".into() },
        ] {
            let printed = format!("{cred:?} {:?}", v.open(&a, &c, &v.seal(&a, &c, &cred).unwrap()));
            for secret in ["ya29", "1//", "sk_live", "tok_xyz"] {
                assert!(!printed.contains(secret), "{printed}");
            }
        }
        let e = v.open(&AccountId::generate(), &c, &v.seal(&a, &c, &oauth()).unwrap()).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("ya29"));
    }
}
