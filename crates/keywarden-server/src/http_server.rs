//! HTTP plumbing: the router, the request pipeline (size limit, SigV4,
//! content type, operation dispatch), response and error rendering, and the
//! accept loop with optional TLS and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use http::{header, HeaderValue, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use keywarden_audit::{self as audit, AuditLog};
use keywarden_core::ids::KeyRef;
use keywarden_core::kms::RequestFacts;
use keywarden_core::ops::accounts::ActiveOwner;
use keywarden_core::ops::sessions::SessionRefusal;
use keywarden_core::{Caller, Kms, Namespace, Operation};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::error::ApiError;
use crate::handlers::{run, unknown_operation};
use crate::limits::{Budget, Limits, QuotaLimiter};
use crate::sigv4::{SignedRequest, Verifier};

/// Largest request body accepted. CreateKey's policy (up to 128 KiB of
/// text) is the largest field AWS defines; everything else is far smaller.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Splits an `X-Amz-Target` into its namespace and operation name
/// (keywarden-core's operation table). Each namespace only knows its own
/// operations (`Operation::from_target` answers `None` for the other's), so
/// an extension can never shadow an AWS operation of the same name, present
/// or future.
fn parse_target(target: &str) -> Option<(Namespace, &str)> {
    Namespace::split_target(target)
}

/// What every request handler shares.
pub struct AppState {
    /// The service.
    pub kms: Arc<Kms>,
    /// SigV4 verification for the configured region and service `kms`.
    pub verifier: Verifier,
    /// SigV4 verification for service `sts` (the STS Query API, `sts.rs`).
    pub sts_verifier: Verifier,
    /// Verifies IAM Query API requests (scope service `iam`).
    pub iam_verifier: Verifier,
    /// Request limits and per-account quotas (docs/limits.md).
    pub limits: Limits,
    /// The per-account request-rate limiter enforcing `limits.quotas`.
    pub quotas: QuotaLimiter,
    /// The audit log (docs/audit.md); `None` records nothing.
    pub audit: Option<AuditLog>,
}

impl AppState {
    /// State for `kms`, verifying signatures scoped to its region, with
    /// the default limits.
    pub fn new(kms: Arc<Kms>) -> Self {
        AppState::with_limits(kms, Limits::default())
    }

    /// State for `kms` with `limits`.
    pub fn with_limits(kms: Arc<Kms>, limits: Limits) -> Self {
        // Every served region is accepted in credential scopes; a KMS
        // request acts in its scope's region (docs/multi-region.md).
        let regions: Vec<String> = kms.config().regions().map(str::to_owned).collect();
        let skew = Duration::from_secs(15 * 60);
        AppState {
            kms,
            verifier: Verifier::for_regions(regions.clone(), "kms", skew),
            sts_verifier: Verifier::for_regions(regions.clone(), "sts", skew),
            iam_verifier: Verifier::for_regions(regions, "iam", skew),
            quotas: QuotaLimiter::new(&limits.quotas),
            limits,
            audit: None,
        }
    }

    /// Records every API request in `audit`, and refuses them while it
    /// cannot be written.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }
}

/// The application: `POST /` for the KMS API, `GET /healthz` without auth.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", post(api).fallback(not_found))
        .route("/healthz", get(healthz))
        .route("/v1/{*path}", any(crate::keyring_endpoint::serve))
        .fallback(not_found)
        .with_state(state)
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    if let Some(detail) = state.audit.as_ref().and_then(AuditLog::failure) {
        let body = serde_json::json!({
            "status": "unavailable",
            "failing": [{"sink": "audit", "error": detail}],
        });
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            body.to_string().into_bytes(),
            &new_request_id(),
        );
    }
    json_response(
        StatusCode::OK,
        br#"{"status":"ok"}"#.to_vec(),
        &new_request_id(),
    )
}

async fn not_found(req: Request) -> Response {
    let err = ApiError::NotFound(format!(
        "No API at {} {}; the KMS API is POST / with an X-Amz-Target header",
        req.method(),
        keywarden_core::ids::truncate_for_message(req.uri().path())
    ));
    error_response(&err, &new_request_id())
}

/// Request ids look like UUIDs: a random 64-bit prefix drawn once per
/// process and a counter. Unique within and (with overwhelming probability)
/// across processes, and free of a random-number syscall per request.
pub(crate) fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        prefix >> 32,
        (prefix >> 16) & 0xffff,
        prefix & 0xffff,
        (n >> 48) & 0xffff,
        n & 0xffff_ffff_ffff
    )
}

async fn api(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let request_id = new_request_id();
    let started = Instant::now();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // A credential scoped to `sts` or `iam` is a request of that Query API
    // on the same endpoint (sts.rs, iam.rs): XML answers and errors.
    let protocol = match crate::sigv4::scope_service(req.headers()) {
        Some("sts") => Protocol::StsQuery,
        Some("iam") => Protocol::IamQuery,
        _ => Protocol::KmsJson,
    };
    let mut op = parse_target(&target).map_or("", |(_, op)| op).to_owned();
    let mut facts = audit::Facts::default();
    // Fail closed: a request that cannot be recorded is not served.
    let result = if state.audit.as_ref().is_some_and(AuditLog::is_failing) {
        Err(ApiError::AuditUnavailable)
    } else {
        match protocol {
            Protocol::KmsJson => handle(&state, req, &request_id, &mut facts).await,
            Protocol::StsQuery | Protocol::IamQuery => {
                handle_query(&state, protocol, req, &request_id, &mut facts).await
            }
        }
    };
    let sts_action = match protocol {
        Protocol::StsQuery => Some(crate::sts::action_name(
            facts.body.as_deref().unwrap_or_default(),
        )),
        Protocol::IamQuery => Some(crate::iam::action_name(
            facts.body.as_deref().unwrap_or_default(),
        )),
        Protocol::KmsJson => None,
    };
    if let Some(action) = &sts_action {
        op.clone_from(action);
    }
    if let Err(
        ApiError::Kms(keywarden_core::KmsError::AccessDenied(message))
        | ApiError::Iam(keywarden_core::ops::iam::IamError::AccessDenied(message)),
    ) = &result
    {
        facts.denied_by = keywarden_core::policy::denial_kind(message);
    }
    if let Some(log) = &state.audit {
        let outcome = match &result {
            Ok(body) => audit::Outcome::Ok(body),
            Err(e) => audit::Outcome::Err {
                status: e.status().as_u16(),
                error_type: e.aws_type(),
            },
        };
        let time_ms = state.kms.clock().now().0;
        // A served operation is recorded under its table name
        // (`Operation::audit_name`, the full target it was sent as);
        // anything else exactly as sent, so refusals stay traceable.
        let operation = match &sts_action {
            Some(action) => action.clone(),
            None => {
                Operation::parse_target(&target).map_or(target, |op| op.audit_name().to_owned())
            }
        };
        log.record(audit::Entry::new(
            time_ms,
            &request_id,
            &peer,
            operation,
            &mut facts,
            outcome,
            log.context_values(),
        ))
        .await;
    }
    let principal = facts.authenticated_principal();
    let elapsed_us = started.elapsed().as_micros() as u64;
    match result {
        Ok(body) => {
            tracing::info!(target: "keywarden::access", %request_id, %peer, op = %op, %principal, status = 200, elapsed_us);
            match protocol {
                Protocol::KmsJson => json_response(StatusCode::OK, body, &request_id),
                Protocol::StsQuery | Protocol::IamQuery => {
                    xml_response(StatusCode::OK, body, &request_id)
                }
            }
        }
        Err(err) => {
            if err.is_internal() {
                tracing::error!(target: "keywarden::access", %request_id, %peer, op = %op, %principal, status = err.status().as_u16(), error = %err, elapsed_us, "internal error");
            } else {
                tracing::info!(target: "keywarden::access", %request_id, %peer, op = %op, %principal, status = err.status().as_u16(), error_type = err.aws_type(), elapsed_us);
            }
            match protocol {
                Protocol::KmsJson => error_response(&err, &request_id),
                Protocol::StsQuery => xml_response(
                    err.status(),
                    crate::sts::error_body(&err, &request_id, crate::sts::XMLNS),
                    &request_id,
                ),
                Protocol::IamQuery => xml_response(
                    err.status(),
                    crate::sts::error_body(&err, &request_id, crate::iam::XMLNS),
                    &request_id,
                ),
            }
        }
    }
}

/// The two wire protocols on `POST /`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// The KMS API: AWS JSON 1.1 with `X-Amz-Target`.
    KmsJson,
    /// The STS API: AWS's Query protocol (form body, XML answers).
    StsQuery,
    /// The IAM API: AWS's Query protocol.
    IamQuery,
}

/// Authenticates `parts`/`body` against `verifier`: the credential's owner
/// and the parsed authorization. Shared by both protocols, so both refuse
/// the same way before looking at anything else.
async fn authenticate(
    state: &AppState,
    verifier: &Verifier,
    parts: &http::request::Parts,
    body: &[u8],
    facts: &mut audit::Facts,
) -> Result<(crate::sigv4::ParsedAuth, ActiveOwner), ApiError> {
    let signed = SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        body,
    };
    let auth = verifier.parse(&signed)?;
    facts.claimed_principal.clone_from(&auth.access_key_id);
    let credential = match parts.headers.get("x-amz-security-token") {
        // Temporary credentials of a role session (STS AssumeRole): the
        // token carries the session, sealed under the root key.
        Some(token) => {
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD
                .decode(token.as_bytes())
                .map_err(|_| ApiError::UnrecognizedClient)?;
            match state
                .kms
                .session_credential(&auth.access_key_id, &token)
                .await?
            {
                Ok(credential) => credential,
                Err(SessionRefusal::Expired) => return Err(ApiError::ExpiredToken),
                Err(SessionRefusal::Invalid) => return Err(ApiError::UnrecognizedClient),
            }
        }
        None => state
            .kms
            .credential_secret(&auth.access_key_id)
            .await?
            .ok_or(ApiError::UnrecognizedClient)?,
    };
    // A session's access key id is only valid with its token.
    if matches!(credential.owner, ActiveOwner::RoleSession { .. })
        && !parts.headers.contains_key("x-amz-security-token")
    {
        return Err(ApiError::UnrecognizedClient);
    }
    let now = UNIX_EPOCH + Duration::from_millis(state.kms.clock().now().0.max(0) as u64);
    verifier.verify(&signed, &auth, credential.secret().expose(), now)?;
    facts.authenticated = true;
    if state.audit.is_some() {
        facts.principal_arn = Some(principal_arn(&state.kms, &credential.owner));
    }
    Ok((auth, credential.owner.clone()))
}

/// The STS and IAM Query APIs (sts.rs, iam.rs): authenticate with the
/// service's scope, check the form content type, charge a management
/// request, run the action.
async fn handle_query(
    state: &AppState,
    protocol: Protocol,
    req: Request,
    request_id: &str,
    facts: &mut audit::Facts,
) -> Result<Vec<u8>, ApiError> {
    let (mut parts, body) = req.into_parts();
    if !parts.headers.contains_key(header::HOST) {
        if let Some(value) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, value);
        }
    }
    let body = crate::limits::read_body(&parts.headers, body, &state.limits).await?;
    facts.body = Some(body.clone());
    let verifier = if protocol == Protocol::IamQuery {
        &state.iam_verifier
    } else {
        &state.sts_verifier
    };
    let (auth, owner) = authenticate(state, verifier, &parts, &body, facts).await?;
    let mime = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    if !mime.eq_ignore_ascii_case(crate::query::FORM_CONTENT_TYPE) {
        return Err(ApiError::Query {
            code: "InvalidParameterValue",
            message: format!("Content-Type must be {}", crate::query::FORM_CONTENT_TYPE),
        });
    }
    let account = match &owner {
        ActiveOwner::Account(account) => account.clone(),
        ActiveOwner::User(user) => user.account_id.clone(),
        ActiveOwner::RoleSession { role, .. } => role.account_id.clone(),
        ActiveOwner::Product(_) => {
            keywarden_core::ids::AccountId::parse(keywarden_core::ids::PRODUCT_SERVICE_ACCOUNT)?
        }
    };
    facts.account = Some(account.as_str().to_owned());
    state
        .quotas
        .check(&account, Budget::UNKNOWN)
        .map_err(ApiError::Throttled)?;
    let caller = account_caller(
        &owner,
        &auth.access_key_id,
        request_id,
        &request_facts(&parts),
    );
    match protocol {
        Protocol::IamQuery => {
            crate::iam::run(&state.kms, &owner, caller.as_ref(), &body, request_id).await
        }
        _ => {
            crate::sts::run(
                &state.kms,
                &owner,
                caller.as_ref(),
                &auth.access_key_id,
                &body,
                request_id,
            )
            .await
        }
    }
}

/// Whether a request's connection is TLS, set by [`serve`] on every
/// request it hands on (`aws:SecureTransport`).
#[derive(Clone, Copy)]
struct SecureTransport(bool);

/// The facts of a request that condition keys describe: the TCP peer's
/// address (never `X-Forwarded-For`, which the client writes) and whether
/// it came over TLS. Without them (a router driven without [`serve`])
/// the keys are absent.
fn request_facts(parts: &http::request::Parts) -> RequestFacts {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
    let tls = parts.extensions.get::<SecureTransport>();
    match (peer, tls) {
        // An IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d;
        // policies name it as a.b.c.d.
        (Some(peer), Some(tls)) => RequestFacts::network(peer.0.ip().to_canonical(), tls.0),
        _ => RequestFacts::default(),
    }
}

/// The ARN of whoever `owner` is, for audit records.
fn principal_arn(kms: &Kms, owner: &ActiveOwner) -> String {
    let partition = &kms.config().partition;
    match owner {
        ActiveOwner::Account(account) => format!("arn:{partition}:iam::{account}:root"),
        ActiveOwner::User(user) => kms.user_arn(user),
        ActiveOwner::RoleSession {
            role, session_name, ..
        } => kms.assumed_role_arn(role, session_name),
        ActiveOwner::Product(product) => {
            keywarden_core::ids::product_principal_arn(partition, &product.code)
        }
    }
}

/// The caller an account's root, one of its IAM users or a role session
/// is; `None` for a product (whose caller depends on the key it names).
fn account_caller(
    owner: &ActiveOwner,
    access_key_id: &str,
    request_id: &str,
    facts: &RequestFacts,
) -> Option<Caller> {
    let (account_id, identity) = match owner {
        ActiveOwner::Account(account) => (account.clone(), keywarden_core::kms::Identity::Root),
        ActiveOwner::User(user) => (
            user.account_id.clone(),
            keywarden_core::kms::Identity::User(Arc::new(user.clone())),
        ),
        ActiveOwner::RoleSession {
            role, session_name, ..
        } => (
            role.account_id.clone(),
            keywarden_core::kms::Identity::RoleSession {
                role: Arc::new(role.clone()),
                session_name: session_name.clone(),
            },
        ),
        ActiveOwner::Product(_) => return None,
    };
    Some(Caller {
        account_id,
        principal: access_key_id.to_owned(),
        identity,
        product: None,
        request_id: request_id.to_owned(),
        facts: facts.clone(),
        region: None,
    })
}

async fn handle(
    state: &AppState,
    req: Request,
    request_id: &str,
    facts: &mut audit::Facts,
) -> Result<Vec<u8>, ApiError> {
    let (mut parts, body) = req.into_parts();
    // HTTP/2 carries the host in the :authority pseudo-header, which hyper
    // puts in the URI; clients sign it as `host`.
    if !parts.headers.contains_key(header::HOST) {
        if let Some(value) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, value);
        }
    }
    let body = crate::limits::read_body(&parts.headers, body, &state.limits).await?;
    facts.body = Some(body.clone());

    // Authenticate before looking at anything else, so unauthenticated
    // callers learn nothing about operations or keys.
    let (auth, owner) = authenticate(state, &state.verifier, &parts, &body, facts).await?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case(JSON_CONTENT_TYPE)
        && !mime.eq_ignore_ascii_case("application/json")
    {
        return Err(ApiError::Serialization(format!(
            "Content-Type must be {JSON_CONTENT_TYPE}"
        )));
    }
    let target = parts
        .headers
        .get("x-amz-target")
        .ok_or_else(|| ApiError::UnknownOperation("Missing X-Amz-Target header".into()))?
        .to_str()
        .map_err(|_| ApiError::UnknownOperation("Malformed X-Amz-Target header".into()))?;
    let (namespace, op) = parse_target(target).ok_or_else(|| {
        ApiError::UnknownOperation(format!(
            "X-Amz-Target must be {}.<Operation> or {}.<Operation>, got {}",
            Namespace::Trent.prefix(),
            Namespace::Keywarden.prefix(),
            keywarden_core::ids::truncate_for_message(target)
        ))
    })?;
    // `None` is answered `UnknownOperationException` after the quota, as
    // every request is charged once it is authenticated.
    let operation = Operation::from_target(namespace, op);
    let request_facts = request_facts(&parts);
    let caller = match &owner {
        ActiveOwner::Account(_) | ActiveOwner::User(_) | ActiveOwner::RoleSession { .. } => {
            let mut caller =
                account_caller(&owner, &auth.access_key_id, request_id, &request_facts)
                    .ok_or(ApiError::UnrecognizedClient)?;
            // The region of the credential scope (one the verifier serves):
            // keys and aliases are looked up there.
            caller.region = state.kms.config().region_tag(auth.region());
            caller
        }
        ActiveOwner::Product(product) => {
            // Products call only AWS operations, for the account their key
            // ARNs name (docs/products.md); an extension's full target name
            // is never one of them, and the refusal names it.
            let extension;
            let operation = match namespace {
                Namespace::Trent => op,
                Namespace::Keywarden => {
                    extension = format!("{}.{op}", Namespace::Keywarden.prefix());
                    extension.as_str()
                }
            };
            state.kms.product_may_call(product, operation)?;
            let refs = product_key_refs(&body, &state.kms.config().region, operation)?;
            let mut caller = match refs.blob {
                // A Decrypt naming no key acts for the blob's key's account.
                Some(blob) if refs.keys.is_empty() => {
                    state
                        .kms
                        .product_blob_caller(product, &auth.access_key_id, request_id, &blob)
                        .await?
                }
                _ => {
                    let keys: Vec<&KeyRef> = refs.keys.iter().collect();
                    state.kms.product_caller(
                        product,
                        &auth.access_key_id,
                        request_id,
                        operation,
                        &keys,
                    )?
                }
            };
            caller.facts = request_facts;
            caller
        }
    };
    facts.account = Some(caller.account_id.as_str().to_owned());
    facts.product = caller.product.as_ref().map(|p| p.code.as_str().to_owned());
    state
        .quotas
        .check(
            &caller.account_id,
            operation.map_or(Budget::UNKNOWN, Budget::of),
        )
        .map_err(ApiError::Throttled)?;
    match operation {
        Some(operation) => run(&state.kms, &caller, operation, &body).await,
        None => Err(unknown_operation(op)),
    }
}

fn json_response(status: StatusCode, body: Vec<u8>, request_id: &str) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

fn xml_response(status: StatusCode, body: Vec<u8>, request_id: &str) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

fn error_response(err: &ApiError, request_id: &str) -> Response {
    let body = serde_json::to_vec(&serde_json::json!({
        "__type": err.aws_type(),
        "message": err.message(),
    }))
    .expect("error bodies serialise");
    let mut resp = json_response(err.status(), body, request_id);
    resp.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(err.aws_type()));
    resp
}

/// Builds a rustls server configuration from PEM files.
pub fn load_tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("reading certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("parsing certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("reading private key {}: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS configuration: {e}"))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("TLS certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until
/// `shutdown` completes, then lets in-flight requests finish for up to 10
/// seconds. `limits` bounds connections, request heads and slow clients.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    shutdown: impl Future<Output = ()>,
    limits: &Limits,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    crate::limits::configure_connections(&mut builder, limits);
    let builder = Arc::new(builder);
    let gate = crate::limits::ConnectionGate::new(limits);
    tokio::pin!(shutdown);
    loop {
        // At the cap, connections wait in the listen backlog until one ends.
        let permit = tokio::select! {
            permit = gate.admit() => permit,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and similar: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let first_request = permit.first_request();
        let tls = SecureTransport(acceptor.is_some());
        let service = app.clone().map_request(move |mut req: Request<_>| {
            first_request.arrived();
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(tls);
            req
        });
        let service = TowerToHyperService::new(
            service.map_request(|req: Request<hyper::body::Incoming>| req.map(Body::new)),
        );
        let builder = builder.clone();
        match &acceptor {
            None => {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(permit.serve(conn));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    // Held from accept: a connection in its TLS handshake counts.
                    let permit = permit;
                    let tls = match tokio::time::timeout(
                        Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let conn = builder
                        .serve_connection(TokioIo::new(tls), service)
                        .into_owned();
                    permit.serve(watcher.watch(conn)).await;
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("in-flight connections did not finish within 10 s of shutdown");
        }
    }
    Ok(())
}

/// Every key a product's request names (`KeyId`, `SourceKeyId`,
/// `DestinationKeyId`, and the key a RetireGrant `GrantToken` names),
/// parsed as the handlers will parse them.
/// The keys a product's request names, and for a `Decrypt` its ciphertext
/// blob (decoded), from which a request naming no key finds its account.
struct ProductRefs {
    keys: Vec<KeyRef>,
    blob: Option<Vec<u8>>,
}

fn product_key_refs(body: &[u8], region: &str, operation: &str) -> Result<ProductRefs, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::Serialization("The request body is not valid JSON".into()))?;
    let blob = match value.get("CiphertextBlob") {
        Some(serde_json::Value::String(b64)) if operation == "Decrypt" => {
            use base64::Engine as _;
            Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| {
                        ApiError::Serialization(
                            "CiphertextBlob is not a valid base64-encoded string".into(),
                        )
                    })?,
            )
        }
        _ => None,
    };
    let mut keys = Vec::new();
    for field in ["KeyId", "SourceKeyId", "DestinationKeyId"] {
        if let Some(serde_json::Value::String(s)) = value.get(field) {
            keys.push(KeyRef::parse(s)?);
        }
    }
    if let Some(serde_json::Value::String(token)) = value.get("GrantToken") {
        let (account, key, _) = keywarden_core::ops::grants::parse_grant_token(token)?;
        keys.push(KeyRef::KeyArn {
            region: region.to_owned(),
            account: account.as_str().to_owned(),
            key,
        });
    }
    Ok(ProductRefs { keys, blob })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_route_to_their_namespace() {
        assert_eq!(
            parse_target("TrentService.Encrypt"),
            Some((Namespace::Trent, "Encrypt"))
        );
        assert_eq!(
            parse_target("KeywardenService.EnableKeyDeletionProtection"),
            Some((Namespace::Keywarden, "EnableKeyDeletionProtection"))
        );
        for bad in [
            "",
            "Encrypt",
            "trentservice.Encrypt",
            "KeywardenServiceEncrypt",
            "Keywarden.Encrypt",
        ] {
            assert_eq!(parse_target(bad), None, "{bad:?}");
        }
    }

    fn parts_with(peer: Option<&str>, tls: Option<bool>) -> http::request::Parts {
        let mut req = http::Request::new(());
        if let Some(peer) = peer {
            let addr: SocketAddr = peer.parse().unwrap();
            req.extensions_mut().insert(ConnectInfo(addr));
        }
        if let Some(tls) = tls {
            req.extensions_mut().insert(SecureTransport(tls));
        }
        req.into_parts().0
    }

    #[test]
    fn request_facts_are_the_peer_and_the_listener() {
        let facts = request_facts(&parts_with(Some("192.0.2.7:40000"), Some(true)));
        assert_eq!(facts.source_ip, Some("192.0.2.7".parse().unwrap()));
        assert_eq!(facts.secure_transport, Some(true));
        // An IPv4 client of a dual-stack listener is its IPv4 address.
        let facts = request_facts(&parts_with(Some("[::ffff:10.1.2.3]:5000"), Some(false)));
        assert_eq!(facts.source_ip, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(facts.secure_transport, Some(false));
        let facts = request_facts(&parts_with(Some("[2001:db8::1]:443"), Some(true)));
        assert_eq!(facts.source_ip, Some("2001:db8::1".parse().unwrap()));
        // Not served by `serve`: no facts rather than made-up ones.
        assert_eq!(
            request_facts(&parts_with(None, None)),
            RequestFacts::default()
        );
        assert_eq!(
            request_facts(&parts_with(Some("192.0.2.7:1"), None)),
            RequestFacts::default()
        );
    }
}
