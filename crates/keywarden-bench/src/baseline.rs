//! `keywarden-bench baseline-server`: a no-op HTTP server that answers every
//! POST with the same small JSON body. Measured the same way as keywarden, it
//! tells what the HTTP stack and the generator cost before any KMS work.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;

/// About 200 bytes, shaped like a GenerateDataKeyWithoutPlaintext answer so
/// that the Decrypt pool can be filled from it.
pub const BODY: &str = concat!(
    r#"{"CiphertextBlob":"S1dCMAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==","#,
    r#""KeyId":"arn:aws:kms:us-east-1:000000000000:key/00000000-0000-4000-8000-000000000000"}"#
);

async fn answer(method: Method, body: Bytes) -> Response {
    // Taking the body reads it completely, as a real server would, so the
    // connection stays reusable.
    let _ = body;
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    ([(header::CONTENT_TYPE, "application/x-amz-json-1.1")], BODY).into_response()
}

pub fn router() -> Router {
    Router::new().fallback(answer)
}

/// Serves until SIGTERM or Ctrl-C.
pub async fn serve(listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    println!("keywarden-bench baseline-server listening on http://{addr}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_small_json_with_a_ciphertext() {
        assert!((150..=260).contains(&BODY.len()), "{}", BODY.len());
        let v: serde_json::Value = serde_json::from_str(BODY).unwrap();
        assert!(v["CiphertextBlob"].is_string());
    }
}
