//! One file per grant type.

pub mod authorization_code;
pub mod refresh_token;
