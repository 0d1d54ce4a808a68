//! The only crate that knows the wire protocol: AWS JSON 1.1 over HTTP(S)
//! (`POST /` with `X-Amz-Target: TrentService.<Op>`), SigV4 authentication,
//! and the mapping of domain errors to `{"__type", "message"}` bodies.
//! Everything below it speaks domain types.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod handlers;
mod http_server;
pub mod sigv4;
mod wire;

pub use error::{ApiError, INTERNAL_MESSAGE};
pub use handlers::{dispatch, OPERATIONS};
pub use http_server::{load_tls_config, router, serve, AppState, MAX_BODY_BYTES};
