//! The keyring endpoint: the part of HashiCorp Vault's HTTP API that
//! database encryption plugins read keys with (KV version 2), served on the
//! same listener as the KMS API under `/v1/` (docs/integrations/mariadb.md).
//!
//! - `GET /v1/sys/mounts/<keyring id>/tune` → `{"options":{"version":"2"}, ...}`
//!   (MariaDB's `hashicorp_key_management` checks this at start);
//! - `GET /v1/<keyring id>/data/<key number>[?version=N]` →
//!   `{"data":{"data":{"data":"<hex key>"},"metadata":{"version":N,...}}}`,
//!   404 `{"errors":[]}` for a key or version the keyring does not have.
//!
//! Every request carries the keyring's token in `X-Vault-Token`. A missing
//! or wrong token, and a keyring that does not exist, are one answer: 403
//! `{"errors":["permission denied"]}`. A key the KMS path refuses (disabled
//! or deleted KMS key, frozen account, revoked grant, disabled product) is
//! 403 with the AWS error type and message; a store or HSM outage is 503.
//! The endpoint is read-only: keys are created and rotated with the
//! `KeywardenService` keyring operations.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use http::{header, HeaderValue, Method, StatusCode};
use keywarden_audit as audit;
use keywarden_core::ids::KeyringId;
use keywarden_core::ops::keyrings::KeyringReadError;
use serde_json::json;
use zeroize::Zeroizing;

use crate::error::ApiError;
use crate::http_server::AppState;

/// Tokens start with this, so they are recognisable in a leaked file.
const TOKEN_PREFIX: &str = "kwkr_";
/// Longest `X-Vault-Token` value looked at; longer ones are refused unread.
const MAX_TOKEN_LEN: usize = 256;

/// A keyring token: `kwkr_` and 64 hex digits (256 random bits). Shown once
/// to whoever created it; only its SHA-256 is stored.
pub struct KeyringToken(Zeroizing<String>);

impl KeyringToken {
    /// The token text.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its SHA-256, as stored.
    pub fn hash(&self) -> [u8; 32] {
        token_hash(self.0.as_bytes())
    }
}

impl std::fmt::Debug for KeyringToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyringToken(<redacted>)")
    }
}

/// A new random token.
pub fn new_token() -> Result<KeyringToken, ApiError> {
    let mut secret = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(secret.as_mut()).map_err(|_| {
        ApiError::Kms(keywarden_core::KmsError::Protector(
            keywarden_core::protector::ProtectorError::Crypto("random number generator"),
        ))
    })?;
    let mut text = Zeroizing::new(String::with_capacity(TOKEN_PREFIX.len() + 64));
    text.push_str(TOKEN_PREFIX);
    text.push_str(&Zeroizing::new(hex::encode(secret.as_ref())));
    Ok(KeyringToken(text))
}

fn token_hash(token: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The keyring's mount path, the path part of the URL a database plugin
/// is configured with (`http://host:port/v1/<keyring id>`).
pub fn mount_path(id: &KeyringId) -> String {
    format!("/v1/{id}")
}

/// What a request under `/v1/` asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Tune(&'a str),
    Key { mount: &'a str, key: &'a str },
    Other,
}

fn route(path: &str) -> Route<'_> {
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Route::Other;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["sys", "mounts", mount, "tune"] => Route::Tune(mount),
        [mount, "data", key] => Route::Key { mount, key },
        _ => Route::Other,
    }
}

/// `?version=N`: `None` for the newest (absent, or 0 as Vault reads it);
/// `Err` for anything but a decimal number.
fn requested_version(query: Option<&str>) -> Result<Option<u32>, ()> {
    let mut version = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "version" {
            if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            let n: u64 = value.parse().map_err(|_| ())?;
            let n = u32::try_from(n).map_err(|_| ())?;
            version = (n != 0).then_some(n);
        }
    }
    Ok(version)
}

/// A key number as MariaDB sends it: decimal, 1 to 4294967294. Anything
/// else names no key.
fn key_number(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = s.parse().ok()?;
    u32::try_from(n).ok().filter(|n| *n != 0 && *n != u32::MAX)
}

/// How a request ended, for the response, the access log and the audit log.
struct Answer {
    status: StatusCode,
    body: Zeroizing<Vec<u8>>,
    error_type: Option<&'static str>,
    /// The KMS key a successful read decrypted with, for the audit record.
    key_arn: Option<String>,
}

impl Answer {
    fn errors(status: StatusCode, errors: &[String], error_type: &'static str) -> Answer {
        Answer {
            status,
            body: Zeroizing::new(json!({ "errors": errors }).to_string().into_bytes()),
            error_type: Some(error_type),
            key_arn: None,
        }
    }

    fn denied() -> Answer {
        Answer::errors(
            StatusCode::FORBIDDEN,
            &["permission denied".to_owned()],
            "PermissionDenied",
        )
    }

    fn not_found() -> Answer {
        Answer::errors(StatusCode::NOT_FOUND, &[], "NotFound")
    }
}

/// Serves every request under `/v1/`.
pub(crate) async fn serve(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let request_id = crate::http_server::new_request_id();
    let started = Instant::now();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let (parts, _body) = req.into_parts();
    let mut facts = audit::Facts::default();
    let (operation, answer) = if state
        .audit
        .as_ref()
        .is_some_and(audit::AuditLog::is_failing)
    {
        (
            "Keyring",
            Answer::errors(
                StatusCode::SERVICE_UNAVAILABLE,
                &["audit log unavailable".to_owned()],
                "KMSInternalException",
            ),
        )
    } else {
        answer(&state, &parts, &request_id, &mut facts).await
    };
    let target = format!("Keyring.{operation}");
    let mut answer = answer;
    if let Some(log) = &state.audit {
        let outcome = if answer.status == StatusCode::OK {
            audit::Outcome::OkNamed(answer.key_arn.take())
        } else {
            audit::Outcome::Err {
                status: answer.status.as_u16(),
                error_type: answer.error_type.unwrap_or("Error"),
            }
        };
        log.record(audit::Entry::new(
            state.kms.clock().now().0,
            &request_id,
            &peer,
            target.clone(),
            &mut facts,
            outcome,
            log.context_values(),
        ))
        .await;
    }
    let elapsed_us = started.elapsed().as_micros() as u64;
    let principal = facts.authenticated_principal().to_owned();
    tracing::info!(target: "keywarden::access", %request_id, %peer, op = %target, %principal, status = answer.status.as_u16(), error_type = answer.error_type.unwrap_or(""), elapsed_us);
    // The body moves into hyper (no further copy); hyper's buffers are not
    // zeroized (SECURITY.md, known limitations).
    let mut response = Response::new(axum::body::Body::from(std::mem::take(&mut *answer.body)));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    response
}

async fn answer(
    state: &AppState,
    req: &http::request::Parts,
    request_id: &str,
    facts: &mut audit::Facts,
) -> (&'static str, Answer) {
    let route = route(req.uri.path());
    let operation = match route {
        Route::Tune(_) => "CheckMount",
        Route::Key { .. } => "ReadKey",
        Route::Other => "Unknown",
    };
    if req.method != Method::GET {
        return (
            operation,
            Answer::errors(
                StatusCode::METHOD_NOT_ALLOWED,
                &["the keyring endpoint is read-only: GET only; keys are created and rotated with the KeywardenService keyring operations".to_owned()],
                "MethodNotAllowed",
            ),
        );
    }
    let (mount, key) = match route {
        Route::Tune(mount) => (mount, None),
        Route::Key { mount, key } => (mount, Some(key)),
        Route::Other => {
            return (
                operation,
                Answer::errors(
                    StatusCode::NOT_FOUND,
                    &["unsupported path: the keyring endpoint serves /v1/sys/mounts/<keyring id>/tune and /v1/<keyring id>/data/<key number>".to_owned()],
                    "NotFound",
                ),
            )
        }
    };
    let Ok(id) = KeyringId::parse(mount) else {
        return (operation, Answer::denied());
    };
    facts.claimed_principal = format!("keyring/{id}");
    let token = match req.headers.get("x-vault-token").map(HeaderValue::as_bytes) {
        Some(t) if !t.is_empty() && t.len() <= MAX_TOKEN_LEN => t,
        _ => return (operation, Answer::denied()),
    };
    let keyring = match state
        .kms
        .authenticate_keyring(&id, &token_hash(token))
        .await
    {
        Ok(keyring) => keyring,
        Err(e) => return (operation, read_error(e)),
    };
    facts.authenticated = true;
    facts.account = Some(keyring.account_id.as_str().to_owned());
    facts.product = Some(keyring.product.as_str().to_owned());
    // Reads count against the account's cryptographic quota, like the
    // Decrypt each one is.
    if let Err(throttled) = state
        .quotas
        .check(&keyring.account_id, crate::limits::Budget::Crypto)
    {
        let err = ApiError::Throttled(throttled);
        return (
            operation,
            Answer::errors(
                StatusCode::TOO_MANY_REQUESTS,
                &[format!("{}: {}", err.aws_type(), err.message())],
                err.aws_type(),
            ),
        );
    }
    let Some(key) = key else {
        return (operation, mount_info());
    };
    let Ok(version) = requested_version(req.uri.query()) else {
        return (
            operation,
            Answer::errors(
                StatusCode::BAD_REQUEST,
                &["version must be a decimal number".to_owned()],
                "ValidationException",
            ),
        );
    };
    let Some(number) = key_number(key) else {
        return (operation, Answer::not_found());
    };
    match state
        .kms
        .read_keyring_key(&keyring, number, version, request_id)
        .await
    {
        Ok(read) => {
            let mut answer = key_answer(request_id, &read);
            answer.key_arn = Some(state.kms.keyring_key_arn(&keyring));
            (operation, answer)
        }
        Err(e) => (operation, read_error(e)),
    }
}

/// The mount check's answer: a KV version 2 mount.
fn mount_info() -> Answer {
    Answer {
        status: StatusCode::OK,
        body: Zeroizing::new(
            json!({
                "type": "kv",
                "description": "Keywarden keyring",
                "default_lease_ttl": 0,
                "max_lease_ttl": 0,
                "force_no_cache": false,
                "options": {"version": "2"},
            })
            .to_string()
            .into_bytes(),
        ),
        error_type: None,
        key_arn: None,
    }
}

/// A read's answer, in Vault's KV v2 shape. Serialized straight from a
/// borrowed zeroizing hex string into a zeroizing buffer: no other copy of
/// the key is made here.
fn key_answer(request_id: &str, read: &keywarden_core::ops::keyrings::KeyringRead) -> Answer {
    #[derive(serde::Serialize)]
    struct Secret<'a> {
        data: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Metadata {
        created_time: String,
        custom_metadata: Option<()>,
        deletion_time: &'static str,
        destroyed: bool,
        version: u32,
    }
    #[derive(serde::Serialize)]
    struct Data<'a> {
        data: Secret<'a>,
        metadata: Metadata,
    }
    #[derive(serde::Serialize)]
    struct Body<'a> {
        request_id: &'a str,
        lease_id: &'static str,
        renewable: bool,
        lease_duration: u64,
        data: Data<'a>,
        wrap_info: Option<()>,
        warnings: Option<()>,
        auth: Option<()>,
    }
    let hex_key = Zeroizing::new(hex::encode(read.data_key.expose()));
    let body = Body {
        request_id,
        lease_id: "",
        renewable: false,
        lease_duration: 0,
        data: Data {
            data: Secret { data: &hex_key },
            metadata: Metadata {
                created_time: rfc3339(read.created_at.0),
                custom_metadata: None,
                deletion_time: "",
                destroyed: false,
                version: read.version,
            },
        },
        wrap_info: None,
        warnings: None,
        auth: None,
    };
    let mut out = Zeroizing::new(Vec::with_capacity(512));
    match serde_json::to_writer(&mut *out, &body) {
        Ok(()) => Answer {
            status: StatusCode::OK,
            body: out,
            error_type: None,
            key_arn: None,
        },
        Err(_) => Answer::errors(
            StatusCode::INTERNAL_SERVER_ERROR,
            &["KMSInternalException: the answer could not be encoded".to_owned()],
            "KMSInternalException",
        ),
    }
}

/// A refused or failed read: 403 for what the KMS path refuses (with the
/// AWS error type, which MariaDB writes to its error log), 503 when a
/// dependency is down, 500 otherwise.
fn read_error(e: KeyringReadError) -> Answer {
    match e {
        KeyringReadError::Denied => Answer::denied(),
        KeyringReadError::NotFound => Answer::not_found(),
        KeyringReadError::Unavailable(e) | KeyringReadError::Kms(e) => {
            let err = ApiError::from(e);
            let message = format!("{}: {}", err.aws_type(), err.message());
            let status = match err.aws_type() {
                "DependencyTimeoutException" | "KeyUnavailableException" => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ if err.is_internal() => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::FORBIDDEN,
            };
            if err.is_internal() {
                tracing::error!(target: "keywarden::keyring", error = %err, "keyring read failed");
            }
            Answer::errors(status, &[message], err.aws_type())
        }
    }
}

fn rfc3339(millis: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/v1/sys/mounts/kr-1/tune"), Route::Tune("kr-1"));
        assert_eq!(
            route("/v1/kr-1/data/7"),
            Route::Key {
                mount: "kr-1",
                key: "7"
            }
        );
        assert_eq!(route("/v1/kr-1/metadata/7"), Route::Other);
        assert_eq!(route("/v1/kr-1/data/7/x"), Route::Other);
        assert_eq!(route("/v2/kr-1/data/7"), Route::Other);
    }

    #[test]
    fn versions_and_key_numbers() {
        assert_eq!(requested_version(None), Ok(None));
        assert_eq!(requested_version(Some("version=3")), Ok(Some(3)));
        assert_eq!(requested_version(Some("version=0")), Ok(None));
        assert_eq!(requested_version(Some("a=b&version=9")), Ok(Some(9)));
        assert!(requested_version(Some("version=-1")).is_err());
        assert!(requested_version(Some("version=4294967296")).is_err());
        assert!(requested_version(Some("version=")).is_err());
        assert_eq!(key_number("1"), Some(1));
        assert_eq!(key_number("4294967294"), Some(u32::MAX - 1));
        assert_eq!(key_number("4294967295"), None);
        assert_eq!(key_number("0"), None);
        assert_eq!(key_number("x"), None);
        assert_eq!(key_number("+1"), None);
    }

    #[test]
    fn refusals_and_outages_have_their_statuses() {
        use keywarden_core::store::StoreError;
        use keywarden_core::KmsError;
        let outage = || StoreError::Unavailable("connection refused".into());
        for (e, status, kind) in [
            (KeyringReadError::Denied, 403, "PermissionDenied"),
            (KeyringReadError::NotFound, 404, "NotFound"),
            (
                KeyringReadError::Unavailable(KmsError::Store(outage())),
                503,
                "DependencyTimeoutException",
            ),
            (
                KeyringReadError::Kms(KmsError::Store(outage())),
                503,
                "DependencyTimeoutException",
            ),
            (
                KeyringReadError::Kms(KmsError::KeyUnavailable("hsm down".into())),
                503,
                "KeyUnavailableException",
            ),
            (
                KeyringReadError::Kms(KmsError::Disabled("k is disabled.".into())),
                403,
                "DisabledException",
            ),
            (
                KeyringReadError::Kms(KmsError::Store(StoreError::Backend("disk".into()))),
                500,
                "KMSInternalException",
            ),
        ] {
            let answer = read_error(e);
            assert_eq!(answer.status.as_u16(), status, "{kind}");
            assert_eq!(answer.error_type, Some(kind));
        }
    }

    #[test]
    fn tokens_are_random_and_redacted() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose().len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(a.hash(), token_hash(a.expose().as_bytes()));
        assert!(!format!("{a:?}").contains(&a.expose()[TOKEN_PREFIX.len()..]));
    }
}
