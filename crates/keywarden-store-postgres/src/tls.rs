//! TLS to PostgreSQL: the URL's `sslmode` and `sslrootcert`, mapped onto
//! tokio-postgres's `SslMode` and one rustls client configuration
//! (tokio-postgres-rustls), shared by the pool and the change listener.
//!
//! Following libpq:
//!
//! | `sslmode` | encrypted | certificate checked |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `prefer` (default) | if the server offers TLS | only with `sslrootcert`: chain, not the name |
//! | `require` | always | only with `sslrootcert`: chain, not the name |
//! | `verify-ca` | always | chain to `sslrootcert` (required), not the name |
//! | `verify-full` | always | chain to `sslrootcert` (required) and the host name |
//!
//! tokio-postgres's own URL parser knows only `disable`, `prefer` and
//! `require`, and no `sslrootcert`: both parameters are taken out of the
//! query here, every other one is left for it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::Invalid;

/// libpq's `sslmode` values that the store supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, Invalid> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(Invalid::new(
                    "the database URL's sslmode must be disable, prefer, require, verify-ca \
                     or verify-full",
                ))
            }
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// A database URL taken apart: what tokio-postgres connects with, and the
/// TLS connector every connection uses.
pub(crate) struct Target {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: MakeRustlsConnect,
    pub(crate) mode: SslMode,
    /// TLS may be used, but the server's certificate is not checked.
    pub(crate) unverified: bool,
}

/// Parses `url` (a `postgres://` URL, or tokio-postgres's `key=value`
/// form, which knows only `sslmode=disable|prefer|require`). Errors never
/// quote the URL.
pub(crate) fn parse(url: &str) -> Result<Target, Invalid> {
    let (rest, mode, root) = take_tls_params(url)?;
    // The parser's messages might quote the URL: say only that it is bad.
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|_| Invalid::new("the database URL is malformed"))?;
    let mode = match mode {
        Some(mode) => mode,
        // The key=value form's own sslmode, already parsed by tokio-postgres.
        None => match config.get_ssl_mode() {
            PgSslMode::Disable => SslMode::Disable,
            PgSslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        },
    };
    config.ssl_mode(match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
    });
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Invalid::new(format!("TLS setup failed: {e}")))?;
    let roots = match &root {
        Some(path) => Some(load_roots(path)?),
        None if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
            return Err(Invalid::new(format!(
                "sslmode={mode} needs sslrootcert=<PEM file of the CA certificates> in the \
                 database URL"
            )))
        }
        None => None,
    };
    let unverified = roots.is_none() && mode != SslMode::Disable;
    let client = match (mode, roots) {
        (SslMode::VerifyFull, Some(roots)) => builder.with_root_certificates(roots),
        (_, Some(roots)) => {
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| Invalid::new(format!("TLS setup failed: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
        }
        (_, None) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked { provider })),
    }
    .with_no_client_auth();
    Ok(Target {
        config,
        tls: MakeRustlsConnect::new(client),
        mode,
        unverified,
    })
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query, keeping every
/// other parameter in order. The `key=value` form is left as it is.
fn take_tls_params(url: &str) -> Result<(String, Option<SslMode>, Option<PathBuf>), Invalid> {
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let Some((base, query)) = url.split_once('?').filter(|_| is_url) else {
        return Ok((url.to_owned(), None, None));
    };
    let mut mode = None;
    let mut root = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("sslmode", value)) => mode = Some(SslMode::parse(&percent_decode(value)?)?),
            Some(("sslrootcert", value)) => root = Some(PathBuf::from(percent_decode(value)?)),
            _ if pair.is_empty() => {}
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, mode, root))
}

/// Decodes `%XX` escapes (a path may hold any byte).
fn percent_decode(value: &str) -> Result<String, Invalid> {
    let bad =
        || Invalid::new("the database URL has a malformed %-escape in sslmode or sslrootcert");
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// The CA certificates in the PEM file at `path`.
fn load_roots(path: &std::path::Path) -> Result<RootCertStore, Invalid> {
    let shown = path.display();
    let pem = std::fs::read(path)
        .map_err(|e| Invalid::new(format!("cannot read sslrootcert {shown}: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| {
            Invalid::new(format!(
                "sslrootcert {shown} is not a PEM certificate file: {e}"
            ))
        })?;
        roots.add(cert).map_err(|e| {
            Invalid::new(format!(
                "sslrootcert {shown} holds an unusable certificate: {e}"
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(Invalid::new(format!(
            "sslrootcert {shown} holds no certificate"
        )));
    }
    Ok(roots)
}

/// `verify-ca` (and `prefer`/`require` with `sslrootcert`): the chain must
/// lead to one of the roots; the host name is not checked. Everything is
/// the WebPKI verifier's, which checks the chain before the name, so a
/// name mismatch is the only failure let through.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `prefer`/`require` without `sslrootcert` (libpq's behaviour): any
/// certificate is accepted, so the connection is encrypted but not
/// protected against an active attacker. The handshake's signatures are
/// still checked (by rustls), so the peer holds the certificate's key.
#[derive(Debug)]
struct Unchecked {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The rustls error behind a failed TLS handshake, if that is what `e` is.
pub(crate) fn handshake_failure(e: &tokio_postgres::Error) -> Option<String> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return Some(tls.to_string());
                }
            }
        }
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        source = s.source();
    }
    // "error performing TLS handshake" without a rustls error: the server
    // does not speak TLS, or the name is unusable.
    e.to_string()
        .contains("TLS")
        .then(|| match std::error::Error::source(e) {
            Some(s) => s.to_string(),
            None => e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_and_the_rest_kept() {
        let (rest, mode, root) = take_tls_params(
            "postgres://u:p@db:5432/kw?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p@db:5432/kw?application_name=x&connect_timeout=5"
        );
        assert_eq!(mode, Some(SslMode::VerifyFull));
        assert_eq!(root, Some(PathBuf::from("/etc/ca.pem")));

        let (rest, mode, root) = take_tls_params("postgres://u@db/kw?sslmode=require").unwrap();
        assert_eq!(rest, "postgres://u@db/kw");
        assert_eq!((mode, root), (Some(SslMode::Require), None));

        let (rest, mode, _) = take_tls_params("postgres://u@db/kw").unwrap();
        assert_eq!((rest.as_str(), mode), ("postgres://u@db/kw", None));
    }

    #[test]
    fn modes_map_onto_tokio_postgres() {
        let target = parse("postgres://u:secret@db/kw").unwrap();
        assert_eq!(target.mode, SslMode::Prefer);
        assert!(target.unverified);
        assert_eq!(target.config.get_ssl_mode(), PgSslMode::Prefer);
        let target = parse("postgres://u:secret@db/kw?sslmode=disable").unwrap();
        assert_eq!(target.config.get_ssl_mode(), PgSslMode::Disable);
        assert!(!target.unverified);
        let target = parse("host=db user=u sslmode=require").unwrap();
        assert_eq!(target.mode, SslMode::Require);
        assert_eq!(target.config.get_ssl_mode(), PgSslMode::Require);
    }

    #[test]
    fn bad_tls_parameters_are_clear_errors_without_the_url() {
        let message = |url: &str| match parse(url) {
            Ok(_) => panic!("{url} was accepted"),
            Err(e) => e.to_string(),
        };
        let m = message("postgres://u:secret@db/kw?sslmode=verify-full");
        assert!(m.contains("sslrootcert"), "{m}");
        assert!(!m.contains("secret"), "{m}");
        let m = message("postgres://u:secret@db/kw?sslmode=allow");
        assert!(m.contains("sslmode"), "{m}");
        assert!(!m.contains("secret"), "{m}");
        let m =
            message("postgres://u:secret@db/kw?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem");
        assert!(
            m.contains("cannot read sslrootcert /nonexistent/ca.pem"),
            "{m}"
        );
        let dir = std::env::temp_dir().join(format!("kw-tls-empty-{}", std::process::id()));
        std::fs::write(&dir, "no certificate here\n").unwrap();
        let m = message(&format!(
            "postgres://u:secret@db/kw?sslmode=verify-full&sslrootcert={}",
            dir.display()
        ));
        let _ = std::fs::remove_file(&dir);
        assert!(m.contains("holds no certificate"), "{m}");
    }
}
