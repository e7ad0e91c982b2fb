//! The account dashboard (`/account/…`): a signed-in person's own place — overview, authorized
//! apps, personal access tokens, the account's audit log, browser sessions. Server-rendered, no
//! inline scripts; everything goes through the same code as the REST API (`bk_api`) acting as
//! `Caller::Browser`.

use std::sync::Arc;

use axum::Router;
use bk_api::Api;

use crate::WebState;

/// The dashboard's templates (added to the page environment).
pub(crate) const TEMPLATES: &[(&str, &str)] = &[];

/// What the dashboard routes need: the pages' state and the management API's services.
pub struct Dashboard {
    pub web: Arc<WebState>,
    pub api: Arc<Api>,
}

pub fn router(web: Arc<WebState>, api: Arc<Api>) -> Router {
    let _ = Dashboard { web, api };
    Router::new()
}
