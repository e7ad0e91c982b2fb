//! Identifiers. Each kind of id is its own type so that an account id cannot be passed where a
//! session id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new random, time-ordered id.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple()))
            }
            /// Wraps an id read from storage or from a request (not validated beyond being text).
            pub fn from_string(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// The tenant: every tenant-owned row carries it.
    AccountId, "acc_"
);
id_type!(
    /// An OAuth client (`client_id`).
    ClientId, "cli_"
);
id_type!(
    /// A session (grant): everything issued to a client for an account hangs off it.
    SessionId, "ses_"
);
id_type!(
    /// A refresh token row (not the token itself).
    RefreshTokenId, "rt_"
);
id_type!(
    /// A signing key id (`kid`).
    KeyId, "key_"
);

id_type!(
    /// A connection to an upstream provider.
    ConnectionId, "con_"
);

/// The tenant id is the account id.
pub type TenantId = AccountId;
