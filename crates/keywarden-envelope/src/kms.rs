//! The KMS keyring: data keys made and opened by Keywarden (or any service
//! speaking the AWS KMS API) through `GenerateDataKey`, `Encrypt` and
//! `Decrypt`, with the same semantics as the official AWS Encryption SDK's
//! KMS keyring, so messages pass between the two in both directions.
//!
//! Why `aws-sdk-kms` rather than a client of our own: it is the official
//! client, so the requests Keywarden sees from this keyring are the ones it
//! sees from every AWS SDK user (the compatibility we promise is tested with
//! it anyway); SigV4 signing, credential handling, retries with backoff,
//! timeouts, connection reuse and error decoding are done and maintained by
//! AWS instead of re-implemented here, where a signing or retry bug would be
//! a security or availability bug of ours. The cost is compile time and
//! dependency weight, which only callers of this module pay.
//!
//! The keyring has two modes:
//! - **strict** ([`KmsKeyring::strict`]): a list of key ARNs. Encrypting,
//!   the first (the generator) makes the data key with `GenerateDataKey`
//!   and every further key encrypts a copy with `Encrypt`, so any one of
//!   them can decrypt the message. Decrypting, only encrypted data keys
//!   whose provider info is one of the configured ARNs are tried, with
//!   `Decrypt` naming that ARN as `KeyId`.
//! - **discovery** ([`KmsKeyring::discovery`]): decrypt only; every `aws-kms`
//!   encrypted data key is tried with the ARN it names, optionally only keys
//!   of some accounts ([`DiscoveryFilter`]).
//!
//! The plaintext data key is held in [`Zeroizing`] buffers from the moment
//! the SDK hands it over. The SDK's own request and response buffers are not
//! zeroized (the `Encrypt` request body carries the data key); that is a
//! limit of the official client, shared with every AWS SDK user.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::materials::{DecryptionRequest, EncryptedDataKey, EncryptionContext, Keyring};
use crate::suite::AlgorithmSuite;

/// The provider id of encrypted data keys made by KMS keys.
pub const PROVIDER_ID: &str = "aws-kms";

/// How to reach the key service without any ambient AWS configuration:
/// explicit endpoint, region and static credentials. `Debug` hides the
/// secret.
pub struct KmsClientConfig {
    /// The service URL, e.g. `http://127.0.0.1:8080`.
    pub endpoint: String,
    /// The region used in SigV4 scopes, e.g. `us-east-1`.
    pub region: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key (zeroized on drop).
    pub secret_access_key: Zeroizing<String>,
    /// A session token, for temporary credentials.
    pub session_token: Option<Zeroizing<String>>,
}

impl fmt::Debug for KmsClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsClientConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl KmsClientConfig {
    /// An `aws-sdk-kms` client for this configuration (no environment,
    /// profile or instance metadata is consulted).
    pub fn client(&self) -> Result<aws_sdk_kms::Client, Error> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(Error::Config(
                "the endpoint must be an http:// or https:// URL".into(),
            ));
        }
        if self.region.is_empty() {
            return Err(Error::Config("the region must not be empty".into()));
        }
        if self.access_key_id.is_empty() || self.secret_access_key.is_empty() {
            return Err(Error::Config(
                "an access key id and a secret access key are required".into(),
            ));
        }
        let credentials = Credentials::new(
            &self.access_key_id,
            self.secret_access_key.as_str(),
            self.session_token.as_ref().map(|t| t.to_string()),
            None,
            "keywarden-envelope",
        );
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(credentials)
            .endpoint_url(&self.endpoint)
            .build();
        Ok(aws_sdk_kms::Client::from_conf(config))
    }
}

/// Which encrypted data keys a discovery keyring may try: only keys of
/// this partition and, if `account_ids` is not empty, of these accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryFilter {
    /// The ARN partition, `aws` for Keywarden.
    pub partition: String,
    /// The allowed account ids (12 digits each); empty: any account.
    pub account_ids: Vec<String>,
}

#[derive(Debug, Clone)]
enum Mode {
    /// Generator first, then the further keys.
    Strict(Vec<String>),
    Discovery(Option<DiscoveryFilter>),
}

/// A keyring whose data keys come from a KMS (see the module docs).
#[derive(Clone)]
pub struct KmsKeyring {
    client: aws_sdk_kms::Client,
    mode: Mode,
}

impl fmt::Debug for KmsKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsKeyring")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl KmsKeyring {
    /// A strict keyring over `key_arns` (at least one; the first is the
    /// generator). Each must be a key ARN (`arn:aws:kms:<region>:<account>:key/<id>`):
    /// decryption matches them byte for byte against what KMS wrote into
    /// the message, which is always the key ARN, never an alias.
    pub fn strict(
        client: aws_sdk_kms::Client,
        key_arns: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<KmsKeyring, Error> {
        let keys: Vec<String> = key_arns.into_iter().map(Into::into).collect();
        if keys.is_empty() {
            return Err(Error::Config("a KMS keyring needs at least one key".into()));
        }
        for key in &keys {
            if KeyArn::parse(key).is_none() {
                return Err(Error::Config(format!(
                    "{key:?} is not a KMS key ARN (arn:<partition>:kms:<region>:<account>:key/<id>)"
                )));
            }
        }
        Ok(KmsKeyring {
            client,
            mode: Mode::Strict(keys),
        })
    }

    /// A strict keyring with its own client (see [`KmsClientConfig`]).
    pub fn strict_with_config(
        config: &KmsClientConfig,
        key_arns: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<KmsKeyring, Error> {
        KmsKeyring::strict(config.client()?, key_arns)
    }

    /// A discovery keyring (decrypt only): tries every `aws-kms` encrypted
    /// data key that passes `filter`, asking KMS to decrypt it with the key
    /// the message names. Use it only where any key the credentials may use
    /// is acceptable; prefer strict mode or a filter.
    pub fn discovery(
        client: aws_sdk_kms::Client,
        filter: Option<DiscoveryFilter>,
    ) -> Result<KmsKeyring, Error> {
        if let Some(f) = &filter {
            if f.partition.is_empty() {
                return Err(Error::Config("a discovery filter needs a partition".into()));
            }
            if let Some(bad) = f.account_ids.iter().find(|a| !is_account_id(a)) {
                return Err(Error::Config(format!(
                    "{bad:?} is not an account id (12 digits)"
                )));
            }
        }
        Ok(KmsKeyring {
            client,
            mode: Mode::Discovery(filter),
        })
    }

    /// A discovery keyring with its own client.
    pub fn discovery_with_config(
        config: &KmsClientConfig,
        filter: Option<DiscoveryFilter>,
    ) -> Result<KmsKeyring, Error> {
        KmsKeyring::discovery(config.client()?, filter)
    }

    /// The configured key ARNs (strict mode), generator first; empty in
    /// discovery mode.
    pub fn key_arns(&self) -> &[String] {
        match &self.mode {
            Mode::Strict(keys) => keys,
            Mode::Discovery(_) => &[],
        }
    }

    /// Whether this keyring may try `edk`, and with which key ARN; `Err`
    /// says why not (for the error report).
    fn decryptable_with<'e>(&self, edk: &'e EncryptedDataKey) -> Result<&'e str, &'static str> {
        if edk.provider_id != PROVIDER_ID {
            return Err("not an aws-kms key");
        }
        let info =
            std::str::from_utf8(&edk.provider_info).map_err(|_| "provider info is not UTF-8")?;
        let arn = KeyArn::parse(info).ok_or("provider info is not a KMS key ARN")?;
        match &self.mode {
            Mode::Strict(keys) => {
                if keys.iter().any(|k| k == info) {
                    Ok(info)
                } else {
                    Err("not one of the configured keys")
                }
            }
            Mode::Discovery(None) => Ok(info),
            Mode::Discovery(Some(filter)) => {
                if arn.partition != filter.partition {
                    Err("partition not allowed by the discovery filter")
                } else if !filter.account_ids.is_empty()
                    && !filter.account_ids.iter().any(|a| a == arn.account)
                {
                    Err("account not allowed by the discovery filter")
                } else {
                    Ok(info)
                }
            }
        }
    }
}

#[async_trait]
impl Keyring for KmsKeyring {
    async fn on_encrypt(
        &self,
        suite: AlgorithmSuite,
        context: &EncryptionContext,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<EncryptedDataKey>), Error> {
        let Mode::Strict(keys) = &self.mode else {
            return Err(Error::Config(
                "a discovery KMS keyring cannot encrypt: name the keys".into(),
            ));
        };
        let (generator, others) = keys.split_first().expect("checked non-empty");
        let len = suite.data_key_len();
        let number_of_bytes =
            i32::try_from(len).map_err(|_| Error::Config("data key length".into()))?;

        const GDK: &str = "GenerateDataKey";
        let out = self
            .client
            .generate_data_key()
            .key_id(generator)
            .number_of_bytes(number_of_bytes)
            .set_encryption_context(sdk_context(context))
            .send()
            .await
            .map_err(|e| Error::KeyProvider(format!("{GDK} with {generator}: {}", describe(&e))))?;
        // Into a zeroizing buffer before any check, so every path zeroizes.
        let data_key = Zeroizing::new(
            out.plaintext
                .map(Blob::into_inner)
                .ok_or_else(|| bad_response(GDK, "no Plaintext"))?,
        );
        if data_key.len() != len {
            return Err(bad_response(GDK, "the data key has the wrong length"));
        }
        let mut edks = Vec::with_capacity(keys.len());
        edks.push(edk_from(GDK, out.key_id, out.ciphertext_blob)?);

        const ENC: &str = "Encrypt";
        for key in others {
            let out = self
                .client
                .encrypt()
                .key_id(key)
                .plaintext(Blob::new(data_key.to_vec()))
                .set_encryption_context(sdk_context(context))
                .send()
                .await
                .map_err(|e| Error::KeyProvider(format!("{ENC} with {key}: {}", describe(&e))))?;
            edks.push(edk_from(ENC, out.key_id, out.ciphertext_blob)?);
        }
        Ok((data_key, edks))
    }

    async fn on_decrypt(
        &self,
        request: DecryptionRequest<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let len = request.suite.data_key_len();
        let mut reasons: Vec<String> = Vec::new();
        let mut skipped = 0usize;
        for (i, edk) in request.encrypted_data_keys.iter().enumerate() {
            let arn = match self.decryptable_with(edk) {
                Ok(arn) => arn,
                Err(_) => {
                    skipped += 1;
                    continue;
                }
            };
            let result = self
                .client
                .decrypt()
                .key_id(arn)
                .ciphertext_blob(Blob::new(edk.ciphertext.clone()))
                .set_encryption_context(sdk_context(request.context))
                .send()
                .await;
            let out = match result {
                Ok(out) => out,
                Err(e) => {
                    reasons.push(format!("key {i} ({arn}): {}", describe(&e)));
                    continue;
                }
            };
            let data_key = Zeroizing::new(out.plaintext.map(Blob::into_inner).unwrap_or_default());
            if out.key_id.as_deref() != Some(arn) {
                // KMS decrypted with a key other than the one asked for: never
                // trust that answer.
                reasons.push(format!(
                    "key {i} ({arn}): Decrypt answered for another key ({})",
                    out.key_id.as_deref().unwrap_or("none")
                ));
                continue;
            }
            if data_key.len() != len {
                reasons.push(format!(
                    "key {i} ({arn}): Decrypt returned a data key of the wrong length"
                ));
                continue;
            }
            return Ok(data_key);
        }
        let mode = match &self.mode {
            Mode::Strict(keys) => format!("strict mode, keys [{}]", keys.join(", ")),
            Mode::Discovery(None) => "discovery mode".to_owned(),
            Mode::Discovery(Some(f)) => format!(
                "discovery mode, partition {}, accounts [{}]",
                f.partition,
                f.account_ids.join(", ")
            ),
        };
        let mut report = format!(
            "{} of {} encrypted data keys tried ({mode})",
            reasons.len(),
            request.encrypted_data_keys.len(),
        );
        if skipped > 0 {
            report.push_str(&format!(
                "; {skipped} not eligible (other provider or key not allowed)"
            ));
        }
        for r in reasons {
            report.push_str("; ");
            report.push_str(&r);
        }
        Err(Error::NoDecryptableKey(report))
    }
}

/// The parts of a key ARN this keyring looks at.
#[derive(Debug, PartialEq, Eq)]
struct KeyArn<'a> {
    partition: &'a str,
    account: &'a str,
}

impl<'a> KeyArn<'a> {
    /// `arn:<partition>:kms:<region>:<account>:key/<id>`, nothing else
    /// (alias ARNs are not key ARNs).
    fn parse(s: &'a str) -> Option<KeyArn<'a>> {
        let mut parts = s.splitn(6, ':');
        let (arn, partition, service, region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        let id = resource.strip_prefix("key/")?;
        (arn == "arn"
            && !partition.is_empty()
            && service == "kms"
            && !region.is_empty()
            && is_account_id(account)
            && !id.is_empty()
            && !id.contains(['/', ':']))
        .then_some(KeyArn { partition, account })
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The SDK's shape for a context; `None` when empty (the field is then
/// omitted, as the official SDKs do).
fn sdk_context(context: &EncryptionContext) -> Option<HashMap<String, String>> {
    (!context.is_empty()).then(|| {
        context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// An encrypted data key from a `GenerateDataKey` or `Encrypt` answer: the
/// provider info is the key ARN KMS reports, which must be a key ARN.
fn edk_from(
    operation: &str,
    key_id: Option<String>,
    blob: Option<Blob>,
) -> Result<EncryptedDataKey, Error> {
    let key_id = key_id.ok_or_else(|| bad_response(operation, "no KeyId"))?;
    if KeyArn::parse(&key_id).is_none() {
        return Err(bad_response(operation, "KeyId is not a key ARN"));
    }
    let ciphertext = blob
        .map(Blob::into_inner)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad_response(operation, "no CiphertextBlob"))?;
    Ok(EncryptedDataKey {
        provider_id: PROVIDER_ID.to_owned(),
        provider_info: key_id.into_bytes(),
        ciphertext,
    })
}

fn bad_response(operation: &str, problem: &str) -> Error {
    Error::KeyProvider(format!("{operation}: unexpected answer: {problem}"))
}

/// An SDK error as `<AWS error code>: <message>`, or the transport problem
/// when there is no AWS answer. Neither carries request bodies, so no
/// secret.
fn describe<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err.code() {
        Some(code) => format!("{code}: {}", err.message().unwrap_or_default()),
        None => match err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                format!("cannot reach the key service: {}", error_chain(err))
            }
            _ => error_chain(err),
        },
    }
}

/// `err` and its sources on one line (`a: b: c`), each level's Display
/// only: the SDK's `DisplayErrorContext` appends a Debug dump of the whole
/// error, which is no message for a person.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        // Some levels repeat their source's text; say it once.
        if !text.is_empty() && !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const B: &str = "arn:aws:kms:us-east-1:444455556666:key/0987dcba-09fe-87dc-65ba-ab0987654321";

    fn client() -> aws_sdk_kms::Client {
        KmsClientConfig {
            endpoint: "http://127.0.0.1:1".into(),
            region: "us-east-1".into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Zeroizing::new("not-a-real-secret".into()),
            session_token: None,
        }
        .client()
        .unwrap()
    }

    fn edk(provider: &str, info: &str) -> EncryptedDataKey {
        EncryptedDataKey {
            provider_id: provider.into(),
            provider_info: info.as_bytes().to_vec(),
            ciphertext: vec![1, 2, 3],
        }
    }

    #[test]
    fn key_arns_parse_strictly() {
        assert_eq!(
            KeyArn::parse(A),
            Some(KeyArn {
                partition: "aws",
                account: "111122223333"
            })
        );
        for bad in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/foo",
            "arn:aws:kms:us-east-1:111122223333:alias/foo",
            "arn:aws:s3:us-east-1:111122223333:key/x",
            "arn:aws:kms:us-east-1:11112222333:key/x",
            "arn:aws:kms::111122223333:key/x",
            "arn:aws:kms:us-east-1:111122223333:key/",
            "arn:aws:kms:us-east-1:111122223333:key/a/b",
        ] {
            assert_eq!(KeyArn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn construction_checks_keys_and_filters() {
        assert!(matches!(
            KmsKeyring::strict(client(), Vec::<String>::new()),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            KmsKeyring::strict(client(), ["alias/mine"]),
            Err(Error::Config(_))
        ));
        let k = KmsKeyring::strict(client(), [A, B]).unwrap();
        assert_eq!(k.key_arns(), [A, B]);
        assert!(matches!(
            KmsKeyring::discovery(
                client(),
                Some(DiscoveryFilter {
                    partition: "aws".into(),
                    account_ids: vec!["123".into()]
                })
            ),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn strict_mode_only_tries_configured_keys() {
        let k = KmsKeyring::strict(client(), [A]).unwrap();
        assert_eq!(k.decryptable_with(&edk("aws-kms", A)), Ok(A));
        assert!(k.decryptable_with(&edk("aws-kms", B)).is_err());
        assert!(k.decryptable_with(&edk("raw-aes", A)).is_err());
    }

    #[test]
    fn discovery_filter_by_partition_and_account() {
        let open = KmsKeyring::discovery(client(), None).unwrap();
        assert_eq!(open.decryptable_with(&edk("aws-kms", B)), Ok(B));
        assert!(open.decryptable_with(&edk("aws-kms", "alias/x")).is_err());
        assert!(open.decryptable_with(&edk("other", B)).is_err());

        let only_a = KmsKeyring::discovery(
            client(),
            Some(DiscoveryFilter {
                partition: "aws".into(),
                account_ids: vec!["111122223333".into()],
            }),
        )
        .unwrap();
        assert_eq!(only_a.decryptable_with(&edk("aws-kms", A)), Ok(A));
        assert!(only_a.decryptable_with(&edk("aws-kms", B)).is_err());
        let cn = KmsKeyring::discovery(
            client(),
            Some(DiscoveryFilter {
                partition: "aws-cn".into(),
                account_ids: vec![],
            }),
        )
        .unwrap();
        assert!(cn.decryptable_with(&edk("aws-kms", A)).is_err());
    }

    #[test]
    fn debug_shows_no_secret() {
        let c = KmsClientConfig {
            endpoint: "http://x".into(),
            region: "r".into(),
            access_key_id: "AKID".into(),
            secret_access_key: Zeroizing::new("s3cr3t-value".into()),
            session_token: Some(Zeroizing::new("t0ken-value".into())),
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("t0ken"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn discovery_cannot_encrypt_and_errors_carry_reasons() {
        let k = KmsKeyring::discovery(client(), None).unwrap();
        let ctx = EncryptionContext::new();
        assert!(matches!(
            k.on_encrypt(AlgorithmSuite::Aes256GcmHkdfSha512CommitKey, &ctx)
                .await,
            Err(Error::Config(_))
        ));
        // Nothing eligible: no call is made, the report says why.
        let strict = KmsKeyring::strict(client(), [A]).unwrap();
        let edks = [edk("aws-kms", B), edk("raw", "x")];
        let err = strict
            .on_decrypt(DecryptionRequest {
                suite: AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
                context: &ctx,
                encrypted_data_keys: &edks,
            })
            .await
            .unwrap_err();
        let Error::NoDecryptableKey(why) = err else {
            panic!("{err:?}")
        };
        assert!(why.contains("2 not eligible"), "{why}");
    }
}
