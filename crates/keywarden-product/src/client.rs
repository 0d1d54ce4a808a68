//! The network half: the product's Keywarden client and the four steps.

use std::fmt;

use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::config::{BehaviorVersion, Region};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::operation::RequestId;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use crate::crypto::{self, DataKey, DATA_KEY_LEN};
use crate::envelope::{
    self, arn_account, is_account_id, Context, Envelope, Header, MAX_ENCRYPTED_DATA_KEY_LEN,
    MAX_KEY_ARN_LEN,
};
use crate::error::{Error, Result};

/// A secret string (the product's secret access key): zeroized on drop,
/// `Debug` prints no characters of it, no `Clone`.
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps `secret`.
    pub fn new(secret: String) -> SecretString {
        SecretString(Zeroizing::new(secret))
    }

    /// The secret itself, for handing to the SDK.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(secret: String) -> SecretString {
        SecretString::new(secret)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// How a product reaches Keywarden and who it is.
pub struct ProductConfig {
    /// Keywarden's URL, e.g. `http://127.0.0.1:8080`.
    pub endpoint: String,
    /// The region in ARNs and in SigV4 scopes, e.g. `us-east-1`.
    pub region: String,
    /// The product's registered code (`zos`, `evs`, ...): names its default
    /// keys.
    pub product_code: String,
    /// The product credential's access key id (from
    /// `keywarden admin product credentials create`).
    pub access_key_id: String,
    /// The product credential's secret access key.
    pub secret_access_key: SecretString,
}

impl fmt::Debug for ProductConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProductConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("product_code", &self.product_code)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .finish()
    }
}

/// A plaintext data key handed to the product to use itself (a disk
/// encryption passphrase, a key for its own cipher), from
/// [`ProductClient::generate_data_key`] or
/// [`ProductClient::decrypt_data_key`]: 32 bytes, zeroized on drop, no
/// `Clone`, `Debug` shows nothing.
pub struct PlaintextDataKey(Zeroizing<[u8; DATA_KEY_LEN]>);

impl PlaintextDataKey {
    /// Takes the key out of a buffer of exactly 32 bytes; the buffer is
    /// zeroized when it is dropped, whatever its length.
    fn from_buffer(buffer: Zeroizing<Vec<u8>>) -> Option<PlaintextDataKey> {
        let bytes: &[u8; DATA_KEY_LEN] = buffer.as_slice().try_into().ok()?;
        Some(PlaintextDataKey(Zeroizing::new(*bytes)))
    }

    /// The key bytes. Copies the caller makes are the caller's to zeroize.
    pub fn expose(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for PlaintextDataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlaintextDataKey(..)")
    }
}

/// A fresh data key from [`ProductClient::generate_data_key`]: the
/// plaintext for immediate use, and what to store to get it back later
/// (the key ARN and the encrypted data key, with the encryption context the
/// caller chose).
#[derive(Debug)]
pub struct GeneratedDataKey {
    /// The data key in plaintext.
    pub plaintext: PlaintextDataKey,
    /// The ARN of the KMS key that encrypted it (a key ARN, not an alias):
    /// the `KeyId` [`ProductClient::decrypt_data_key`] must name.
    pub key_arn: String,
    /// The data key encrypted by Keywarden (an opaque ciphertext blob).
    pub encrypted_data_key: Vec<u8>,
}

/// Which KMS key protects an object's data key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyChoice {
    /// The tenant's default key for this product
    /// ([`ProductClient::default_key_arn`]); Keywarden creates it on the
    /// product's first request for the account.
    Default,
    /// A customer managed key named by its key ARN or alias ARN, in the same
    /// account (for database products, once the tenant grants them a CMK).
    Arn(String),
}

/// A cloud product's connection to Keywarden, performing envelope
/// encryption for its tenants. Cheap to share: hold one per process.
#[derive(Clone, Debug)]
pub struct ProductClient {
    kms: aws_sdk_kms::Client,
    region: String,
    product_code: String,
}

impl ProductClient {
    /// Builds the client from `config`: static credentials, the given
    /// endpoint and region, the SDK's latest behaviour version. Makes no
    /// request.
    pub fn new(config: ProductConfig) -> Result<ProductClient> {
        if !(config.endpoint.starts_with("http://") || config.endpoint.starts_with("https://")) {
            return Err(Error::Config("endpoint must be an http:// or https:// URL"));
        }
        if config.region.is_empty() || config.region.contains(':') {
            return Err(Error::Config("region must be non-empty and contain no ':'"));
        }
        let code = &config.product_code;
        if !(2..=16).contains(&code.len())
            || !code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(Error::Config("product code must match [a-z0-9]{2,16}"));
        }
        if config.access_key_id.is_empty() || config.secret_access_key.expose().is_empty() {
            return Err(Error::Config(
                "access key id and secret access key are required",
            ));
        }
        let credentials = aws_credential_types::Credentials::new(
            &config.access_key_id,
            config.secret_access_key.expose(),
            None,
            None,
            "keywarden-product",
        );
        let sdk_config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials)
            .endpoint_url(&config.endpoint)
            .build();
        Ok(ProductClient {
            kms: aws_sdk_kms::Client::from_conf(sdk_config),
            region: config.region,
            product_code: config.product_code,
        })
    }

    /// The product code this client signs for.
    pub fn product_code(&self) -> &str {
        &self.product_code
    }

    /// The ARN naming the tenant's default key for this product:
    /// `arn:aws:kms:<region>:<account>:alias_<product code>`.
    pub fn default_key_arn(&self, account_id: &str) -> String {
        format!(
            "arn:aws:kms:{}:{account_id}:alias_{}",
            self.region, self.product_code
        )
    }

    /// Seals `plaintext` for `account_id` (steps 1-3 of envelope
    /// encryption):
    ///
    /// 1. `GenerateDataKey` (AES_256) under `key` with `context`, returning
    ///    the data key in plaintext and encrypted, and the key's ARN;
    /// 2. AES-256-GCM encryption of `plaintext` here, with a random nonce and
    ///    the envelope header (key ARN, context, encrypted data key) as
    ///    additional authenticated data; the plaintext data key is zeroized
    ///    as soon as that is done;
    /// 3. the returned [`Envelope`] holds everything to store.
    ///
    /// `context` should name what the object is (its name, its account), so
    /// that an envelope moved to another object's place fails to open.
    pub async fn seal(
        &self,
        account_id: &str,
        key: &KeyChoice,
        context: &Context,
        plaintext: &[u8],
    ) -> Result<Envelope> {
        crypto::check_size(plaintext.len())?;
        let generated = self.generate_data_key(account_id, key, context).await?;
        let header = Header {
            key_arn: generated.key_arn,
            context: context.clone(),
            encrypted_data_key: generated.encrypted_data_key,
        };
        let dek = crypto::DataKey::from_array(generated.plaintext.0);
        crypto::seal_with_dek(dek, header, plaintext).await
    }

    /// Opens an envelope for `account_id` (step 4): checks that it belongs
    /// to `account_id` and carries exactly `context` (an envelope read from
    /// storage is untrusted), asks Keywarden to `Decrypt` its data key,
    /// naming the envelope's key ARN as `KeyId` (products must), then opens
    /// the data with AES-256-GCM. The plaintext is zeroized when dropped.
    pub async fn open(
        &self,
        account_id: &str,
        context: &Context,
        envelope: &Envelope,
    ) -> Result<Zeroizing<Vec<u8>>> {
        if !is_account_id(account_id) {
            return Err(Error::InvalidKey("account id must be 12 digits".to_owned()));
        }
        if envelope.account_id() != account_id {
            return Err(Error::WrongAccount {
                expected: account_id.to_owned(),
                found: envelope.account_id().to_owned(),
            });
        }
        if envelope.context() != context {
            return Err(Error::ContextMismatch);
        }

        const OP: &str = "Decrypt";
        let out = self
            .kms
            .decrypt()
            .key_id(envelope.key_arn())
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(
                envelope.encrypted_data_key(),
            ))
            .set_encryption_context(sdk_context(context))
            .send()
            .await
            .map_err(|e| kms_error(OP, e))?;
        let dek = out
            .plaintext
            .map(|blob| Zeroizing::new(blob.into_inner()))
            .ok_or(bad_response(OP, "no Plaintext"))?;
        let dek = DataKey::from_buffer(dek).ok_or(bad_response(OP, "data key is not 32 bytes"))?;
        crypto::open_with_dek(dek, envelope).await
    }

    /// Requests a data key for `account_id` that the product uses itself
    /// rather than through an [`Envelope`]: `GenerateDataKey` (AES_256)
    /// under `key` with `context`. The answer is checked as [`Self::seal`]
    /// checks it: a 32-byte plaintext, a key ARN in `account_id`, a
    /// ciphertext within the envelope format's limits. Store
    /// `key_arn`, `encrypted_data_key` and `context`; forget the plaintext
    /// as soon as it has been used.
    pub async fn generate_data_key(
        &self,
        account_id: &str,
        key: &KeyChoice,
        context: &Context,
    ) -> Result<GeneratedDataKey> {
        envelope::check_context(context)?;
        let key_id = self.key_arn(account_id, key)?;

        const OP: &str = "GenerateDataKey";
        let out = self
            .kms
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(sdk_context(context))
            .send()
            .await
            .map_err(|e| kms_error(OP, e))?;
        // Into a zeroizing buffer first, so a wrong length still zeroizes.
        let plaintext = out
            .plaintext
            .map(|blob| Zeroizing::new(blob.into_inner()))
            .ok_or(bad_response(OP, "no Plaintext"))?;
        let plaintext = PlaintextDataKey::from_buffer(plaintext)
            .ok_or(bad_response(OP, "data key is not 32 bytes"))?;
        let key_arn = out.key_id.ok_or(bad_response(OP, "no KeyId"))?;
        if key_arn.len() > MAX_KEY_ARN_LEN || arn_account(&key_arn) != Some(account_id) {
            return Err(bad_response(OP, "KeyId is not a key ARN in the account"));
        }
        let encrypted_data_key = out
            .ciphertext_blob
            .map(|b| b.into_inner())
            .ok_or(bad_response(OP, "no CiphertextBlob"))?;
        if encrypted_data_key.is_empty() || encrypted_data_key.len() > MAX_ENCRYPTED_DATA_KEY_LEN {
            return Err(bad_response(OP, "CiphertextBlob length out of range"));
        }
        Ok(GeneratedDataKey {
            plaintext,
            key_arn,
            encrypted_data_key,
        })
    }

    /// Gets back a data key from [`Self::generate_data_key`]: checks that
    /// `key_arn` names a key of `account_id` (what the product stored is
    /// untrusted) and that the ciphertext's length is plausible, then
    /// `Decrypt`s `encrypted_data_key` naming `key_arn` as `KeyId` (products
    /// must), with `context`, which must be the one it was generated with.
    /// The answer must name the same key and hold 32 bytes.
    pub async fn decrypt_data_key(
        &self,
        account_id: &str,
        key_arn: &str,
        context: &Context,
        encrypted_data_key: &[u8],
    ) -> Result<PlaintextDataKey> {
        if !is_account_id(account_id) {
            return Err(Error::InvalidKey("account id must be 12 digits".to_owned()));
        }
        if key_arn.len() > MAX_KEY_ARN_LEN {
            return Err(Error::InvalidKey("key ARN too long".to_owned()));
        }
        match arn_account(key_arn) {
            Some(a) if a == account_id => {}
            Some(a) => {
                return Err(Error::WrongAccount {
                    expected: account_id.to_owned(),
                    found: a.to_owned(),
                })
            }
            None => {
                return Err(Error::InvalidKey(
                    "not a KMS key ARN (arn:<partition>:kms:<region>:<account>:key/<id>)"
                        .to_owned(),
                ))
            }
        }
        envelope::check_context(context)?;
        if encrypted_data_key.is_empty() || encrypted_data_key.len() > MAX_ENCRYPTED_DATA_KEY_LEN {
            return Err(Error::InvalidKey(
                "encrypted data key length out of range".to_owned(),
            ));
        }

        const OP: &str = "Decrypt";
        let out = self
            .kms
            .decrypt()
            .key_id(key_arn)
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(encrypted_data_key))
            .set_encryption_context(sdk_context(context))
            .send()
            .await
            .map_err(|e| kms_error(OP, e))?;
        let plaintext = out
            .plaintext
            .map(|blob| Zeroizing::new(blob.into_inner()))
            .ok_or(bad_response(OP, "no Plaintext"))?;
        let plaintext = PlaintextDataKey::from_buffer(plaintext)
            .ok_or(bad_response(OP, "data key is not 32 bytes"))?;
        if out.key_id.as_deref() != Some(key_arn) {
            return Err(bad_response(
                OP,
                "KeyId is missing or differs from the key ARN asked for",
            ));
        }
        Ok(plaintext)
    }

    /// The `KeyId` to send for `key` in `account_id`.
    fn key_arn(&self, account_id: &str, key: &KeyChoice) -> Result<String> {
        if !is_account_id(account_id) {
            return Err(Error::InvalidKey("account id must be 12 digits".to_owned()));
        }
        let arn = match key {
            KeyChoice::Default => self.default_key_arn(account_id),
            KeyChoice::Arn(arn) => arn.clone(),
        };
        if arn.len() > MAX_KEY_ARN_LEN {
            return Err(Error::InvalidKey("key ARN too long".to_owned()));
        }
        match arn_account(&arn) {
            Some(a) if a == account_id => Ok(arn),
            Some(a) => Err(Error::InvalidKey(format!(
                "key ARN names account {a}, not {account_id}"
            ))),
            None => Err(Error::InvalidKey(
                "not a KMS key ARN or alias ARN (arn:<partition>:kms:<region>:<account>:...)"
                    .to_owned(),
            )),
        }
    }
}

/// The SDK's shape for the context; `None` for an empty one (the field is
/// then omitted, as AWS clients do).
fn sdk_context(context: &Context) -> Option<std::collections::HashMap<String, String>> {
    (!context.is_empty()).then(|| {
        context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

fn bad_response(operation: &'static str, problem: &'static str) -> Error {
    Error::BadResponse { operation, problem }
}

/// Keeps the server's AWS error code and message; anything without a code
/// (connection refused, timeouts) becomes [`Error::Transport`].
fn kms_error<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let request_id = err.request_id().map(str::to_owned);
    match err.code() {
        Some(code) => Error::Kms {
            operation,
            code: code.to_owned(),
            message: err.message().unwrap_or_default().to_owned(),
            request_id,
        },
        None => Error::Transport {
            operation,
            detail: DisplayErrorContext(&err).to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secret: &str) -> ProductConfig {
        ProductConfig {
            endpoint: "http://127.0.0.1:1".to_owned(),
            region: "eu-west-3".to_owned(),
            product_code: "zos".to_owned(),
            access_key_id: "AKIAEXAMPLE".to_owned(),
            secret_access_key: secret.to_owned().into(),
        }
    }

    #[test]
    fn config_debug_redacts_the_secret() {
        let shown = format!("{:?}", config("wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSECRET"));
        assert!(!shown.contains("wJalr"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains("AKIAEXAMPLE"), "{shown}");

        // The client's Debug includes the SDK's config; it must not leak.
        let client = ProductClient::new(config("wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSECRET")).unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains("wJalr"), "{shown}");
    }

    #[test]
    fn config_is_validated() {
        assert!(ProductClient::new(config("s")).is_ok());
        let mut c = config("s");
        c.endpoint = "127.0.0.1:8080".to_owned();
        assert!(matches!(ProductClient::new(c), Err(Error::Config(_))));
        let mut c = config("s");
        c.product_code = "ZOS".to_owned();
        assert!(matches!(ProductClient::new(c), Err(Error::Config(_))));
        assert!(matches!(
            ProductClient::new(config("")),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn default_key_arn_and_key_choice() {
        let client = ProductClient::new(config("s")).unwrap();
        let account = "123456789012";
        assert_eq!(
            client.default_key_arn(account),
            "arn:aws:kms:eu-west-3:123456789012:alias_zos"
        );
        assert_eq!(
            client.key_arn(account, &KeyChoice::Default).unwrap(),
            "arn:aws:kms:eu-west-3:123456789012:alias_zos"
        );
        let cmk = "arn:aws:kms:eu-west-3:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(
            client
                .key_arn(account, &KeyChoice::Arn(cmk.to_owned()))
                .unwrap(),
            cmk
        );
        for bad in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/disks",
            "arn:aws:kms:eu-west-3:210987654321:alias/disks",
            "arn:aws:s3:eu-west-3:123456789012:bucket",
        ] {
            let err = client
                .key_arn(account, &KeyChoice::Arn(bad.to_owned()))
                .unwrap_err();
            assert!(matches!(err, Error::InvalidKey(_)), "{bad}: {err}");
        }
        assert!(client.key_arn("12345", &KeyChoice::Default).is_err());
    }

    #[tokio::test]
    async fn open_checks_account_and_context_before_any_request() {
        // The endpoint refuses connections: reaching it would be a
        // Transport error, so these errors prove no request was made.
        let client = ProductClient::new(config("s")).unwrap();
        let header = Header {
            key_arn: "arn:aws:kms:eu-west-3:123456789012:key/k".to_owned(),
            context: [("object".to_owned(), "a".to_owned())].into(),
            encrypted_data_key: vec![1; 10],
        };
        let env = crypto::seal_with_dek(DataKey::random(), header.clone(), b"data")
            .await
            .unwrap();
        let err = client
            .open("210987654321", &header.context, &env)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::WrongAccount { .. }), "{err}");
        let other: Context = [("object".to_owned(), "b".to_owned())].into();
        let err = client.open("123456789012", &other, &env).await.unwrap_err();
        assert!(matches!(err, Error::ContextMismatch), "{err}");
    }

    #[test]
    fn plaintext_data_key_debug_shows_no_bytes() {
        let key = PlaintextDataKey::from_buffer(Zeroizing::new(vec![0xab; 32])).unwrap();
        assert_eq!(key.expose(), &[0xab; 32]);
        let shown = format!("{key:?}");
        assert_eq!(shown, "PlaintextDataKey(..)");
        let generated = GeneratedDataKey {
            plaintext: key,
            key_arn: "arn:aws:kms:eu-west-3:123456789012:key/k".to_owned(),
            encrypted_data_key: vec![1, 2, 3],
        };
        let shown = format!("{generated:?}");
        assert!(!shown.contains("171") && !shown.contains("ab"), "{shown}");
        for len in [0, 16, 31, 33, 64] {
            assert!(PlaintextDataKey::from_buffer(Zeroizing::new(vec![1; len])).is_none());
        }
    }

    #[tokio::test]
    async fn decrypt_data_key_checks_its_inputs_before_any_request() {
        // As above: a Transport error would mean a request was attempted.
        let client = ProductClient::new(config("s")).unwrap();
        let account = "123456789012";
        let arn = "arn:aws:kms:eu-west-3:123456789012:key/k";
        let ctx = Context::new();
        let err = client
            .decrypt_data_key(
                account,
                "arn:aws:kms:eu-west-3:210987654321:key/k",
                &ctx,
                &[1; 10],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::WrongAccount { .. }), "{err}");
        for bad_arn in ["k", "alias/disks", "arn:aws:s3:eu-west-3:123456789012:b"] {
            let err = client
                .decrypt_data_key(account, bad_arn, &ctx, &[1; 10])
                .await
                .unwrap_err();
            assert!(matches!(err, Error::InvalidKey(_)), "{bad_arn}: {err}");
        }
        let err = client
            .decrypt_data_key("12345", arn, &ctx, &[1; 10])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidKey(_)), "{err}");
        for len in [0, MAX_ENCRYPTED_DATA_KEY_LEN + 1] {
            let err = client
                .decrypt_data_key(account, arn, &ctx, &vec![1; len])
                .await
                .unwrap_err();
            assert!(matches!(err, Error::InvalidKey(_)), "{len}: {err}");
        }
        let empty_key: Context = [(String::new(), "v".to_owned())].into();
        let err = client
            .decrypt_data_key(account, arn, &empty_key, &[1; 10])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidContext(_)), "{err}");
        // Well-formed: the request is attempted.
        let err = client
            .decrypt_data_key(account, arn, &ctx, &[1; 10])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Transport { .. }), "{err}");
        let err = client
            .generate_data_key(account, &KeyChoice::Default, &ctx)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Transport { .. }), "{err}");
        let err = client
            .generate_data_key("12345", &KeyChoice::Default, &ctx)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidKey(_)), "{err}");
    }

    #[tokio::test]
    async fn unreachable_server_is_a_transport_error() {
        let client = ProductClient::new(config("s")).unwrap();
        let err = client
            .seal("123456789012", &KeyChoice::Default, &Context::new(), b"x")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Transport { .. }), "{err}");
        assert!(err.aws_code().is_none());
    }
}
