//! `/api/v1/knowledge/…`: the account's knowledge bases and their documents (scope `user-data`).
//! The rules are `bk_knowledge::Knowledge`'s: a base outside the token's `allowedKnowledgeBaseIds`
//! answers 404 exactly like another account's or one that does not exist, and lists and searches
//! cover only the bases the token may reach; a token limited to some bases cannot create one or
//! change the account's default (403). `default` is an alias of the default base's id in paths.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bk_domain::audit::Outcome;
use bk_domain::knowledge::{Document, DocumentSummary, KnowledgeBase, SearchHit, SourceType};
use bk_domain::scope::Scope;
use bk_knowledge::{KnowledgeError, NewDocument, NewSource, Reach};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::Api;
use crate::caller::{Caller, caller};
use crate::problem::{Body, PathParam, Problem, QueryParams, json_body, number_param};

/// A JSON body of a document may carry up to `knowledge.max_document_bytes` (at most 1 MiB) of
/// text, escaped; the text itself is measured after parsing.
pub const DOCUMENT_BODY_LIMIT: usize = 8 * 1024 * 1024;

impl From<KnowledgeError> for Problem {
    fn from(e: KnowledgeError) -> Self {
        match e {
            KnowledgeError::NotFound(what) => Problem::not_found(what),
            KnowledgeError::Invalid { field, message } => Problem::invalid(field, message),
            KnowledgeError::NameTaken(_) | KnowledgeError::DefaultUndeletable => {
                Problem::new(StatusCode::CONFLICT, "Conflict", e.to_string())
            }
            KnowledgeError::Quota(m) => Problem::quota(m),
            KnowledgeError::TooLarge(_) => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large", e.to_string())
            }
            KnowledgeError::Restricted(m) => Problem::forbidden(m),
            KnowledgeError::Fetch(m) => Problem::new(StatusCode::BAD_GATEWAY, "Document not fetched", m),
            KnowledgeError::TooMany(wait) => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "Too many requests", e.to_string()).retry_after(wait)
            }
            KnowledgeError::Store(e) => e.into(),
        }
    }
}

/// The caller as the knowledge service sees it: its account and the bases its grant may reach.
fn reach(who: &Caller) -> Result<Reach<'_>, Problem> {
    let (account, _) = who.person_with(Scope::UserData)?;
    let allowed = match who {
        Caller::Token(c) => c.restrictions.allowed_knowledge_base_ids.as_deref(),
        _ => None,
    };
    Ok(Reach { account, allowed })
}

fn audit(server: &Api, who: &Caller, kind: &str, target: &str) -> bk_domain::audit::AuditEvent {
    who.stamp(server.event(kind, Outcome::Success)).target(target)
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaseList {
    pub knowledge_bases: Vec<KnowledgeBase>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "recipes", "description": "What we cook"}))]
pub struct CreateBase {
    /// 1 to 100 printable characters, unique in the account (without case).
    name: String,
    /// At most 1000 characters.
    description: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "family recipes"}))]
pub struct UpdateBase {
    /// A new name (rename).
    name: Option<String>,
    description: Option<String>,
}

/// A document to add: its text (`sourceType` `text`), or a URL whose page is fetched and reduced to
/// text (`url`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"title": "Pancakes", "sourceType": "text", "content": "Flour, eggs, milk."}))]
pub struct AddDocument {
    /// 1 to 200 printable characters (absent: the page's title or the text's first line).
    title: Option<String>,
    /// `text` (default) or `url`.
    source_type: Option<SourceType>,
    /// The text (`text`).
    content: Option<String>,
    /// A public https URL of a text/html, text/markdown or text/plain document (`url`).
    url: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentList {
    pub knowledge_base_id: String,
    pub documents: Vec<DocumentSummary>,
    pub limit: u32,
    pub offset: u64,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    pub query: String,
    pub results: Vec<SearchHit>,
}

/// Paging of a document list, as text so that each error names its parameter.
#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DocumentParams {
    /// 1 to 100 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Documents to skip (default 0).
    #[param(value_type = Option<i64>, minimum = 0)]
    offset: Option<String>,
}

/// A search.
#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Words to look for (1 to 1000 bytes); any search syntax is taken as plain words.
    #[param(value_type = String, min_length = 1, max_length = 1000)]
    query: Option<String>,
    /// 1 to 50 (default 10).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 50)]
    limit: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/knowledge/bases",
    operation_id = "listKnowledgeBases",
    tag = "knowledge",
    description = "The account's knowledge bases the caller may reach, the default first (created on first need). \
        Scope `user-data`.",
    security(("bearer" = ["user-data"])),
    responses(
        (status = 200, description = "The knowledge bases", body = BaseList),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn list_bases(State(server): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let bases = server.knowledge.bases(reach(&who)?).await?;
    Ok(Json(BaseList { knowledge_bases: bases }).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/knowledge/bases",
    operation_id = "createKnowledgeBase",
    tag = "knowledge",
    description = "Creates a knowledge base. Its name is unique in the account (without case): 409 when taken, \
        and 409 when the account holds `knowledge.max_bases_per_account`. A token limited to some knowledge bases \
        cannot create one (403). Scope `user-data`.",
    request_body = CreateBase,
    security(("bearer" = ["user-data"])),
    responses(
        (status = 201, description = "Created", body = KnowledgeBase),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 409, response = crate::problem::Conflict),
        (status = 415, response = crate::problem::UnsupportedMediaType),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn create_base(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    let reach = reach(&who)?;
    let req: CreateBase = json_body(&headers, &body)?;
    let base = server.knowledge.create_base(reach, &req.name, req.description.as_deref().unwrap_or("")).await?;
    server.emit(audit(&server, &who, "knowledge.base.created", &base.id));
    Ok((StatusCode::CREATED, Json(base)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/knowledge/bases/{id}",
    operation_id = "getKnowledgeBase",
    tag = "knowledge",
    description = "One knowledge base. Another account's, or one outside the token's knowledge bases, is not found. \
        Scope `user-data`.",
    params(("id" = String, Path, description = "The knowledge base id, `kb_…`, or `default`")),
    security(("bearer" = ["user-data"])),
    responses(
        (status = 200, description = "The knowledge base", body = KnowledgeBase),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn get_base(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    Ok(Json(server.knowledge.base(reach(&who)?, &id).await?).into_response())
}

#[utoipa::path(
    patch,
    path = "/api/v1/knowledge/bases/{id}",
    operation_id = "updateKnowledgeBase",
    tag = "knowledge",
    description = "Renames a knowledge base and/or changes its description (409 when the new name is taken). \
        Scope `user-data`.",
    params(("id" = String, Path, description = "The knowledge base id, `kb_…`, or `default`")),
    request_body = UpdateBase,
    security(("bearer" = ["user-data"])),
    responses(
        (status = 200, description = "The knowledge base as changed", body = KnowledgeBase),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 409, response = crate::problem::Conflict),
        (status = 415, response = crate::problem::UnsupportedMediaType),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn update_base(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
    Body(body): Body,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    let reach = reach(&who)?;
    let req: UpdateBase = json_body(&headers, &body)?;
    let base = server.knowledge.update_base(reach, &id, req.name.as_deref(), req.description.as_deref()).await?;
    server.emit(audit(&server, &who, "knowledge.base.updated", &base.id));
    Ok(Json(base).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/knowledge/bases/{id}",
    operation_id = "deleteKnowledgeBase",
    tag = "knowledge",
    description = "Deletes a knowledge base and its documents. The default one cannot be deleted (409): make another \
        one the default first. Scope `user-data`.",
    params(("id" = String, Path, description = "The knowledge base id, `kb_…`")),
    security(("bearer" = ["user-data"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 409, response = crate::problem::Conflict),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn delete_base(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    let base = server.knowledge.delete_base(reach(&who)?, &id).await?;
    server.emit(audit(&server, &who, "knowledge.base.deleted", &base.id).detail("documents", base.document_count));
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/knowledge/bases/{id}/set-default",
    operation_id = "setDefaultKnowledgeBase",
    tag = "knowledge",
    description = "Makes this knowledge base the account's default (the one tools use when none is named; the \
        previous default becomes an ordinary, deletable one). A token limited to some knowledge bases cannot change \
        the default (403). Scope `user-data`.",
    params(("id" = String, Path, description = "The knowledge base id, `kb_…`")),
    security(("bearer" = ["user-data"])),
    responses(
        (status = 200, description = "The new default", body = KnowledgeBase),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn set_default(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    let base = server.knowledge.set_default(reach(&who)?, &id).await?;
    server.emit(audit(&server, &who, "knowledge.base.default_set", &base.id));
    Ok(Json(base).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/knowledge/bases/{id}/documents",
    operation_id = "listKnowledgeDocuments",
    tag = "knowledge",
    description = "A knowledge base's documents (without their text), newest first. Scope `user-data`.",
    params(("id" = String, Path, description = "The knowledge base id, `kb_…`, or `default`"), DocumentParams),
    security(("bearer" = ["user-data"])),
    responses(
        (status = 200, description = "A page of documents", body = DocumentList),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn list_documents(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
    QueryParams(p): QueryParams<DocumentParams>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let reach = reach(&who)?;
    let limit = number_param::<u32>("limit", p.limit.as_deref(), "a whole number from 1 to 100")?.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(Problem::invalid("limit", "limit must be a whole number from 1 to 100"));
    }
    let offset = number_param::<u64>("offset", p.offset.as_deref(), "a whole number from 0")?.unwrap_or(0);
    let (base, documents) = server.knowledge.documents(reach, &id, limit, offset).await?;
    Ok(Json(DocumentList { knowledge_base_id: base.id, documents, limit, offset }).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/knowledge/bases/{id}/documents",
    operation_id = "addKnowledgeDocument",
    tag = "knowledge",
    description = "Adds a document: its text, or a public https URL whose page (text/html, text/markdown or \
        text/plain) is fetched — never from this server's machine or private networks, every redirect checked \
        again, within a size and time limit, at most `knowledge.url_fetches_per_minute` an account (429) — and reduced \
        to text. Text over `knowledge.max_document_bytes` \
        answers 413, a base holding `knowledge.max_documents_per_base` 409; nothing is stored then. A URL that \
        cannot be fetched answers 502. Scope `user-data`.",
    params(("id" = String, Path, description = "The knowledge base id, `kb_…`, or `default`")),
    request_body = AddDocument,
    security(("bearer" = ["user-data"])),
    responses(
        (status = 201, description = "Added", body = DocumentSummary, links(
            ("get" = (operation_id = "getKnowledgeDocument",
                parameters(("id" = "$request.path.id"), ("documentId" = "$response.body#/id")),
                description = "Read the document added")),
            ("delete" = (operation_id = "deleteKnowledgeDocument",
                parameters(("id" = "$request.path.id"), ("documentId" = "$response.body#/id")),
                description = "Delete the document added"))
        )),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 409, response = crate::problem::Conflict),
        (status = 413, response = crate::problem::PayloadTooLarge),
        (status = 415, response = crate::problem::UnsupportedMediaType),
        (status = 429, response = crate::problem::TooManyRequests),
        (status = 502, response = crate::problem::BadGateway),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn add_document(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
    Body(body): Body,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    let reach = reach(&who)?;
    let req: AddDocument = json_body(&headers, &body)?;
    let source = match req.source_type.unwrap_or(SourceType::Text) {
        SourceType::Text => {
            if req.url.is_some() {
                return Err(Problem::invalid("url", "url is only for sourceType url"));
            }
            NewSource::Text(req.content.ok_or_else(|| Problem::invalid("content", "content is required"))?)
        }
        SourceType::Url => {
            if req.content.is_some() {
                return Err(Problem::invalid("content", "content is not taken with sourceType url"));
            }
            NewSource::Url(req.url.ok_or_else(|| Problem::invalid("url", "url is required for sourceType url"))?)
        }
    };
    let base = server.knowledge.base(reach, &id).await?;
    let doc = server.knowledge.add_document(reach, &base, NewDocument { title: req.title, source }).await?;
    let mut event = audit(&server, &who, "knowledge.document.added", &doc.id)
        .detail("knowledge_base_id", base.id.clone())
        .detail("source_type", doc.source_type.as_str())
        .detail("size", doc.size);
    if let Some(host) =
        doc.url.as_deref().and_then(|u| url::Url::parse(u).ok()).and_then(|u| u.host_str().map(str::to_owned))
    {
        event = event.detail("url_host", host);
    }
    server.emit(event);
    Ok((StatusCode::CREATED, Json(doc)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/knowledge/bases/{id}/documents/{documentId}",
    operation_id = "getKnowledgeDocument",
    tag = "knowledge",
    description = "One document with its text. Scope `user-data`.",
    params(
        ("id" = String, Path, description = "The knowledge base id, `kb_…`, or `default`"),
        ("documentId" = String, Path, description = "The document id, `doc_…`")
    ),
    security(("bearer" = ["user-data"])),
    responses(
        (status = 200, description = "The document", body = Document),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn get_document(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam((id, document_id)): PathParam<(String, String)>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    Ok(Json(server.knowledge.document(reach(&who)?, &id, &document_id).await?).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/knowledge/bases/{id}/documents/{documentId}",
    operation_id = "deleteKnowledgeDocument",
    tag = "knowledge",
    description = "Deletes a document. Scope `user-data`.",
    params(
        ("id" = String, Path, description = "The knowledge base id, `kb_…`, or `default`"),
        ("documentId" = String, Path, description = "The document id, `doc_…`")
    ),
    security(("bearer" = ["user-data"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn delete_document(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam((id, document_id)): PathParam<(String, String)>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    server.knowledge.delete_document(reach(&who)?, &id, &document_id).await?;
    server.emit(audit(&server, &who, "knowledge.document.deleted", &document_id));
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn search_params(p: &SearchParams) -> Result<(&str, u32), Problem> {
    let query = p.query.as_deref().ok_or_else(|| Problem::invalid("query", "query is required"))?;
    let limit = number_param::<u32>("limit", p.limit.as_deref(), "a whole number from 1 to 50")?.unwrap_or(10);
    Ok((query, limit))
}

#[utoipa::path(
    get,
    path = "/api/v1/knowledge/search",
    operation_id = "searchKnowledge",
    tag = "knowledge",
    description = "Full-text search of every knowledge base the caller may reach, best match first, each hit with a \
        snippet (matched words between `**`). The query is taken as plain words: search syntax has no effect and is \
        never an error. Scope `user-data`.",
    params(SearchParams),
    security(("bearer" = ["user-data"])),
    responses(
        (status = 200, description = "The hits", body = SearchResults),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn search_all(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    QueryParams(p): QueryParams<SearchParams>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let reach = reach(&who)?;
    let (query, limit) = search_params(&p)?;
    let results = server.knowledge.search(reach, None, query, limit).await?;
    Ok(Json(SearchResults { query: query.to_owned(), results }).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/knowledge/bases/{id}/search",
    operation_id = "searchKnowledgeBase",
    tag = "knowledge",
    description = "Full-text search of one knowledge base (as `searchKnowledge`). Scope `user-data`.",
    params(("id" = String, Path, description = "The knowledge base id, `kb_…`, or `default`"), SearchParams),
    security(("bearer" = ["user-data"])),
    responses(
        (status = 200, description = "The hits", body = SearchResults),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn search_base(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
    QueryParams(p): QueryParams<SearchParams>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let reach = reach(&who)?;
    let (query, limit) = search_params(&p)?;
    let base = server.knowledge.base(reach, &id).await?;
    let results = server.knowledge.search(reach, Some(&base), query, limit).await?;
    Ok(Json(SearchResults { query: query.to_owned(), results }).into_response())
}
