//! Server-side verification of AWS Signature Version 4 (header authentication).
//!
//! Keywarden speaks the AWS KMS JSON 1.1 protocol, so clients sign their
//! requests with SigV4 and put the result in the `Authorization` header:
//!
//! ```text
//! Authorization: AWS4-HMAC-SHA256 Credential=AKID/20261128/us-east-1/kms/aws4_request,
//!                SignedHeaders=content-type;host;x-amz-date;x-amz-target,
//!                Signature=<64 hex digits>
//! ```
//!
//! Verification is split in two steps so that the caller can look up the
//! secret access key in between:
//!
//! 1. [`Verifier::parse`] reads the `Authorization` header and the request
//!    timestamp (`X-Amz-Date`, or `Date` when `X-Amz-Date` is absent) and
//!    checks the credential scope and the list of signed headers. It needs no
//!    secret; the caller uses [`ParsedAuth::access_key_id`] to find one.
//! 2. [`Verifier::verify`] checks the clock skew, the optional
//!    `x-amz-content-sha256` header, rebuilds the canonical request and
//!    compares the signature in constant time.
//!
//! The canonical request follows the SigV4 rules for services other than S3:
//! the path is normalised (dot segments and empty segments removed) and each
//! segment of the path *as received* is percent-encoded again (so `%20`
//! becomes `%2520`); query parameters are decoded, re-encoded per RFC 3986 and
//! sorted; header values are trimmed with runs of spaces collapsed; the
//! payload hash is always the SHA-256 of the received body.
//!
//! Not supported: presigned URLs (query-string authentication), chunked
//! (`STREAMING-...`) payloads and unsigned payloads. Those requests fail with
//! [`AuthError::Missing`] or [`AuthError::Signature`] respectively.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::{digest, hmac};
use http::header::{AUTHORIZATION, DATE};
use http::HeaderMap;
use subtle::ConstantTimeEq;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// The only signing algorithm accepted.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The last element of every SigV4 credential scope.
const TERMINATOR: &str = "aws4_request";
/// Name of the SigV4 timestamp header.
const X_AMZ_DATE: &str = "x-amz-date";
/// Name of the header carrying the client's payload hash.
const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";
/// Payload-hash value a client uses to opt out of body signing.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Longest `Authorization` header we are willing to parse. Real ones are a few
/// hundred bytes; this bounds the work an unauthenticated client can cause.
const MAX_AUTHORIZATION_LEN: usize = 16 * 1024;
/// The signing-key cache is cleared when it reaches this many entries.
const MAX_CACHE_ENTRIES: usize = 10_000;
/// Longest piece of client input echoed back in an error message.
const MAX_ECHO_CHARS: usize = 64;
/// AWS's message for a signature that does not match.
const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the \
     signature you provided. Check your AWS Secret Access Key and signing method. Consult the \
     service documentation for details.";

/// Request parts needed for verification.
///
/// All fields are borrowed from the incoming request; nothing is copied until
/// verification needs it.
#[derive(Clone, Copy)]
pub struct SignedRequest<'a> {
    /// HTTP method as received, e.g. `"POST"`.
    pub method: &'a str,
    /// Raw path as received (still percent-encoded), e.g. `"/"`.
    pub path: &'a str,
    /// Raw query string without the leading `?`, if the request had one.
    pub query: Option<&'a str>,
    /// All request headers. Over HTTP/2 the caller must make sure `host` is
    /// present (copied from `:authority`), because clients sign `host`.
    pub headers: &'a HeaderMap,
    /// The complete request body.
    pub body: &'a [u8],
}

/// What the `Authorization` header says (parsed and scope-checked, not yet
/// verified).
///
/// Produced by [`Verifier::parse`]; pass it to [`Verifier::verify`] together
/// with the secret access key that belongs to [`ParsedAuth::access_key_id`].
#[derive(Clone)]
pub struct ParsedAuth {
    /// The access key id from the credential scope. Not authenticated until
    /// [`Verifier::verify`] succeeds.
    pub access_key_id: String,
    /// `YYYYMMDD` from the credential scope (equal to the date of `amz_date`).
    scope_date: String,
    /// Region from the credential scope.
    region: String,
    /// Service from the credential scope.
    service: String,
    /// Lowercase header names, in the order the client listed them.
    signed_headers: Vec<String>,
    /// The signature as sent by the client (hex, not yet validated).
    signature: String,
    /// Request timestamp in the `YYYYMMDD'T'HHMMSS'Z'` form used for signing.
    amz_date: String,
    /// Request timestamp as seconds since the Unix epoch.
    request_time: i64,
}

impl ParsedAuth {
    /// The region of the credential scope: one the verifier serves.
    pub fn region(&self) -> &str {
        &self.region
    }
}

impl fmt::Debug for ParsedAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The signature is left out: within the skew window it is a bearer
        // credential for this exact request.
        f.debug_struct("ParsedAuth")
            .field("access_key_id", &self.access_key_id)
            .field("scope_date", &self.scope_date)
            .field("region", &self.region)
            .field("service", &self.service)
            .field("signed_headers", &self.signed_headers)
            .field("amz_date", &self.amz_date)
            .finish_non_exhaustive()
    }
}

/// Why a request was not authenticated.
///
/// [`AuthError::aws_type`] and [`AuthError::message`] give the `__type` and
/// `message` of the AWS JSON error response. Messages never contain secret
/// material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request has no `Authorization` header.
    #[error("Missing Authentication Token")]
    Missing,
    /// The `Authorization` header or the request timestamp is malformed or
    /// incomplete.
    #[error("{0}")]
    Incomplete(String),
    /// The signature does not match, or the credential scope, clock skew or
    /// payload hash is wrong.
    #[error("{0}")]
    Signature(String),
}

impl AuthError {
    /// The AWS error type (`__type`) for this error.
    pub fn aws_type(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::Incomplete(_) => "IncompleteSignatureException",
            AuthError::Signature(_) => "InvalidSignatureException",
        }
    }

    /// The human-readable message for the AWS error response.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// The service a request's SigV4 credential scope names (`kms`, `sts`,
/// ...), read from its `Authorization` header without verifying anything:
/// it only chooses which verifier and protocol handle the request. `None`
/// when there is no well-formed header; the verifier then says what is
/// wrong.
pub fn scope_service(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let header = parse_authorization(value).ok()?;
    header.credential.split('/').nth(3)
}

/// Verifies SigV4 signatures for one service in the regions a deployment
/// serves (docs/multi-region.md).
///
/// Holds a small cache of derived signing keys, so share one `Verifier`
/// (e.g. in an `Arc`) across requests. It is `Send + Sync`.
pub struct Verifier {
    /// The regions accepted in credential scopes, the home region first.
    regions: Vec<String>,
    service: String,
    max_skew: Duration,
    cache: Mutex<HashMap<CacheKey, SigningKey>>,
}

/// Cache key for derived signing keys. The secret is represented by its
/// SHA-256 so that a different secret for the same access key id never hits a
/// key derived from another secret.
#[derive(PartialEq, Eq, Hash)]
struct CacheKey {
    access_key_id: String,
    scope_date: String,
    /// The region's position in the verifier's list (no string per
    /// request).
    region: usize,
    secret_digest: [u8; 32],
}

/// A derived SigV4 signing key, ready for HMAC. Deliberately not `Debug`.
#[derive(Clone)]
struct SigningKey(hmac::Key);

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("regions", &self.regions)
            .field("service", &self.service)
            .field("max_skew", &self.max_skew)
            .field("cached_keys", &self.lock_cache().len())
            .finish()
    }
}

impl Verifier {
    /// Creates a verifier for `region` and `service` (e.g. `"us-east-1"`,
    /// `"kms"`) that accepts request timestamps at most `max_skew` away from
    /// the current time in either direction (AWS uses 15 minutes).
    pub fn new(region: impl Into<String>, service: impl Into<String>, max_skew: Duration) -> Self {
        Verifier::for_regions(vec![region.into()], service, max_skew)
    }

    /// A verifier accepting credential scopes of any of `regions` (the
    /// home region first; a deployment serving several regions).
    pub fn for_regions(
        regions: Vec<String>,
        service: impl Into<String>,
        max_skew: Duration,
    ) -> Self {
        Verifier {
            regions,
            service: service.into(),
            max_skew,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn serves(&self, region: &str) -> bool {
        self.regions.iter().any(|r| r == region)
    }

    /// Parses the `Authorization` header and the `X-Amz-Date` (or `Date`)
    /// header.
    ///
    /// Checks the credential scope (region, service, `aws4_request`, and that
    /// the scope date equals the date of the request timestamp), that `host`
    /// is a signed header, and that `x-amz-date` is signed when present. Does
    /// not need the secret and does not look at the clock.
    pub fn parse(&self, req: &SignedRequest<'_>) -> Result<ParsedAuth, AuthError> {
        let Some(authorization) =
            single_header(req.headers, AUTHORIZATION.as_str(), "Authorization")?
        else {
            return Err(AuthError::Missing);
        };
        let header = parse_authorization(authorization)?;
        let timestamp = request_timestamp(req.headers)?;

        let parts: Vec<&str> = header.credential.split('/').collect();
        let [access_key_id, scope_date, region, service, terminator] = parts[..] else {
            return Err(AuthError::Incomplete(format!(
                "Credential must have exactly 5 slash-separated parts \
                 (access key id/date/region/service/aws4_request), not {}.",
                parts.len()
            )));
        };
        if access_key_id.is_empty() {
            return Err(AuthError::Incomplete(
                "Credential must start with a non-empty access key id.".to_owned(),
            ));
        }
        if !self.serves(region) {
            let served = match &self.regions[..] {
                [one] => format!("This server's region is '{one}' (keywarden serve --region)"),
                many => format!(
                    "This server's regions are '{}' (keywarden serve --region and --regions)",
                    many.join("', '")
                ),
            };
            return Err(AuthError::Signature(format!(
                "Credential should be scoped to a valid region. {served}; the request is signed \
                 for '{}'. ",
                echo(region)
            )));
        }
        if service != self.service {
            return Err(AuthError::Signature(format!(
                "Credential should be scoped to correct service: '{}'. ",
                self.service
            )));
        }
        if terminator != TERMINATOR {
            return Err(AuthError::Signature(format!(
                "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{}'. ",
                echo(terminator)
            )));
        }
        if scope_date != timestamp.date_part() {
            return Err(AuthError::Signature(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
                 from HTTP: '{}' != '{}', from '{}'.",
                echo(scope_date),
                timestamp.date_part(),
                timestamp.amz_date
            )));
        }

        let signed_headers = parse_signed_headers(header.signed_headers)?;
        if !signed_headers.iter().any(|h| h == "host") {
            return Err(AuthError::Signature(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
                    .to_owned(),
            ));
        }
        if timestamp.from_x_amz_date && !signed_headers.iter().any(|h| h == X_AMZ_DATE) {
            return Err(AuthError::Signature(
                "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.".to_owned(),
            ));
        }

        Ok(ParsedAuth {
            access_key_id: access_key_id.to_owned(),
            scope_date: scope_date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            signed_headers,
            signature: header.signature.to_owned(),
            amz_date: timestamp.amz_date,
            request_time: timestamp.unix_seconds,
        })
    }

    /// Verifies the signature of `req` with the secret access key `secret`
    /// (the raw secret, without the `AWS4` prefix) at the current time `now`.
    ///
    /// `auth` must come from [`Verifier::parse`] on the same request. The
    /// request timestamp may differ from `now` by at most `max_skew` in either
    /// direction.
    pub fn verify(
        &self,
        req: &SignedRequest<'_>,
        auth: &ParsedAuth,
        secret: &[u8],
        now: SystemTime,
    ) -> Result<(), AuthError> {
        // `auth` can only be built by `parse`, but possibly by a verifier for
        // another region or service.
        if !self.serves(&auth.region) || auth.service != self.service {
            return Err(AuthError::Signature(
                "Credential should be scoped to a valid region and service. ".to_owned(),
            ));
        }
        self.check_skew(auth, now)?;

        let mut payload_hex = [0u8; 64];
        let payload_hash = sha256_hex(req.body, &mut payload_hex);
        check_content_sha256(req.headers, payload_hash)?;

        let canonical = canonical_request(req, auth, payload_hash)?;
        let mut canonical_hex = [0u8; 64];
        let mut string_to_sign = String::with_capacity(160);
        for part in [
            ALGORITHM,
            "\n",
            &auth.amz_date,
            "\n",
            &auth.scope_date,
            "/",
            &auth.region,
            "/",
            &auth.service,
            "/",
            TERMINATOR,
            "\n",
            sha256_hex(canonical.as_bytes(), &mut canonical_hex),
        ] {
            string_to_sign.push_str(part);
        }

        let key = self.signing_key(&auth.access_key_id, &auth.scope_date, &auth.region, secret);
        let expected = hmac::sign(&key.0, string_to_sign.as_bytes());
        let expected = expected.as_ref();

        // The provided signature is client data, so decoding it need not be
        // constant time; the comparison with the expected MAC must be.
        let provided = match hex::decode(&auth.signature) {
            Ok(bytes) => bytes,
            Err(_) => return Err(AuthError::Signature(SIGNATURE_MISMATCH.to_owned())),
        };
        if provided.len() == expected.len() && bool::from(provided.as_slice().ct_eq(expected)) {
            Ok(())
        } else {
            Err(AuthError::Signature(SIGNATURE_MISMATCH.to_owned()))
        }
    }

    /// Rejects requests whose timestamp is more than `max_skew` from `now`.
    fn check_skew(&self, auth: &ParsedAuth, now: SystemTime) -> Result<(), AuthError> {
        const NANOS: i128 = 1_000_000_000;
        let now_nanos = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
            Err(e) => i128::try_from(e.duration().as_nanos()).map_or(i128::MIN, |n| -n),
        };
        let skew_nanos = i128::try_from(self.max_skew.as_nanos()).unwrap_or(i128::MAX);
        let request_nanos = i128::from(auth.request_time).saturating_mul(NANOS);
        let ahead = now_nanos.saturating_sub(request_nanos);

        if ahead <= skew_nanos
            && ahead
                .checked_neg()
                .is_some_and(|behind| behind <= skew_nanos)
        {
            return Ok(());
        }
        let now_secs = now_nanos.div_euclid(NANOS);
        let skew_secs = i128::from(self.max_skew.as_secs());
        let skew_text = if skew_secs % 60 == 0 {
            format!("{} min.", skew_secs / 60)
        } else {
            format!("{skew_secs} sec.")
        };
        if ahead > skew_nanos {
            return Err(AuthError::Signature(format!(
                "Signature expired: {} is now earlier than {} ({} - {skew_text})",
                auth.amz_date,
                format_unix(now_secs.saturating_sub(skew_secs)),
                format_unix(now_secs),
            )));
        }
        if ahead.checked_neg().is_none_or(|behind| behind > skew_nanos) {
            return Err(AuthError::Signature(format!(
                "Signature not yet current: {} is still later than {} ({} + {skew_text})",
                auth.amz_date,
                format_unix(now_secs.saturating_add(skew_secs)),
                format_unix(now_secs),
            )));
        }
        Ok(())
    }

    /// Returns the derived signing key, from the cache when possible.
    fn signing_key(
        &self,
        access_key_id: &str,
        scope_date: &str,
        region: &str,
        secret: &[u8],
    ) -> SigningKey {
        let digest = digest::digest(&digest::SHA256, secret);
        let Ok(secret_digest) = <[u8; 32]>::try_from(digest.as_ref()) else {
            // Cannot happen (SHA-256 is 32 bytes); derive without caching.
            return derive_signing_key(secret, scope_date, region, &self.service);
        };
        let Some(region_index) = self.regions.iter().position(|r| r == region) else {
            // Not a served region (refused before this point); no caching.
            return derive_signing_key(secret, scope_date, region, &self.service);
        };
        let cache_key = CacheKey {
            access_key_id: access_key_id.to_owned(),
            scope_date: scope_date.to_owned(),
            region: region_index,
            secret_digest,
        };
        if let Some(key) = self.lock_cache().get(&cache_key) {
            return key.clone();
        }
        let key = derive_signing_key(secret, scope_date, region, &self.service);
        let mut cache = self.lock_cache();
        if cache.len() >= MAX_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(cache_key, key.clone());
        key
    }

    /// Locks the cache; a poisoned lock is still usable (the map is always
    /// in a consistent state).
    fn lock_cache(&self) -> MutexGuard<'_, HashMap<CacheKey, SigningKey>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
fn derive_signing_key(secret: &[u8], scope_date: &str, region: &str, service: &str) -> SigningKey {
    let mut k_secret = Vec::with_capacity(4 + secret.len());
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret);
    let k_date = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &k_secret),
        scope_date.as_bytes(),
    );
    // Best effort only (no zeroize available): overwrite our copy of the secret.
    k_secret.fill(0);
    let k_region = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, k_date.as_ref()),
        region.as_bytes(),
    );
    let k_service = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, k_region.as_ref()),
        service.as_bytes(),
    );
    let k_signing = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, k_service.as_ref()),
        TERMINATOR.as_bytes(),
    );
    SigningKey(hmac::Key::new(hmac::HMAC_SHA256, k_signing.as_ref()))
}

/// The three components of an `Authorization` header.
struct AuthorizationHeader<'a> {
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

/// Parses `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
fn parse_authorization(value: &str) -> Result<AuthorizationHeader<'_>, AuthError> {
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(AuthError::Incomplete(format!(
            "Authorization header is too long ({} bytes, at most {MAX_AUTHORIZATION_LEN}).",
            value.len()
        )));
    }
    let value = value.trim_matches(is_space);
    if value.is_empty() {
        return Err(AuthError::Incomplete(
            "Authorization header is empty.".to_owned(),
        ));
    }
    let (algorithm, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(AuthError::Incomplete(format!(
            "Unsupported AWS 'algorithm': '{}'; only '{ALGORITHM}' is supported.",
            echo(algorithm)
        )));
    }

    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for component in rest.split(',') {
        let component = component.trim_matches(is_space);
        if component.is_empty() {
            continue;
        }
        let Some((name, value)) = component.split_once('=') else {
            return Err(AuthError::Incomplete(format!(
                "Authorization header component '{}' is not of the form name=value.",
                echo(component)
            )));
        };
        let slot = match name.trim_matches(is_space) {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            // Unknown components are ignored, like other SigV4 servers do.
            _ => continue,
        };
        if slot.is_some() {
            return Err(AuthError::Incomplete(format!(
                "Authorization header contains the '{}' parameter more than once.",
                echo(name.trim_matches(is_space))
            )));
        }
        *slot = Some(value.trim_matches(is_space));
    }

    let mut missing = String::new();
    for (name, value) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed_headers),
    ] {
        if value.is_none_or(str::is_empty) {
            missing.push_str(&format!(
                "Authorization header requires '{name}' parameter. "
            ));
        }
    }
    match (credential, signed_headers, signature) {
        (Some(credential), Some(signed_headers), Some(signature)) if missing.is_empty() => {
            Ok(AuthorizationHeader {
                credential,
                signed_headers,
                signature,
            })
        }
        _ => Err(AuthError::Incomplete(missing.trim_end().to_owned())),
    }
}

/// Splits and validates `SignedHeaders`: non-empty, distinct, lowercase header
/// names separated by `;`. The client's order is kept (it is part of what was
/// signed). Duplicates are rejected so that one large header cannot be copied
/// into the canonical request many times.
fn parse_signed_headers(value: &str) -> Result<Vec<String>, AuthError> {
    let mut names: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for name in value.split(';') {
        let valid = !name.is_empty()
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
            });
        if !valid {
            return Err(AuthError::Incomplete(
                "SignedHeaders must be a list of lowercase header names separated by ';'."
                    .to_owned(),
            ));
        }
        if !seen.insert(name) {
            return Err(AuthError::Incomplete(format!(
                "SignedHeaders must not list '{}' more than once.",
                echo(name)
            )));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// The request timestamp, from `X-Amz-Date` or `Date`.
struct RequestTimestamp {
    /// `YYYYMMDD'T'HHMMSS'Z'` (always 16 ASCII characters).
    amz_date: String,
    unix_seconds: i64,
    from_x_amz_date: bool,
}

impl RequestTimestamp {
    fn new(at: OffsetDateTime, from_x_amz_date: bool) -> Result<Self, AuthError> {
        if !(0..=9999).contains(&at.year()) {
            return Err(AuthError::Incomplete(
                "Request date is out of range.".to_owned(),
            ));
        }
        Ok(RequestTimestamp {
            amz_date: format_amz_date(at),
            unix_seconds: at.unix_timestamp(),
            from_x_amz_date,
        })
    }

    /// The `YYYYMMDD` part.
    fn date_part(&self) -> &str {
        self.amz_date.get(..8).unwrap_or(&self.amz_date)
    }
}

/// Reads the request timestamp: `X-Amz-Date` if present, else `Date`.
fn request_timestamp(headers: &HeaderMap) -> Result<RequestTimestamp, AuthError> {
    if let Some(value) = single_header(headers, X_AMZ_DATE, "X-Amz-Date")? {
        let at = parse_amz_date(value.trim_matches(is_space)).ok_or_else(|| {
            AuthError::Incomplete(format!(
                "X-Amz-Date must be in the ISO-8601 basic format YYYYMMDD'T'HHMMSS'Z', got '{}'.",
                echo(value)
            ))
        })?;
        return RequestTimestamp::new(at, true);
    }
    if let Some(value) = single_header(headers, DATE.as_str(), "Date")? {
        let at = parse_http_date(value.trim_matches(is_space)).ok_or_else(|| {
            AuthError::Incomplete(format!(
                "Date must be an RFC 1123 date such as 'Sat, 28 Nov 2026 12:00:00 GMT', got '{}'.",
                echo(value)
            ))
        })?;
        return RequestTimestamp::new(at, false);
    }
    Err(AuthError::Incomplete(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
            .to_owned(),
    ))
}

/// Parses `YYYYMMDD'T'HHMMSS'Z'` strictly (exactly 16 ASCII characters).
fn parse_amz_date(value: &str) -> Option<OffsetDateTime> {
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u16> {
        b.get(range)?.iter().try_fold(0u16, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u16::from(d - b'0'))
        })
    };
    let year = number(0..4)?;
    let month = Month::try_from(u8::try_from(number(4..6)?).ok()?).ok()?;
    let day = u8::try_from(number(6..8)?).ok()?;
    let hour = u8::try_from(number(9..11)?).ok()?;
    let minute = u8::try_from(number(11..13)?).ok()?;
    let second = u8::try_from(number(13..15)?).ok()?;
    let date = Date::from_calendar_date(i32::from(year), month, day).ok()?;
    let time = Time::from_hms(hour, minute, second).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// Parses an RFC 1123 (IMF-fixdate) `Date` header, e.g.
/// `Sat, 28 Nov 2026 12:00:00 GMT`.
fn parse_http_date(value: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    PrimitiveDateTime::parse(value, format)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// Formats a time as `YYYYMMDD'T'HHMMSS'Z'`.
fn format_amz_date(at: OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Formats seconds since the epoch as `YYYYMMDD'T'HHMMSS'Z'` for messages.
fn format_unix(seconds: i128) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .map_or_else(|| format!("@{seconds}"), format_amz_date)
}

/// Returns the value of a header that may appear at most once, as visible
/// ASCII. More than one occurrence or a non-ASCII value is `Incomplete`.
fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &str,
    display: &str,
) -> Result<Option<&'h str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::Incomplete(format!(
            "The request must not contain more than one '{display}' header."
        )));
    }
    value.to_str().map(Some).map_err(|_| {
        AuthError::Incomplete(format!(
            "The '{display}' header must contain only visible ASCII characters."
        ))
    })
}

/// If the client sent `x-amz-content-sha256`, it must match the body (unless
/// it is `UNSIGNED-PAYLOAD`; the canonical request still uses the real body
/// hash, so unsigned payloads do not verify).
fn check_content_sha256(headers: &HeaderMap, payload_hash: &str) -> Result<(), AuthError> {
    let mut values = headers.get_all(X_AMZ_CONTENT_SHA256).iter();
    let Some(value) = values.next() else {
        return Ok(());
    };
    let mismatch = || {
        AuthError::Signature(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
                .to_owned(),
        )
    };
    if values.next().is_some() {
        return Err(mismatch());
    }
    let value = value
        .to_str()
        .map_err(|_| mismatch())?
        .trim_matches(is_space);
    if value == UNSIGNED_PAYLOAD || value.eq_ignore_ascii_case(payload_hash) {
        Ok(())
    } else {
        Err(mismatch())
    }
}

/// Builds the SigV4 canonical request.
/// Lowercase hex of the SHA-256 of `data`, written into `buf`.
fn sha256_hex<'a>(data: &[u8], buf: &'a mut [u8; 64]) -> &'a str {
    let digest = digest::digest(&digest::SHA256, data);
    // A SHA-256 digest is 32 bytes, exactly what 64 hex digits hold.
    if hex::encode_to_slice(digest.as_ref(), buf).is_err() {
        return "";
    }
    std::str::from_utf8(buf).unwrap_or("")
}

fn canonical_request(
    req: &SignedRequest<'_>,
    auth: &ParsedAuth,
    payload_hash: &str,
) -> Result<String, AuthError> {
    let mut out = String::with_capacity(256 + req.path.len() + req.query.map_or(0, str::len));
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(req.path));
    out.push('\n');
    out.push_str(&canonical_query(req.query.unwrap_or("")));
    out.push('\n');
    for name in &auth.signed_headers {
        out.push_str(name);
        out.push(':');
        canonical_header_value(req.headers, name, &mut out)?;
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&auth.signed_headers.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

/// Appends the canonical value of header `name`: every occurrence trimmed,
/// runs of spaces collapsed to one, occurrences joined with `,`.
fn canonical_header_value(
    headers: &HeaderMap,
    name: &str,
    out: &mut String,
) -> Result<(), AuthError> {
    let mut found = false;
    for value in headers.get_all(name) {
        let value = value.to_str().map_err(|_| {
            AuthError::Signature(format!(
                "The value of signed header '{}' must contain only visible ASCII characters.",
                echo(name)
            ))
        })?;
        if found {
            out.push(',');
        }
        found = true;
        let mut previous_space = false;
        for c in value.trim_matches(is_space).chars() {
            if c == ' ' {
                if !previous_space {
                    out.push(' ');
                }
                previous_space = true;
            } else {
                out.push(c);
                previous_space = false;
            }
        }
    }
    if found {
        Ok(())
    } else {
        Err(AuthError::Signature(format!(
            "Signed header '{}' is not present in the request.",
            echo(name)
        )))
    }
}

/// Canonical URI for services other than S3: remove empty and dot segments
/// (RFC 3986 section 5.2.4, keeping a trailing slash), then percent-encode each
/// segment of the path as received. Since the received path is already
/// percent-encoded, this is AWS's "double encoding" (`%20` becomes `%2520`).
fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let last = path.rsplit('/').next().unwrap_or("");
    let trailing_slash = path.contains('/') && matches!(last, "" | "." | "..");

    let mut out = String::with_capacity(path.len() + 8);
    for segment in &segments {
        out.push('/');
        uri_encode(segment.as_bytes(), &mut out);
    }
    if segments.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

/// Canonical query string: split on `&`, split each pair at the first `=`
/// (no `=` means an empty value), percent-decode (`+` is a space), re-encode
/// per RFC 3986 and sort by encoded name, then encoded value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let mut encoded_name = String::with_capacity(name.len());
            uri_encode(&percent_decode(name), &mut encoded_name);
            let mut encoded_value = String::with_capacity(value.len());
            uri_encode(&percent_decode(value), &mut encoded_value);
            (encoded_name, encoded_value)
        })
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(query.len() + 16);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Decodes `%XX` escapes and `+` (as space). Malformed escapes are kept
/// literally.
fn percent_decode(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|&h| hex_value(h));
                let lo = bytes.get(i + 2).and_then(|&l| hex_value(l));
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push((hi << 4) | lo);
                    i += 3;
                } else {
                    out.push(b'%');
                    i += 1;
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 percent-encoding: everything except `A-Z a-z 0-9 - _ . ~` becomes
/// `%XX` with uppercase hex digits.
fn uri_encode(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// A short prefix of client input, safe to echo back in an error message.
fn echo(input: &str) -> String {
    let mut out: String = input.chars().take(MAX_ECHO_CHARS).collect();
    if input.chars().nth(MAX_ECHO_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
    };
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;
    use http::{HeaderName, HeaderValue};

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const HOST: &str = "kms.us-east-1.amazonaws.com";
    const BODY: &[u8] = br#"{"KeyId":"alias/keywarden","Plaintext":"aGVsbG8gd29ybGQ="}"#;
    const FIFTEEN_MIN: Duration = Duration::from_secs(15 * 60);

    /// 2026-11-28T12:00:00Z, the signing time of most tests.
    fn t0() -> SystemTime {
        let secs = time::macros::datetime!(2026-11-28 12:00:00 UTC).unix_timestamp();
        UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap())
    }

    fn kms_verifier() -> Verifier {
        Verifier::new("us-east-1", "kms", FIFTEEN_MIN)
    }

    /// How to sign a test request with the official signer.
    struct Spec<'a> {
        method: &'a str,
        path_and_query: &'a str,
        region: &'a str,
        service: &'a str,
        secret: &'a str,
        time: SystemTime,
        headers: Vec<(&'a str, &'a str)>,
        body: &'a [u8],
        checksum_header: bool,
        unsigned_payload: bool,
    }

    impl Default for Spec<'_> {
        fn default() -> Self {
            Spec {
                method: "POST",
                path_and_query: "/",
                region: "us-east-1",
                service: "kms",
                secret: SECRET,
                time: t0(),
                headers: vec![
                    ("host", HOST),
                    ("content-type", "application/x-amz-json-1.1"),
                    ("x-amz-target", "TrentService.Encrypt"),
                ],
                body: BODY,
                checksum_header: false,
                unsigned_payload: false,
            }
        }
    }

    /// A request as the server would see it.
    struct Req {
        method: String,
        path: String,
        query: Option<String>,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    impl Req {
        fn signed(&self) -> SignedRequest<'_> {
            SignedRequest {
                method: &self.method,
                path: &self.path,
                query: self.query.as_deref(),
                headers: &self.headers,
                body: &self.body,
            }
        }

        fn set(&mut self, name: &'static str, value: &str) {
            self.headers
                .insert(name, HeaderValue::from_str(value).unwrap());
        }

        fn authorization(&self) -> String {
            self.headers[AUTHORIZATION].to_str().unwrap().to_owned()
        }
    }

    /// Signs with the official `aws-sigv4` crate and returns the request as
    /// received by the server.
    fn sign_with_sdk(spec: Spec<'_>) -> Req {
        let identity: Identity = Credentials::new(AKID, spec.secret, None, None, "test").into();
        let mut settings = SigningSettings::default();
        if spec.checksum_header {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(spec.region)
            .name(spec.service)
            .time(spec.time)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let body = if spec.unsigned_payload {
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Bytes(spec.body)
        };
        let url = format!("https://{HOST}{}", spec.path_and_query);
        let signable =
            SignableRequest::new(spec.method, url, spec.headers.iter().copied(), body).unwrap();
        let (instructions, _signature) = sign(signable, &params).unwrap().into_parts();

        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        for (name, value) in instructions.headers() {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let (path, query) = match spec.path_and_query.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (spec.path_and_query.to_owned(), None),
        };
        Req {
            method: spec.method.to_owned(),
            path,
            query,
            headers,
            body: spec.body.to_vec(),
        }
    }

    fn check_with(v: &Verifier, req: &Req, secret: &str, now: SystemTime) -> Result<(), AuthError> {
        let signed = req.signed();
        let auth = v.parse(&signed)?;
        assert_eq!(auth.access_key_id, AKID);
        v.verify(&signed, &auth, secret.as_bytes(), now)
    }

    fn check(req: &Req) -> Result<(), AuthError> {
        check_with(&kms_verifier(), req, SECRET, t0())
    }

    fn assert_signature_error(result: Result<(), AuthError>, needle: &str) {
        match result {
            Err(AuthError::Signature(message)) => assert!(
                message.contains(needle),
                "message {message:?} does not contain {needle:?}"
            ),
            other => panic!("expected Signature error containing {needle:?}, got {other:?}"),
        }
    }

    fn assert_incomplete(result: Result<ParsedAuth, AuthError>) -> String {
        match result {
            Err(AuthError::Incomplete(message)) => message,
            other => panic!("expected Incomplete error, got {other:?}"),
        }
    }

    // ---- requests signed by the official signer verify ----

    #[test]
    fn kms_request_signed_by_sdk_verifies() {
        let req = sign_with_sdk(Spec::default());
        assert!(req.headers.get(X_AMZ_CONTENT_SHA256).is_none());
        assert!(req.headers.get("x-amz-security-token").is_none());
        assert_eq!(check(&req), Ok(()));
    }

    #[test]
    fn kms_request_with_content_sha256_header_verifies() {
        let req = sign_with_sdk(Spec {
            checksum_header: true,
            ..Spec::default()
        });
        let expected = hex::encode(digest::digest(&digest::SHA256, BODY));
        assert_eq!(req.headers[X_AMZ_CONTENT_SHA256], expected.as_str());
        assert_eq!(check(&req), Ok(()));
    }

    #[test]
    fn empty_body_verifies() {
        let req = sign_with_sdk(Spec {
            body: b"",
            ..Spec::default()
        });
        assert_eq!(check(&req), Ok(()));
    }

    #[test]
    fn paths_and_queries_match_sdk_canonicalisation() {
        let cases = [
            "/",
            "/foo%20bar/baz",
            "/a%2Fb/%7Ec/d%25e",
            "/a/./b/../c//d/",
            "/x/y/..",
            "//double//slashes",
            "/?b=2&a=1&c&a=0",
            "/?d=x%20y+z&%E1%88%B4=v&empty=&e=%2b",
            "/path%20seg/?Action=Encrypt&Version=2014-11-01&k=a%3Db",
        ];
        for path_and_query in cases {
            let req = sign_with_sdk(Spec {
                path_and_query,
                ..Spec::default()
            });
            assert_eq!(check(&req), Ok(()), "case {path_and_query}");
        }
    }

    #[test]
    fn header_whitespace_and_repeated_values_match_sdk() {
        let mut spec = Spec::default();
        spec.headers.extend([
            ("x-custom", "a   b    c"),
            ("x-multi", "one"),
            ("x-multi", "two  three"),
            ("X-Mixed-Case", "Value"),
        ]);
        let req = sign_with_sdk(spec);
        assert_eq!(check(&req), Ok(()));
    }

    #[test]
    fn get_request_verifies() {
        let req = sign_with_sdk(Spec {
            method: "GET",
            path_and_query: "/?Action=ListKeys",
            body: b"",
            ..Spec::default()
        });
        assert_eq!(check(&req), Ok(()));
    }

    // ---- AWS SigV4 test-suite vectors (region us-east-1, service "service") ----

    fn suite_request(path: &str, query: Option<&str>, extra: &[(&str, &str)], auth: &str) -> Req {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        headers.insert(X_AMZ_DATE, HeaderValue::from_static("20150830T123600Z"));
        for (name, value) in extra {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers.insert(AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        Req {
            method: "GET".to_owned(),
            path: path.to_owned(),
            query: query.map(str::to_owned),
            headers,
            body: Vec::new(),
        }
    }

    /// One request from AWS's public SigV4 test suite (`aws-signing-test-suite/v4`):
    /// GET, empty body, host `example.amazonaws.com`, 2015-08-30T12:36:00Z.
    struct SuiteCase {
        name: &'static str,
        path: &'static str,
        query: Option<&'static str>,
        headers: &'static [(&'static str, &'static str)],
        signed_headers: &'static str,
        signature: &'static str,
    }

    const SUITE: &[SuiteCase] = &[
        SuiteCase {
            name: "get-vanilla",
            path: "/",
            query: None,
            headers: &[],
            signed_headers: "host;x-amz-date",
            signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        },
        SuiteCase {
            name: "get-relative-relative-normalized",
            path: "/example1/example2/../..",
            query: None,
            headers: &[],
            signed_headers: "host;x-amz-date",
            signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        },
        SuiteCase {
            name: "get-slash-dot-slash-normalized",
            path: "/./",
            query: None,
            headers: &[],
            signed_headers: "host;x-amz-date",
            signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        },
        SuiteCase {
            name: "get-slashes-normalized",
            path: "//example//",
            query: None,
            headers: &[],
            signed_headers: "host;x-amz-date",
            signature: "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
        },
        SuiteCase {
            name: "get-space-unnormalized (raw space in the path)",
            path: "/example space/",
            query: None,
            headers: &[],
            signed_headers: "host;x-amz-date",
            signature: "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
        },
        SuiteCase {
            name: "get-utf8 (raw UTF-8 in the path)",
            path: "/\u{1234}",
            query: None,
            headers: &[],
            signed_headers: "host;x-amz-date",
            signature: "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
        },
        SuiteCase {
            name: "get-unreserved",
            path: "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            query: None,
            headers: &[],
            signed_headers: "host;x-amz-date",
            signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        },
        SuiteCase {
            name: "get-vanilla-query-order-key-case",
            path: "/",
            query: Some("Param2=value2&Param1=value1"),
            headers: &[],
            signed_headers: "host;x-amz-date",
            signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        },
        SuiteCase {
            name: "get-vanilla-query-order-encoded",
            path: "/",
            query: Some("Param-3=Value3&Param=Value2&%E1%88%B4=Value1"),
            headers: &[],
            signed_headers: "host;x-amz-date",
            signature: "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac",
        },
        SuiteCase {
            name: "get-vanilla-utf8-query (raw UTF-8 in the query)",
            path: "/",
            query: Some("\u{1234}=bar"),
            headers: &[],
            signed_headers: "host;x-amz-date",
            signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
        },
        SuiteCase {
            name: "get-header-value-trim",
            path: "/",
            query: None,
            headers: &[("my-header1", "value1"), ("my-header2", "\"a   b   c\"")],
            signed_headers: "host;my-header1;my-header2;x-amz-date",
            signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        },
        SuiteCase {
            name: "get-header-key-duplicate",
            path: "/",
            query: None,
            headers: &[
                ("my-header1", "value2"),
                ("my-header1", "value2"),
                ("my-header1", "value1"),
            ],
            signed_headers: "host;my-header1;x-amz-date",
            signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        },
        SuiteCase {
            name: "get-header-value-order",
            path: "/",
            query: None,
            headers: &[
                ("my-header1", "value4"),
                ("my-header1", "value1"),
                ("my-header1", "value3"),
                ("my-header1", "value2"),
            ],
            signed_headers: "host;my-header1;x-amz-date",
            signature: "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
        },
    ];

    #[test]
    fn aws_test_suite_vectors() {
        let scope = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";
        let verifier = Verifier::new("us-east-1", "service", FIFTEEN_MIN);
        let now = UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
        for case in SUITE {
            let auth = format!(
                "AWS4-HMAC-SHA256 {scope}, SignedHeaders={}, Signature={}",
                case.signed_headers, case.signature
            );
            let req = suite_request(case.path, case.query, case.headers, &auth);
            assert_eq!(
                check_with(&verifier, &req, SECRET, now),
                Ok(()),
                "test-suite case {}",
                case.name
            );
        }
    }

    #[test]
    fn date_header_is_accepted_when_x_amz_date_is_absent() {
        let date = "Sun, 30 Aug 2015 12:36:00 GMT";
        let canonical = format!(
            "GET\n/\n\ndate:{date}\nhost:example.amazonaws.com\n\ndate;host\n{}",
            hex::encode(digest::digest(&digest::SHA256, b""))
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n{}",
            hex::encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
        );
        let now = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let key = v4::generate_signing_key(SECRET, now, "us-east-1", "service");
        let signature = v4::calculate_signature(key, string_to_sign.as_bytes());

        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        headers.insert(DATE, HeaderValue::from_static(date));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=date;host, Signature={signature}"
        );
        headers.insert(AUTHORIZATION, HeaderValue::from_str(&auth).unwrap());
        let req = Req {
            method: "GET".to_owned(),
            path: "/".to_owned(),
            query: None,
            headers,
            body: Vec::new(),
        };
        let verifier = Verifier::new("us-east-1", "service", FIFTEEN_MIN);
        assert_eq!(check_with(&verifier, &req, SECRET, now), Ok(()));

        let mut bad = req;
        bad.set("date", "Sun, 30 Aug 2015 12:36:01 GMT");
        assert_signature_error(check_with(&verifier, &bad, SECRET, now), "does not match");
        bad.set("date", "30 Aug 2015 12:36:01");
        assert_incomplete(verifier.parse(&bad.signed()));
    }

    // ---- tampering ----

    #[test]
    fn changed_body_fails() {
        let mut req = sign_with_sdk(Spec::default());
        req.body = br#"{"KeyId":"alias/other","Plaintext":"aGVsbG8gd29ybGQ="}"#.to_vec();
        assert_signature_error(check(&req), "does not match the signature");
    }

    #[test]
    fn changed_body_with_content_sha256_header_fails() {
        let mut req = sign_with_sdk(Spec {
            checksum_header: true,
            ..Spec::default()
        });
        req.body.push(b' ');
        assert_signature_error(check(&req), "x-amz-content-sha256");
    }

    #[test]
    fn content_sha256_header_must_match_body() {
        let mut req = sign_with_sdk(Spec::default());
        req.set(X_AMZ_CONTENT_SHA256, &"0".repeat(64));
        assert_signature_error(check(&req), "x-amz-content-sha256");
        req.set(X_AMZ_CONTENT_SHA256, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
        assert_signature_error(check(&req), "x-amz-content-sha256");
    }

    #[test]
    fn unsigned_payload_is_not_accepted() {
        let req = sign_with_sdk(Spec {
            checksum_header: true,
            unsigned_payload: true,
            ..Spec::default()
        });
        assert_eq!(req.headers[X_AMZ_CONTENT_SHA256], UNSIGNED_PAYLOAD);
        assert_signature_error(check(&req), "does not match the signature");
    }

    #[test]
    fn changed_signed_header_fails() {
        let mut req = sign_with_sdk(Spec::default());
        req.set("x-amz-target", "TrentService.Decrypt");
        assert_signature_error(check(&req), "does not match the signature");
    }

    #[test]
    fn changed_method_path_or_query_fails() {
        let req = sign_with_sdk(Spec::default());
        let mut other = Req {
            method: "PUT".to_owned(),
            path: req.path.clone(),
            query: None,
            headers: req.headers.clone(),
            body: req.body.clone(),
        };
        assert_signature_error(check(&other), "does not match");
        other.method = "POST".to_owned();
        other.path = "/x".to_owned();
        assert_signature_error(check(&other), "does not match");
        other.path = "/".to_owned();
        other.query = Some("a=b".to_owned());
        assert_signature_error(check(&other), "does not match");
    }

    #[test]
    fn added_unsigned_header_is_ignored() {
        let mut req = sign_with_sdk(Spec::default());
        req.set("user-agent", "something else");
        assert_eq!(check(&req), Ok(()));
    }

    #[test]
    fn removed_signed_header_fails() {
        let mut req = sign_with_sdk(Spec::default());
        req.headers.remove("x-amz-target");
        assert_signature_error(check(&req), "not present");
    }

    #[test]
    fn wrong_secret_fails() {
        let req = sign_with_sdk(Spec::default());
        assert_signature_error(
            check_with(&kms_verifier(), &req, "not-the-secret", t0()),
            "does not match the signature",
        );
    }

    #[test]
    fn altered_signature_fails() {
        let auth = sign_with_sdk(Spec::default()).authorization();
        let (head, signature) = auth.rsplit_once("Signature=").unwrap();
        assert_eq!(signature.len(), 64);
        let (rest, last) = signature.split_at(63);
        let flipped = if last == "0" { "1" } else { "0" };
        for tampered in [
            format!("{rest}{flipped}"), // one hex digit changed
            rest.to_owned(),            // one digit short
            format!("{signature}0"),    // one digit too many
            format!("{rest}g"),         // not hex
            signature.repeat(2),        // twice the length
            "0".repeat(64),
        ] {
            let mut bad = sign_with_sdk(Spec::default());
            bad.set("authorization", &format!("{head}Signature={tampered}"));
            assert_signature_error(check(&bad), "does not match the signature");
        }
    }

    #[test]
    fn wrong_region_in_scope_fails() {
        let req = sign_with_sdk(Spec {
            region: "us-west-2",
            ..Spec::default()
        });
        let err = kms_verifier().parse(&req.signed()).unwrap_err();
        assert_eq!(
            err,
            AuthError::Signature(
                "Credential should be scoped to a valid region. This server's region is \
                 'us-east-1' (keywarden serve --region); the request is signed for 'us-west-2'. "
                    .to_owned()
            )
        );
        assert_eq!(err.aws_type(), "InvalidSignatureException");
    }

    #[test]
    fn every_served_region_is_accepted_and_others_are_named() {
        let v = Verifier::for_regions(
            vec!["us-east-1".into(), "eu-west-1".into()],
            "kms",
            Duration::from_secs(15 * 60),
        );
        for region in ["us-east-1", "eu-west-1"] {
            let req = sign_with_sdk(Spec {
                region,
                ..Spec::default()
            });
            let auth = v.parse(&req.signed()).unwrap();
            assert_eq!(auth.region(), region);
            v.verify(&req.signed(), &auth, SECRET.as_bytes(), t0())
                .unwrap();
        }
        let req = sign_with_sdk(Spec {
            region: "us-west-2",
            ..Spec::default()
        });
        assert_eq!(
            v.parse(&req.signed()).unwrap_err(),
            AuthError::Signature(
                "Credential should be scoped to a valid region. This server's regions are \
                 'us-east-1', 'eu-west-1' (keywarden serve --region and --regions); the request \
                 is signed for 'us-west-2'. "
                    .to_owned()
            )
        );
        // A signature made for one served region does not verify as
        // another's (the region is in the signing key).
        let req = sign_with_sdk(Spec {
            region: "eu-west-1",
            ..Spec::default()
        });
        let mut auth = v.parse(&req.signed()).unwrap();
        auth.region = "us-east-1".into();
        assert!(v
            .verify(&req.signed(), &auth, SECRET.as_bytes(), t0())
            .is_err());
    }

    #[test]
    fn wrong_service_in_scope_fails() {
        let req = sign_with_sdk(Spec {
            service: "s3",
            ..Spec::default()
        });
        assert_eq!(
            kms_verifier().parse(&req.signed()).unwrap_err(),
            AuthError::Signature(
                "Credential should be scoped to correct service: 'kms'. ".to_owned()
            )
        );
    }

    #[test]
    fn wrong_terminator_and_scope_date_fail() {
        let req = sign_with_sdk(Spec::default());
        let auth = req.authorization();

        let mut bad = sign_with_sdk(Spec::default());
        bad.set(
            "authorization",
            &auth.replace("/aws4_request", "/aws5_request"),
        );
        let result = kms_verifier().parse(&bad.signed());
        assert!(
            matches!(&result, Err(AuthError::Signature(m)) if m.contains("terminator")),
            "{result:?}"
        );

        bad.set("authorization", &auth.replace("/20261128/", "/20261127/"));
        let result = kms_verifier().parse(&bad.signed());
        assert!(
            matches!(&result, Err(AuthError::Signature(m)) if m.contains("Date in Credential scope")),
            "{result:?}"
        );
    }

    #[test]
    fn clock_skew() {
        let req = sign_with_sdk(Spec::default());
        let v = kms_verifier();
        let minutes = |m: u64| Duration::from_secs(m * 60);

        // Within the window (and exactly on its edges) is fine.
        for now in [
            t0() + minutes(14),
            t0() - minutes(14),
            t0() + minutes(15),
            t0() - minutes(15),
        ] {
            assert_eq!(check_with(&v, &req, SECRET, now), Ok(()));
        }

        // 16 minutes old.
        let result = check_with(&v, &req, SECRET, t0() + minutes(16));
        assert_eq!(
            result,
            Err(AuthError::Signature(
                "Signature expired: 20261128T120000Z is now earlier than 20261128T120100Z \
                 (20261128T121600Z - 15 min.)"
                    .to_owned()
            ))
        );
        // Just over the limit.
        let result = check_with(
            &v,
            &req,
            SECRET,
            t0() + minutes(15) + Duration::from_millis(1),
        );
        assert_signature_error(result, "Signature expired");

        // 16 minutes in the future.
        let result = check_with(&v, &req, SECRET, t0() - minutes(16));
        assert_eq!(
            result,
            Err(AuthError::Signature(
                "Signature not yet current: 20261128T120000Z is still later than \
                 20261128T115900Z (20261128T114400Z + 15 min.)"
                    .to_owned()
            ))
        );

        // Extreme clocks do not panic.
        assert!(check_with(&v, &req, SECRET, UNIX_EPOCH).is_err());
        assert!(check_with(&v, &req, SECRET, UNIX_EPOCH - Duration::from_secs(1 << 40)).is_err());
        assert!(check_with(
            &v,
            &req,
            SECRET,
            UNIX_EPOCH + Duration::from_secs(u64::MAX / 4)
        )
        .is_err());
        let lenient = Verifier::new("us-east-1", "kms", Duration::MAX);
        assert_eq!(check_with(&lenient, &req, SECRET, UNIX_EPOCH), Ok(()));
        let odd = Verifier::new("us-east-1", "kms", Duration::from_secs(90));
        assert_signature_error(check_with(&odd, &req, SECRET, t0() + minutes(2)), "90 sec.");
    }

    #[test]
    fn signed_with_sdk_at_other_time_checks_skew_against_that_time() {
        let signed_at = t0() - Duration::from_secs(16 * 60);
        let req = sign_with_sdk(Spec {
            time: signed_at,
            ..Spec::default()
        });
        assert_eq!(check_with(&kms_verifier(), &req, SECRET, signed_at), Ok(()));
        assert_signature_error(check(&req), "Signature expired");
    }

    // ---- cache ----

    #[test]
    fn cached_key_does_not_accept_another_secret() {
        let v = kms_verifier();
        let req = sign_with_sdk(Spec::default());
        assert_eq!(check_with(&v, &req, SECRET, t0()), Ok(()));
        assert_eq!(v.lock_cache().len(), 1);
        assert_signature_error(
            check_with(&v, &req, "another-secret", t0()),
            "does not match",
        );
        assert_eq!(v.lock_cache().len(), 2);
        // The real secret still works (served from the cache).
        assert_eq!(check_with(&v, &req, SECRET, t0()), Ok(()));
        assert_eq!(v.lock_cache().len(), 2);

        // A request signed with the other secret verifies only with it.
        let other = sign_with_sdk(Spec {
            secret: "another-secret",
            ..Spec::default()
        });
        assert_eq!(check_with(&v, &other, "another-secret", t0()), Ok(()));
        assert_signature_error(check_with(&v, &other, SECRET, t0()), "does not match");
    }

    #[test]
    fn cache_is_bounded() {
        let v = kms_verifier();
        for i in 0..(MAX_CACHE_ENTRIES + 5) {
            v.signing_key(&format!("AKID{i}"), "20261128", "us-east-1", b"secret");
        }
        assert!(v.lock_cache().len() <= MAX_CACHE_ENTRIES);
    }

    #[test]
    fn cached_and_fresh_keys_agree() {
        let v = kms_verifier();
        let fresh = derive_signing_key(SECRET.as_bytes(), "20261128", "us-east-1", "kms");
        let cached = v.signing_key(AKID, "20261128", "us-east-1", SECRET.as_bytes());
        let cached_again = v.signing_key(AKID, "20261128", "us-east-1", SECRET.as_bytes());
        let sdk = v4::generate_signing_key(SECRET, t0(), "us-east-1", "kms");
        for key in [&cached, &cached_again] {
            assert_eq!(
                hmac::sign(&key.0, b"x").as_ref(),
                hmac::sign(&fresh.0, b"x").as_ref()
            );
        }
        assert_eq!(
            hmac::sign(&fresh.0, b"x").as_ref(),
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, sdk.as_ref()), b"x").as_ref()
        );
    }

    #[test]
    fn debug_output_contains_no_secrets() {
        let v = kms_verifier();
        let req = sign_with_sdk(Spec::default());
        let auth = v.parse(&req.signed()).unwrap();
        v.verify(&req.signed(), &auth, SECRET.as_bytes(), t0())
            .unwrap();
        let verifier_debug = format!("{v:?}");
        assert!(
            verifier_debug.contains("cached_keys: 1"),
            "{verifier_debug}"
        );
        assert!(!verifier_debug.contains(SECRET));
        let auth_debug = format!("{auth:?}");
        assert!(auth_debug.contains(AKID));
        assert!(!auth_debug.contains(&auth.signature));
    }

    // ---- malformed input ----

    #[test]
    fn missing_authorization() {
        let mut req = sign_with_sdk(Spec::default());
        req.headers.remove(AUTHORIZATION);
        let err = kms_verifier().parse(&req.signed()).unwrap_err();
        assert_eq!(err, AuthError::Missing);
        assert_eq!(err.aws_type(), "MissingAuthenticationTokenException");
        assert_eq!(err.message(), "Missing Authentication Token");
    }

    #[test]
    fn garbage_authorization_is_incomplete() {
        let req = sign_with_sdk(Spec::default());
        let good = req.authorization();
        let good_params = good.strip_prefix("AWS4-HMAC-SHA256 ").unwrap();
        let cases = [
            String::new(),
            "   ".to_owned(),
            "Bearer abcdef".to_owned(),
            "AWS AKIDEXAMPLE:signature".to_owned(),
            "AWS4-HMAC-SHA512 ".to_owned() + good_params,
            "aws4-hmac-sha256 ".to_owned() + good_params,
            "AWS4-HMAC-SHA256".to_owned(),
            "AWS4-HMAC-SHA256 ".to_owned(),
            "AWS4-HMAC-SHA256 garbage".to_owned(),
            "AWS4-HMAC-SHA256 ,,,,".to_owned(),
            "AWS4-HMAC-SHA256 Credential=a/b/c".to_owned(),
            "AWS4-HMAC-SHA256 Credential=, SignedHeaders=, Signature=".to_owned(),
            good.replace("Signature=", "Sig="),
            good.replace("SignedHeaders=", "Headers="),
            good.replace("Credential=", "Cred="),
            good.replace("Credential=AKIDEXAMPLE/", "Credential="),
            good.replace("Credential=AKIDEXAMPLE/", "Credential=/"),
            good.replace("Credential=AKIDEXAMPLE/", "Credential=AKID/EXAMPLE/"),
            good.replace("SignedHeaders=", "SignedHeaders=Host;"),
            good.replace("SignedHeaders=", "SignedHeaders=;"),
            good.replace("SignedHeaders=", "SignedHeaders=a b;"),
            good.replace("SignedHeaders=", "SignedHeaders=host;"),
            format!("{good}, Signature=00"),
            format!("{good}, Credential=x"),
            "AWS4-HMAC-SHA256 Credential=\u{0}"
                .to_owned()
                .replace('\u{0}', "é"),
        ];
        for value in cases {
            let mut bad = sign_with_sdk(Spec::default());
            match HeaderValue::from_str(&value) {
                Ok(hv) => bad.headers.insert(AUTHORIZATION, hv),
                Err(_) => bad.headers.insert(
                    AUTHORIZATION,
                    HeaderValue::from_bytes(value.as_bytes()).unwrap(),
                ),
            };
            let message = assert_incomplete(kms_verifier().parse(&bad.signed()));
            assert!(!message.is_empty(), "{value:?}");
            assert!(!message.contains(SECRET));
        }
    }

    #[test]
    fn incomplete_messages() {
        let mut req = sign_with_sdk(Spec::default());
        req.set("authorization", "AWS4-HMAC-SHA256 Credential=a/b/c/d/e");
        let err = kms_verifier().parse(&req.signed()).unwrap_err();
        assert_eq!(err.aws_type(), "IncompleteSignatureException");
        assert_eq!(
            err.message(),
            "Authorization header requires 'Signature' parameter. \
             Authorization header requires 'SignedHeaders' parameter."
        );
        req.set("authorization", "AWS4-HMAC-SHA512 Credential=a/b/c/d/e");
        assert!(kms_verifier()
            .parse(&req.signed())
            .unwrap_err()
            .message()
            .contains("Unsupported AWS 'algorithm'"));
    }

    #[test]
    fn non_ascii_header_values_do_not_panic() {
        let mut req = sign_with_sdk(Spec::default());
        req.headers.insert(
            "x-amz-target",
            HeaderValue::from_bytes(b"Trent\xffService").unwrap(),
        );
        assert_signature_error(check(&req), "visible ASCII");

        let mut req = sign_with_sdk(Spec::default());
        req.headers.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"AWS4-HMAC-SHA256 Credential=\xe2\x82\xac").unwrap(),
        );
        assert_incomplete(kms_verifier().parse(&req.signed()));

        let mut req = sign_with_sdk(Spec::default());
        req.headers.insert(
            X_AMZ_DATE,
            HeaderValue::from_bytes(b"2026\xc3\xa9").unwrap(),
        );
        assert_incomplete(kms_verifier().parse(&req.signed()));

        let mut req = sign_with_sdk(Spec::default());
        req.headers.insert(
            X_AMZ_CONTENT_SHA256,
            HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        assert_signature_error(check(&req), "x-amz-content-sha256");
    }

    #[test]
    fn bad_or_missing_dates_are_incomplete() {
        for value in [
            "",
            "2026-11-28T12:00:00Z",
            "20261128T120000",
            "20261328T120000Z",
            "20261131T120000Z",
            "20261128T250000Z",
            "20261128T126000Z",
            "20261128T115960Z",
            "+0261128T120000Z",
            "20261128t120000z",
            "2026112８T12000Z",
            "Sat, 28 Nov 2026 12:00:00 GMT",
        ] {
            let mut req = sign_with_sdk(Spec::default());
            req.set(X_AMZ_DATE, value);
            assert_incomplete(kms_verifier().parse(&req.signed()));
        }

        let mut req = sign_with_sdk(Spec::default());
        req.headers.remove(X_AMZ_DATE);
        let message = assert_incomplete(kms_verifier().parse(&req.signed()));
        assert!(message.contains("'X-Amz-Date' or a 'Date'"), "{message}");

        let mut req = sign_with_sdk(Spec::default());
        req.headers
            .append(X_AMZ_DATE, HeaderValue::from_static("20261128T120000Z"));
        assert_incomplete(kms_verifier().parse(&req.signed()));

        let mut req = sign_with_sdk(Spec::default());
        let auth = req.headers[AUTHORIZATION].clone();
        req.headers.append(AUTHORIZATION, auth);
        assert_incomplete(kms_verifier().parse(&req.signed()));
    }

    #[test]
    fn host_and_x_amz_date_must_be_signed() {
        let req = sign_with_sdk(Spec::default());
        let auth = req.authorization();
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-target,"));

        let mut bad = sign_with_sdk(Spec::default());
        bad.set("authorization", &auth.replace(";host;", ";"));
        assert_signature_error(
            kms_verifier().parse(&bad.signed()).map(|_| ()),
            "'Host' or ':authority' must be a 'SignedHeader'",
        );

        bad.set("authorization", &auth.replace(";x-amz-date;", ";"));
        assert_signature_error(
            kms_verifier().parse(&bad.signed()).map(|_| ()),
            "'X-Amz-Date' must be a 'SignedHeader'",
        );
    }

    #[test]
    fn huge_authorization_header_does_not_panic() {
        let req = sign_with_sdk(Spec::default());
        let huge = format!(
            "AWS4-HMAC-SHA256 Credential={}/20261128/us-east-1/kms/aws4_request, \
             SignedHeaders=host, Signature=00",
            "A".repeat(1 << 20)
        );
        let mut bad = sign_with_sdk(Spec::default());
        bad.set("authorization", &huge);
        let message = assert_incomplete(kms_verifier().parse(&bad.signed()));
        assert!(message.len() < 200, "{message}");

        // Long but under the limit: many components and many signed headers.
        let many = format!("{}, {}", req.authorization(), "Foo=bar, ".repeat(1500));
        bad.set("authorization", &many);
        assert_eq!(check(&bad), Ok(()));
        // Over the length limit.
        let names: String = (0..3000).map(|i| format!("x-a{i};")).collect();
        let too_long = req
            .authorization()
            .replace("SignedHeaders=", &format!("SignedHeaders={names}"));
        bad.set("authorization", &too_long);
        let message = assert_incomplete(kms_verifier().parse(&bad.signed()));
        assert!(message.contains("too long"), "{message}");
        // Duplicated signed header names (amplification) are rejected.
        let duplicated = req.authorization().replace(
            "SignedHeaders=",
            &format!("SignedHeaders={}", "x-a;".repeat(2000)),
        );
        bad.set("authorization", &duplicated);
        let message = assert_incomplete(kms_verifier().parse(&bad.signed()));
        assert!(message.contains("more than once"), "{message}");
        // Many distinct names under the limit: parses, then fails cleanly.
        let names: String = (0..1500).map(|i| format!("x-a{i};")).collect();
        let many = req
            .authorization()
            .replace("SignedHeaders=", &format!("SignedHeaders={names}"));
        bad.set("authorization", &many);
        let signed = bad.signed();
        let parsed = kms_verifier().parse(&signed).expect("parses");
        assert_signature_error(
            kms_verifier().verify(&signed, &parsed, SECRET.as_bytes(), t0()),
            "not present",
        );
    }

    #[test]
    fn pseudo_random_input_never_panics() {
        // Simple xorshift; deterministic and fast, no extra dependencies.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: Vec<char> = "AWS4-HMAC-SHA256 Credential=/,;=SignedHeaders Signature \
                                   aws4_request us-east-1 kms host x-amz-date 0123456789abcdef\t%.é"
            .chars()
            .collect();
        let v = kms_verifier();
        let base = sign_with_sdk(Spec::default());
        let good = base.authorization();
        for round in 0..2000 {
            let len = usize::try_from(next() % 200).unwrap();
            let mut s: String = (0..len)
                .map(|_| alphabet[usize::try_from(next()).unwrap() % alphabet.len()])
                .collect();
            if round % 2 == 0 {
                // Mutate a valid header instead of generating from scratch.
                let mut chars: Vec<char> = good.chars().collect();
                for _ in 0..(next() % 4 + 1) {
                    let at = usize::try_from(next()).unwrap() % chars.len();
                    chars[at] = alphabet[usize::try_from(next()).unwrap() % alphabet.len()];
                }
                s = chars.into_iter().collect();
            }
            let mut req = sign_with_sdk(Spec::default());
            req.headers.insert(
                AUTHORIZATION,
                HeaderValue::from_bytes(s.as_bytes()).unwrap(),
            );
            req.path = s.clone();
            req.query = Some(s.clone());
            let signed = req.signed();
            if let Ok(parsed) = v.parse(&signed) {
                let _ = v.verify(&signed, &parsed, SECRET.as_bytes(), t0());
            }
            let _ = canonical_uri(&s);
            let _ = canonical_query(&s);
            let _ = parse_amz_date(&s);
            let _ = parse_http_date(&s);
        }
    }

    // ---- canonicalisation helpers ----

    #[test]
    fn canonical_uri_cases() {
        for (input, expected) in [
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("/.", "/"),
            ("/..", "/"),
            ("/../a", "/a"),
            ("a/b", "/a/b"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/./b/../../c", "/c"),
            ("//a//b//", "/a/b/"),
            ("/a/...", "/a/..."),
            ("/foo%20bar", "/foo%2520bar"),
            ("/foo bar", "/foo%20bar"),
            ("/a+b=c:d@e", "/a%2Bb%3Dc%3Ad%40e"),
            ("/%2E%2E/x", "/%252E%252E/x"),
        ] {
            assert_eq!(canonical_uri(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn canonical_query_cases() {
        for (input, expected) in [
            ("", ""),
            ("&&", ""),
            ("a", "a="),
            ("b=2&a=1", "a=1&b=2"),
            ("a=2&a=1&a=10", "a=1&a=10&a=2"),
            ("a=b=c", "a=b%3Dc"),
            ("x=a+b%20c", "x=a%20b%20c"),
            ("x=%2b", "x=%2B"),
            ("x=%zz%4", "x=%25zz%254"),
            ("%7e=~", "~=~"),
            ("B=1&a=1&_=1", "B=1&_=1&a=1"),
        ] {
            assert_eq!(canonical_query(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn error_types_and_messages() {
        assert_eq!(
            AuthError::Missing.aws_type(),
            "MissingAuthenticationTokenException"
        );
        let incomplete = AuthError::Incomplete("x".to_owned());
        assert_eq!(incomplete.aws_type(), "IncompleteSignatureException");
        assert_eq!(incomplete.message(), "x");
        let signature = AuthError::Signature("y".to_owned());
        assert_eq!(signature.aws_type(), "InvalidSignatureException");
        assert_eq!(signature.message(), "y");
    }

    #[test]
    fn verifier_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Verifier>();
        assert_send_sync::<ParsedAuth>();
    }
}
