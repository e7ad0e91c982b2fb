//! The request context is the access crate's `AccessContext`: one type, built once per request by
//! the verifier and handed to dispatch and every tool.

pub use bk_access::AccessContext as RequestContext;
