//! The only crate that knows the wire protocol: AWS JSON 1.1 over HTTP(S)
//! (`POST /` with `X-Amz-Target: TrentService.<Op>` for the AWS operations,
//! `KeywardenService.<Op>` for Keywarden's extensions), SigV4
//! authentication, and the mapping of domain errors to `{"__type",
//! "message"}` bodies.
//! Everything below it speaks domain types.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod handlers;
mod http_server;
mod iam;
mod keyring_endpoint;
pub mod limits;
mod query;
pub mod sigv4;
mod sts;
mod wire;

pub use error::{ApiError, INTERNAL_MESSAGE};
pub use handlers::{dispatch, dispatch_extension, run};
pub use wire::KeyMetadata;
/// Entry points for the criterion microbenchmarks (`benches/hot_path.rs`):
/// the production decode and encode steps of the two hottest operations,
/// without the domain call between them. Not a stable API.
#[doc(hidden)]
pub mod bench_support {
    use crate::error::ApiError;
    use crate::handlers;
    use keywarden_core::secret::Secret;

    /// Decodes and validates a GenerateDataKey body.
    pub fn decode_generate_data_key(body: &[u8]) -> Result<(), ApiError> {
        handlers::decode_data_key_request(body, true).map(|_| ())
    }

    /// Encodes a GenerateDataKey response.
    pub fn encode_generate_data_key(arn: String, blob: Vec<u8>, plaintext: &Secret) -> Vec<u8> {
        handlers::encode_data_key_response(arn, blob, Some(plaintext))
    }

    /// Decodes and validates a Decrypt body.
    pub fn decode_decrypt(body: &[u8]) -> Result<(), ApiError> {
        handlers::decode_decrypt_request(body).map(|_| ())
    }

    /// Encodes a Decrypt response.
    pub fn encode_decrypt(arn: String, plaintext: &Secret) -> Vec<u8> {
        handlers::encode_decrypt_response(arn, plaintext)
    }
}

pub use http_server::{load_tls_config, router, serve, AppState, MAX_BODY_BYTES};
