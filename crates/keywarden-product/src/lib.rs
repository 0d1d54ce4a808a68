//! Envelope encryption for cloud products that use Keywarden.
//!
//! A product (object storage, block volumes, a managed database) links this
//! crate to protect its tenants' data with keys the tenants own in Keywarden,
//! without sending the data to Keywarden:
//!
//! 1. **request a data key** for the tenant's account: `GenerateDataKey`
//!    under the tenant's default key for this product
//!    (`arn:aws:kms:<region>:<account>:alias_<product>`, created by Keywarden
//!    on first use) or a key ARN the tenant granted;
//! 2. **encrypt locally** with it (AES-256-GCM, aws-lc-rs), then forget the
//!    plaintext data key;
//! 3. **store the encrypted data key with the encrypted data**: an
//!    [`Envelope`], serialized in a small versioned format (`README.md`);
//! 4. **decrypt later**: `Decrypt` of the data key (naming the key ARN, which
//!    products must), then AES-256-GCM open.
//!
//! ```no_run
//! # async fn demo() -> Result<(), keywarden_product::Error> {
//! use keywarden_product::{Context, Envelope, KeyChoice, ProductClient, ProductConfig};
//!
//! let client = ProductClient::new(ProductConfig {
//!     endpoint: "http://127.0.0.1:8080".into(),
//!     region: "us-east-1".into(),
//!     product_code: "zos".into(),
//!     access_key_id: std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default(),
//!     secret_access_key: std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default().into(),
//! })?;
//! let account = "123456789012";
//! let context: Context = [("object".to_owned(), "photo.jpg".to_owned())].into();
//!
//! let envelope = client.seal(account, &KeyChoice::Default, &context, b"...").await?;
//! let stored: Vec<u8> = envelope.to_bytes();
//!
//! let envelope = Envelope::from_bytes(&stored)?;
//! let plaintext = client.open(account, &context, &envelope).await?;
//! # let _ = plaintext;
//! # Ok(())
//! # }
//! ```
//!
//! The plaintext data key lives only inside the seal or open call, in a
//! zeroizing buffer. A product that uses the data key itself (a block
//! volume's disk encryption passphrase) gets it with
//! [`ProductClient::generate_data_key`] and [`ProductClient::decrypt_data_key`]
//! instead, as a [`PlaintextDataKey`] (zeroized on drop). The SDK's own response buffers are outside this
//! crate's control.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod crypto;
mod envelope;
mod error;

pub use client::{
    GeneratedDataKey, KeyChoice, PlaintextDataKey, ProductClient, ProductConfig, SecretString,
};
pub use envelope::{
    Context, Envelope, MAGIC, MAX_CONTEXT_BYTES, MAX_ENCRYPTED_DATA_KEY_LEN, MAX_KEY_ARN_LEN,
    MAX_PLAINTEXT_LEN, NONCE_LEN, TAG_LEN, VERSION,
};
pub use error::{EnvelopeError, Error, Result};
pub use zeroize::Zeroizing;
