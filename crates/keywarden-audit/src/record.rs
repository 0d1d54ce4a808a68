//! The record schema: [`Record`] (one line of the audit file, as `verify`
//! and `query` read it), what the request pipeline hands over ([`Facts`],
//! [`Outcome`]) and [`Entry`], a request's record on its way to the writer,
//! with the one-pass canonical serialisation that must write exactly the
//! bytes serde writes for the equivalent [`Record`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Longest operation name (the `X-Amz-Target` value) recorded.
pub(crate) const MAX_TARGET_CHARS: usize = 128;

/// One audit record: one line of the audit file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When the request was answered, Unix milliseconds.
    pub time_ms: i64,
    /// The `x-amzn-RequestId` the caller got.
    pub request_id: String,
    /// The peer address (`ip:port`).
    pub source: String,
    /// The access key id: of the authenticated caller, or the one a request
    /// that failed authentication claimed (`authenticated` false); empty
    /// when the request named none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub principal: String,
    /// The authenticated principal's ARN: the account's root, an IAM
    /// user, a role session, or a product's principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_arn: Option<String>,
    /// Whether the signature was verified.
    pub authenticated: bool,
    /// The product code when a cloud product's credential signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// The account the request acted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The full `X-Amz-Target` (`TrentService.Encrypt`); empty if missing.
    pub operation: String,
    /// The keys as the request named them: `KeyId`, `SourceKeyId`,
    /// `DestinationKeyId` → value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, String>,
    /// The key ARNs the response named (`SourceKeyId`, `KeyId`,
    /// `KeyMetadata.Arn`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_arns: Vec<String>,
    /// Encryption context keys per request field (`EncryptionContext`,
    /// `SourceEncryptionContext`, `DestinationEncryptionContext`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context_keys: BTreeMap<String, Vec<String>>,
    /// The contexts with values, only with `[audit] context_values = true`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context_values: BTreeMap<String, BTreeMap<String, String>>,
    /// The HTTP status answered.
    pub status: u16,
    /// The AWS error type, for errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// For an access denial decided by policies, what decided it:
    /// `explicit-deny-key-policy`, `explicit-deny-identity-policy`,
    /// `no-key-policy-allows`, `no-identity-policy-allows`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_by: Option<String>,
    /// HMAC-SHA256 (hex) over the previous record's mac and this record's
    /// canonical bytes; empty only while computing them.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
}

/// What the request pipeline learnt about the caller, filled in as it goes.
#[derive(Default)]
pub struct Facts {
    /// The access key id the request claimed (set before verification).
    pub claimed_principal: String,
    /// Set once the signature verified.
    pub authenticated: bool,
    /// The account acted for.
    pub account: Option<String>,
    /// The product, for product callers.
    pub product: Option<String>,
    /// The authenticated principal's ARN.
    pub principal_arn: Option<String>,
    /// For a denial decided by policies, which kind decided.
    pub denied_by: Option<&'static str>,
    /// The request body (a reference-counted view, not a copy).
    pub body: Option<Bytes>,
}

impl Facts {
    /// The principal for the access log: only an authenticated one.
    pub fn authenticated_principal(&self) -> &str {
        if self.authenticated {
            &self.claimed_principal
        } else {
            ""
        }
    }
}

/// How a request ended, for its record.
pub enum Outcome<'a> {
    /// 200 with this response body (only key ARNs are read from it).
    Ok(&'a [u8]),
    /// 200 from a handler that names the key ARN itself (if any).
    OkNamed(Option<String>),
    /// An error answer.
    Err {
        /// HTTP status.
        status: u16,
        /// AWS error type.
        error_type: &'static str,
    },
}

/// The request fields an audit record needs, borrowed from the body; every
/// other field (plaintext, ciphertext, grant tokens, ...) is skipped
/// unread.
#[derive(Deserialize, Default)]
struct RequestFields<'a> {
    #[serde(rename = "KeyId", borrow, default)]
    key_id: Option<Cow<'a, str>>,
    #[serde(rename = "SourceKeyId", borrow, default)]
    source_key_id: Option<Cow<'a, str>>,
    #[serde(rename = "DestinationKeyId", borrow, default)]
    destination_key_id: Option<Cow<'a, str>>,
    #[serde(rename = "EncryptionContext", borrow, default)]
    context: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
    #[serde(rename = "SourceEncryptionContext", borrow, default)]
    source_context: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
    #[serde(rename = "DestinationEncryptionContext", borrow, default)]
    destination_context: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}

#[derive(Deserialize, Default)]
struct ResponseFields<'a> {
    #[serde(rename = "KeyId", borrow, default)]
    key_id: Option<Cow<'a, str>>,
    #[serde(rename = "SourceKeyId", borrow, default)]
    source_key_id: Option<Cow<'a, str>>,
    #[serde(rename = "KeyMetadata", borrow, default)]
    metadata: Option<MetadataFields<'a>>,
}

#[derive(Deserialize, Default)]
struct MetadataFields<'a> {
    #[serde(rename = "Arn", borrow, default)]
    arn: Option<Cow<'a, str>>,
}

/// One request's record as the request hands it to the writer: the values
/// it owns moved in, and only the request fields recorded (the body, which
/// may carry plaintext, is not kept). `seq` and `mac` are the writer's,
/// which serialises it once (`Chain::append`) to exactly the line serde
/// writes for the equivalent [`Record`].
#[derive(Debug)]
pub struct Entry {
    time_ms: i64,
    request_id: String,
    source: String,
    principal: String,
    principal_arn: Option<String>,
    authenticated: bool,
    product: Option<String>,
    account: Option<String>,
    denied_by: Option<&'static str>,
    /// The full target; cut to [`MAX_TARGET_CHARS`] when written.
    operation: String,
    /// The request fields recorded (none for unauthenticated requests).
    requested: Requested,
    context_values: bool,
    key_arns: Vec<String>,
    status: u16,
    error_type: Option<&'static str>,
}

impl Entry {
    /// The entry of one request: a borrowed, partial parse of the request
    /// body (of authenticated requests only) and of a response body. Takes
    /// the account and product out of `facts` (the principal is copied: the
    /// access log still needs it).
    pub fn new(
        time_ms: i64,
        request_id: &str,
        source: &str,
        operation: String,
        facts: &mut Facts,
        outcome: Outcome<'_>,
        context_values: bool,
    ) -> Entry {
        let (status, error_type, key_arns) = match outcome {
            Outcome::Ok(body) => (200, None, response_key_arns(body)),
            Outcome::OkNamed(arn) => (
                200,
                None,
                arn.filter(|a| a.starts_with("arn:")).into_iter().collect(),
            ),
            Outcome::Err { status, error_type } => (status, Some(error_type), Vec::new()),
        };
        // Only authenticated requests' bodies are read: an unauthenticated
        // caller's body is not trusted enough to be worth recording.
        let requested = match (facts.authenticated, &facts.body) {
            (true, Some(body)) => Requested::parse(body, context_values),
            _ => Requested::default(),
        };
        Entry {
            time_ms,
            request_id: request_id.to_owned(),
            source: source.to_owned(),
            principal: facts.claimed_principal.clone(),
            principal_arn: facts.principal_arn.take(),
            authenticated: facts.authenticated,
            product: facts.product.take(),
            account: facts.account.take(),
            denied_by: facts.denied_by,
            operation,
            requested,
            context_values,
            key_arns,
            status,
            error_type,
        }
    }
}

/// The key ARNs a response body names (a borrowed, partial parse).
fn response_key_arns(body: &[u8]) -> Vec<String> {
    let fields: ResponseFields<'_> = serde_json::from_slice(body).unwrap_or_default();
    [
        fields.source_key_id,
        fields.key_id,
        fields.metadata.and_then(|m| m.arn),
    ]
    .into_iter()
    .flatten()
    .filter(|arn| arn.starts_with("arn:"))
    .map(Cow::into_owned)
    .collect()
}

/// The request fields a record keeps, owned, names in canonical (sorted)
/// order: `DestinationKeyId`, `KeyId`, `SourceKeyId` and
/// `DestinationEncryptionContext`, `EncryptionContext`,
/// `SourceEncryptionContext`.
#[derive(Debug, Default)]
struct Requested {
    key_ids: [Option<String>; 3],
    /// Each context's pairs, sorted by key and without duplicates (as a
    /// map holds them); the values are empty unless recorded.
    contexts: [Option<Vec<(String, String)>>; 3],
}

const KEY_ID_NAMES: [&str; 3] = ["DestinationKeyId", "KeyId", "SourceKeyId"];
const CONTEXT_NAMES: [&str; 3] = [
    "DestinationEncryptionContext",
    "EncryptionContext",
    "SourceEncryptionContext",
];

impl Requested {
    fn parse(body: &[u8], context_values: bool) -> Requested {
        // A body that is not the JSON expected records no fields; the
        // request's own answer says why.
        let fields: RequestFields<'_> = serde_json::from_slice(body).unwrap_or_default();
        let context = |c: Option<BTreeMap<Cow<'_, str>, Cow<'_, str>>>| {
            c.map(|c| {
                c.into_iter()
                    .map(|(k, v)| {
                        let v = if context_values {
                            v.into_owned()
                        } else {
                            String::new()
                        };
                        (k.into_owned(), v)
                    })
                    .collect()
            })
        };
        Requested {
            key_ids: [
                fields.destination_key_id.map(Cow::into_owned),
                fields.key_id.map(Cow::into_owned),
                fields.source_key_id.map(Cow::into_owned),
            ],
            contexts: [
                context(fields.destination_context),
                context(fields.context),
                context(fields.source_context),
            ],
        }
    }
}

impl Entry {
    /// The record's canonical JSON at position `seq` of the chain (what the
    /// mac covers), borrowed from the entry.
    pub(crate) fn canonical(&self, seq: u64) -> CanonicalRecord<'_> {
        let requested = &self.requested;
        let named = |i: usize| (CONTEXT_NAMES[i], requested.contexts[i].as_deref());
        CanonicalRecord {
            seq,
            time_ms: self.time_ms,
            request_id: &self.request_id,
            source: &self.source,
            principal: &self.principal,
            principal_arn: self.principal_arn.as_deref(),
            authenticated: self.authenticated,
            product: self.product.as_deref(),
            account: self.account.as_deref(),
            operation: first_chars(&self.operation, MAX_TARGET_CHARS),
            keys: Named([0, 1, 2].map(|i| (KEY_ID_NAMES[i], requested.key_ids[i].as_ref()))),
            key_arns: &self.key_arns,
            context_keys: Named([0, 1, 2].map(|i| {
                let (name, c) = named(i);
                (name, c.map(ContextKeys))
            })),
            context_values: Named([0, 1, 2].map(|i| {
                let (name, c) = named(i);
                (name, c.filter(|_| self.context_values).map(ContextMap))
            })),
            status: self.status,
            error_type: self.error_type,
            denied_by: self.denied_by,
        }
    }
}

/// `s` cut to its first `n` characters.
fn first_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A record's canonical JSON, borrowed from its [`Entry`] and the parsed
/// request: the same field names, order and omissions as [`Record`]
/// (`mac` aside), so serde_json writes the same bytes
/// (`tests::entries_write_the_lines_records_wrote` holds them equal).
#[derive(Serialize)]
pub(crate) struct CanonicalRecord<'a> {
    seq: u64,
    time_ms: i64,
    request_id: &'a str,
    source: &'a str,
    #[serde(skip_serializing_if = "str_is_empty")]
    principal: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal_arn: Option<&'a str>,
    authenticated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    product: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<&'a str>,
    operation: &'a str,
    #[serde(skip_serializing_if = "Named::is_empty")]
    keys: Named<&'a String>,
    #[serde(skip_serializing_if = "slice_is_empty")]
    key_arns: &'a [String],
    #[serde(skip_serializing_if = "Named::is_empty")]
    context_keys: Named<ContextKeys<'a>>,
    #[serde(skip_serializing_if = "Named::is_empty")]
    context_values: Named<ContextMap<'a>>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    denied_by: Option<&'a str>,
}

fn str_is_empty(s: &&str) -> bool {
    s.is_empty()
}

fn slice_is_empty(s: &&[String]) -> bool {
    s.is_empty()
}

/// A JSON object of the present values, names in the order given (sorted,
/// as a `BTreeMap<String, _>` would write them).
struct Named<T>([(&'static str, Option<T>); 3]);

impl<T> Named<T> {
    fn is_empty(&self) -> bool {
        self.0.iter().all(|(_, v)| v.is_none())
    }
}

impl<T: Serialize> Serialize for Named<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            self.0
                .iter()
                .filter_map(|(name, value)| value.as_ref().map(|v| (name, v))),
        )
    }
}

/// A context's keys, as a JSON array.
struct ContextKeys<'a>(&'a [(String, String)]);

impl Serialize for ContextKeys<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(k, _)| k))
    }
}

/// A context with its values, as a JSON object.
struct ContextMap<'a>(&'a [(String, String)]);

impl Serialize for ContextMap<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{head_path, AuditKey, Chain, HeadFile};
    use crate::test_support::{as_record, entry};
    use crate::verify::{verify, Verified};

    #[test]
    fn records_keep_only_what_is_allowed() {
        let r = as_record(&entry(1));
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains("c2VjcmV0") && !line.contains("tok") && !line.contains("t1\""));
        assert_eq!(r.keys["KeyId"], "alias/k1");
        assert_eq!(
            r.context_keys["EncryptionContext"],
            vec!["tenant".to_owned()]
        );
        assert_eq!(
            r.key_arns,
            vec!["arn:aws:kms:us-east-1:111122223333:key/abc"]
        );
        assert!(r.context_values.is_empty());
        let unauth = as_record(&Entry::new(
            1,
            "r",
            "s",
            "TrentService.Decrypt".to_owned(),
            &mut Facts {
                claimed_principal: "AKIDX".into(),
                body: Some(Bytes::from_static(br#"{"KeyId":"k"}"#)),
                ..Facts::default()
            },
            Outcome::Err {
                status: 400,
                error_type: "InvalidSignatureException",
            },
            false,
        ));
        assert!(!unauth.authenticated && unauth.keys.is_empty());
        assert_eq!(
            unauth.error_type.as_deref(),
            Some("InvalidSignatureException")
        );
    }

    /// How a record was built before [`Entry`] (owned copies, the body
    /// parsed on the request path), kept to hold the format fixed.
    fn old_build_record(
        time_ms: i64,
        request_id: &str,
        source: &str,
        target: &str,
        facts: &Facts,
        outcome: &Outcome<'_>,
        context_values: bool,
    ) -> Record {
        let mut record = Record {
            seq: 0,
            time_ms,
            request_id: request_id.to_owned(),
            source: source.to_owned(),
            principal: facts.claimed_principal.clone(),
            principal_arn: facts.principal_arn.clone(),
            authenticated: facts.authenticated,
            product: facts.product.clone(),
            account: facts.account.clone(),
            operation: target.chars().take(MAX_TARGET_CHARS).collect(),
            keys: BTreeMap::new(),
            key_arns: Vec::new(),
            context_keys: BTreeMap::new(),
            context_values: BTreeMap::new(),
            status: 200,
            error_type: None,
            denied_by: facts.denied_by.map(str::to_owned),
            mac: String::new(),
        };
        if let (true, Some(body)) = (facts.authenticated, &facts.body) {
            let fields: RequestFields<'_> = serde_json::from_slice(body).unwrap_or_default();
            for (name, value) in [
                ("KeyId", fields.key_id),
                ("SourceKeyId", fields.source_key_id),
                ("DestinationKeyId", fields.destination_key_id),
            ] {
                if let Some(v) = value {
                    record.keys.insert(name.to_owned(), v.into_owned());
                }
            }
            for (name, context) in [
                ("EncryptionContext", fields.context),
                ("SourceEncryptionContext", fields.source_context),
                ("DestinationEncryptionContext", fields.destination_context),
            ] {
                let Some(context) = context else { continue };
                record.context_keys.insert(
                    name.to_owned(),
                    context.keys().map(|k| k.clone().into_owned()).collect(),
                );
                if context_values {
                    record.context_values.insert(
                        name.to_owned(),
                        context
                            .into_iter()
                            .map(|(k, v)| (k.into_owned(), v.into_owned()))
                            .collect(),
                    );
                }
            }
        }
        match outcome {
            Outcome::Ok(body) => {
                let fields: ResponseFields<'_> = serde_json::from_slice(body).unwrap_or_default();
                for arn in [
                    fields.source_key_id,
                    fields.key_id,
                    fields.metadata.and_then(|m| m.arn),
                ]
                .into_iter()
                .flatten()
                {
                    if arn.starts_with("arn:") {
                        record.key_arns.push(arn.into_owned());
                    }
                }
            }
            Outcome::OkNamed(_) => unreachable!("the keyring endpoint handed a body"),
            Outcome::Err { status, error_type } => {
                record.status = *status;
                record.error_type = Some((*error_type).to_owned());
            }
        }
        record
    }

    /// How a record was linked and written before [`Chain::append`]: the
    /// canonical bytes, then the whole record again with its mac.
    fn old_link(chain: &mut Chain, key: &AuditKey, record: &mut Record) -> Vec<u8> {
        record.seq = chain.seq + 1;
        record.mac.clear();
        let canonical = serde_json::to_vec(&*record).unwrap();
        let mac = key.mac(&chain.mac, &canonical);
        record.mac = hex::encode(mac);
        let mut line = serde_json::to_vec(&*record).unwrap();
        line.push(b'\n');
        chain.seq = record.seq;
        chain.mac = mac;
        line
    }

    #[test]
    fn entries_write_the_lines_records_wrote() {
        struct Case {
            principal: &'static str,
            authenticated: bool,
            product: Option<&'static str>,
            account: Option<&'static str>,
            body: Option<&'static str>,
            target: String,
            request_id: &'static str,
            source: &'static str,
            /// `Ok(response body)`, `Err(named ARN)` for the keyring
            /// endpoint's way, or an error answer.
            outcome: Result<Result<&'static str, Option<&'static str>>, (u16, &'static str)>,
            context_values: bool,
        }
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let base = || Case {
            principal: "AKIDEXAMPLE",
            authenticated: true,
            product: None,
            account: Some("111122223333"),
            body: Some(r#"{"KeyId":"alias/app","KeySpec":"AES_256"}"#),
            target: "TrentService.GenerateDataKey".into(),
            request_id: "3f1c0000-0000-0000-0000-00000000000b",
            source: "127.0.0.1:51234",
            outcome: Ok(Ok(
                r#"{"CiphertextBlob":"AAAA","KeyId":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab","Plaintext":"c2VjcmV0"}"#,
            )),
            context_values: false,
        };
        let cases = vec![
            base(),
            // Every request field, escapes, duplicates, empty and
            // non-ASCII contexts; values recorded.
            Case {
                body: Some(
                    r#"{"SourceKeyId":"alias/s\"q\\b","DestinationKeyId":"k\u00e9y\n","KeyId":"\ud83d\ude00","EncryptionContext":{"b":"1","a\t":"2\u0001","b":"3"},"SourceEncryptionContext":{},"DestinationEncryptionContext":{"z\/":"\"","é":"ü"},"Plaintext":"c2VjcmV0"}"#,
                ),
                context_values: true,
                ..base()
            },
            // The same without values.
            Case {
                body: Some(
                    r#"{"SourceKeyId":"alias/s\"q\\b","DestinationKeyId":"k\u00e9y\n","EncryptionContext":{"b":"1","a\t":"2"},"SourceEncryptionContext":{}}"#,
                ),
                ..base()
            },
            // Unauthenticated: no principal, no account, body unread.
            Case {
                principal: "",
                authenticated: false,
                account: None,
                outcome: Err((403, "IncompleteSignatureException")),
                ..base()
            },
            // Claimed principal with escapes, a product, no body, a long
            // multi-byte target cut at 128 characters, odd source.
            Case {
                principal: "AKID\"\\\u{7f}\u{1}",
                authenticated: false,
                product: Some("prod\"uct"),
                body: None,
                target: format!("TrentService.{}", "é\u{1}".repeat(100)),
                source: "[::1]:443",
                request_id: "r\"id",
                outcome: Err((400, "InvalidSignatureException")),
                ..base()
            },
            // A body that is not the JSON expected; an empty target.
            Case {
                body: Some(r#"{"KeyId":5}"#),
                target: String::new(),
                source: "",
                outcome: Err((500, "KMSInternalException")),
                ..base()
            },
            // Responses naming ARNs in every place, one not an ARN, escaped.
            Case {
                outcome: Ok(Ok(
                    r#"{"SourceKeyId":"arn:aws:kms:us-east-1:1:key/s\u002fx","KeyId":"alias/not-an-arn","KeyMetadata":{"Arn":"arn:aws:kms:us-east-1:1:key/m","KeyId":"m"}}"#,
                )),
                ..base()
            },
            Case {
                outcome: Ok(Ok("not json")),
                ..base()
            },
            // The keyring endpoint: a named ARN, none, not an ARN.
            Case {
                principal: "keyring/kr-1",
                product: Some("vault"),
                body: None,
                target: "Keyring.ReadKey".into(),
                outcome: Ok(Err(Some(arn))),
                ..base()
            },
            Case {
                outcome: Ok(Err(None)),
                ..base()
            },
            Case {
                outcome: Ok(Err(Some("key/\"x\""))),
                ..base()
            },
        ];
        let key = AuditKey::from_bytes(&[9; 32]);
        let (mut old_chain, mut new_chain) = (Chain::START, Chain::START);
        let mut file = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let facts = || Facts {
                claimed_principal: case.principal.to_owned(),
                authenticated: case.authenticated,
                account: case.account.map(str::to_owned),
                product: case.product.map(str::to_owned),
                principal_arn: (i % 2 == 0)
                    .then(|| format!("arn:aws:iam::111122223333:user/u\"{i}")),
                denied_by: (i % 3 == 1).then_some("no-identity-policy-allows"),
                body: case.body.map(|b| Bytes::from(b.to_owned())),
            };
            let named;
            let old_outcome = match case.outcome {
                Ok(Ok(body)) => Outcome::Ok(body.as_bytes()),
                Ok(Err(arn)) => {
                    // What the keyring endpoint handed before.
                    named = arn
                        .map(|arn| serde_json::json!({ "KeyId": arn }).to_string().into_bytes())
                        .unwrap_or_else(|| b"{}".to_vec());
                    Outcome::Ok(&named)
                }
                Err((status, error_type)) => Outcome::Err { status, error_type },
            };
            let new_outcome = match case.outcome {
                Ok(Ok(body)) => Outcome::Ok(body.as_bytes()),
                Ok(Err(arn)) => Outcome::OkNamed(arn.map(str::to_owned)),
                Err((status, error_type)) => Outcome::Err { status, error_type },
            };
            let time_ms = 1_718_000_000_123 + i as i64;
            let mut old_record = old_build_record(
                time_ms,
                case.request_id,
                case.source,
                &case.target,
                &facts(),
                &old_outcome,
                case.context_values,
            );
            let old_line = old_link(&mut old_chain, &key, &mut old_record);
            let mut new_facts = facts();
            let entry = Entry::new(
                time_ms,
                case.request_id,
                case.source,
                case.target.clone(),
                &mut new_facts,
                new_outcome,
                case.context_values,
            );
            let mut new_line = Vec::new();
            new_chain.append(&key, &entry, &mut new_line);
            assert_eq!(
                String::from_utf8_lossy(&new_line),
                String::from_utf8_lossy(&old_line),
                "case {i}"
            );
            assert_eq!(new_chain, old_chain, "case {i}");
            file.extend_from_slice(&new_line);
        }
        // And `verify` (which re-serialises each Record) accepts them.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, &file).unwrap();
        let head = HeadFile {
            seq: new_chain.seq,
            mac: hex::encode(new_chain.mac),
        };
        std::fs::write(head_path(&path), serde_json::to_vec(&head).unwrap()).unwrap();
        assert_eq!(
            verify(&path, &key).unwrap(),
            Ok(Verified {
                records: cases.len() as u64,
                beyond_head: 0
            })
        );
    }
}
