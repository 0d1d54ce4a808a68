//! One keep-alive HTTP/1.1 connection that sends SigV4-signed AWS JSON 1.1
//! requests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Where requests go: a plain `http://host:port` endpoint.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// As given, without a trailing `/`.
    pub url: String,
    /// `host:port` as sent in the `Host` header.
    pub authority: String,
    /// The resolved address to connect to.
    pub addr: SocketAddr,
}

/// Splits `http://host[:port][/]` into its authority (with the port, 80 by
/// default) and checks the scheme.
pub fn parse_endpoint_url(url: &str) -> Result<(String, String, u16)> {
    let rest = if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if url.starts_with("https://") {
        bail!("{url}: HTTPS endpoints are not supported by keywarden-bench; point it at a plain-HTTP listener (e.g. the loopback one)")
    } else {
        bail!("{url}: the endpoint must start with http://")
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        bail!("{url}: expected http://host:port with no path");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        // [v6]:port
        let (host, tail) = bracketed
            .split_once(']')
            .with_context(|| format!("{url}: unclosed '['"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().with_context(|| format!("{url}: bad port"))?,
            None if tail.is_empty() => 80,
            None => bail!("{url}: junk after ']'"),
        };
        (format!("[{host}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse().with_context(|| format!("{url}: bad port"))?,
            ),
            None => (authority.to_owned(), 80),
        }
    };
    Ok((authority.to_owned(), host, port))
}

impl Endpoint {
    pub async fn resolve(url: &str) -> Result<Endpoint> {
        let (authority, host, port) = parse_endpoint_url(url)?;
        let lookup_host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = tokio::net::lookup_host((lookup_host, port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} resolves to no address"))?;
        Ok(Endpoint {
            url: url.trim_end_matches('/').to_owned(),
            authority,
            addr,
        })
    }
}

/// Signs requests with the official `aws-sigv4` signer.
#[derive(Clone)]
pub struct Signer {
    identity: Identity,
    region: String,
    service: String,
    /// `http://authority/`, the URL the signer canonicalizes.
    url: String,
    authority: String,
}

impl Signer {
    pub fn new(endpoint: &Endpoint, access_key_id: &str, secret: &str, region: &str) -> Signer {
        let identity: Identity =
            Credentials::new(access_key_id, secret, None, None, "keywarden-bench").into();
        Signer {
            identity,
            region: region.to_owned(),
            service: "kms".to_owned(),
            url: format!("http://{}/", endpoint.authority),
            authority: endpoint.authority.clone(),
        }
    }

    /// Builds a freshly signed `POST /` for `target` with `body`.
    pub fn request(&self, target: &str, body: Bytes) -> Result<http::Request<Full<Bytes>>> {
        let headers = [
            ("host", self.authority.as_str()),
            ("content-type", CONTENT_TYPE),
            ("x-amz-target", target),
        ];
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(&self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .context("building SigV4 signing parameters")?
            .into();
        let signable = SignableRequest::new(
            "POST",
            self.url.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .context("preparing the request for signing")?;
        let (instructions, _signature) = sign(signable, &params)
            .context("signing the request")?
            .into_parts();
        let mut builder = http::Request::builder().method("POST").uri("/");
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        for (name, value) in instructions.headers() {
            builder = builder.header(name, value);
        }
        builder
            .header("content-length", body.len())
            .body(Full::new(body))
            .context("building the HTTP request")
    }
}

/// Why a request got no HTTP response: the kinds reported as transport errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TransportError {
    Connect,
    Timeout,
    /// The connection closed before a response arrived.
    Closed,
    /// The response could not be parsed as HTTP.
    Parse,
    /// The response body ended early or failed.
    Body,
    /// The request could not be built or signed.
    Sign,
    Other,
}

impl TransportError {
    pub fn name(self) -> &'static str {
        match self {
            TransportError::Connect => "connect",
            TransportError::Timeout => "timeout",
            TransportError::Closed => "connection-closed",
            TransportError::Parse => "http-parse",
            TransportError::Body => "body",
            TransportError::Sign => "sign",
            TransportError::Other => "other",
        }
    }

    fn of_hyper(e: &hyper::Error) -> TransportError {
        if e.is_closed() || e.is_canceled() || e.is_incomplete_message() {
            TransportError::Closed
        } else if e.is_parse() || e.is_parse_status() {
            TransportError::Parse
        } else if e.is_timeout() {
            TransportError::Timeout
        } else if e.is_body_write_aborted() || e.is_user() {
            TransportError::Other
        } else {
            TransportError::Closed
        }
    }
}

/// What came back for one request.
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

/// A keep-alive HTTP/1.1 connection with TCP_NODELAY.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr, timeout: Duration) -> Result<Conn, TransportError> {
        let connect = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|_| TransportError::Connect)?;
            stream
                .set_nodelay(true)
                .map_err(|_| TransportError::Connect)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|_| TransportError::Connect)?;
            tokio::spawn(async move {
                // Ends when the peer closes or the sender is dropped.
                let _ = conn.await;
            });
            Ok(Conn { sender })
        };
        tokio::time::timeout(timeout, connect)
            .await
            .unwrap_or(Err(TransportError::Connect))
    }

    /// Whether the connection can still carry a request.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends one request and reads the whole response.
    pub async fn send(
        &mut self,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response, TransportError> {
        let exchange = async {
            self.sender
                .ready()
                .await
                .map_err(|e| TransportError::of_hyper(&e))?;
            let response = self
                .sender
                .send_request(request)
                .await
                .map_err(|e| TransportError::of_hyper(&e))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|_| TransportError::Body)?
                .to_bytes();
            Ok(Response { status, body })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(TransportError::Timeout))
    }
}

/// The `__type` of an AWS JSON error body, without any `namespace#` prefix;
/// `HTTP <status>` when the body has none.
pub fn error_type(status: u16, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(rename = "__type")]
        kind: Option<String>,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { kind: Some(kind) }) if !kind.is_empty() => {
            let short = kind.rsplit('#').next().unwrap_or(&kind);
            short.to_owned()
        }
        _ => format!("HTTP {status}"),
    }
}

/// The `message` of an error body, for diagnostics.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("Message"))
                .and_then(|m| m.as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}

/// Sends one request on a fresh connection and returns the JSON response;
/// for setup steps such as CreateKey.
pub async fn call_once(
    endpoint: &Endpoint,
    signer: &Signer,
    target: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<serde_json::Value> {
    let mut conn = Conn::open(endpoint.addr, timeout)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {}: {}", endpoint.url, e.name()))?;
    let request = signer.request(target, Bytes::from(serde_json::to_vec(body)?))?;
    let response = conn
        .send(request, timeout)
        .await
        .map_err(|e| anyhow::anyhow!("{target} to {}: {}", endpoint.url, e.name()))?;
    if response.status != 200 {
        bail!(
            "{target} failed with HTTP {}: {}: {}",
            response.status,
            error_type(response.status, &response.body),
            error_message(&response.body)
        );
    }
    serde_json::from_slice(&response.body)
        .with_context(|| format!("{target}: response is not JSON"))
}

/// Counts by name, e.g. errors by `__type`.
pub type Counts = BTreeMap<String, u64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        let (a, h, p) = parse_endpoint_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (a.as_str(), h.as_str(), p),
            ("127.0.0.1:8080", "127.0.0.1", 8080)
        );
        let (a, h, p) = parse_endpoint_url("http://localhost/").unwrap();
        assert_eq!((a.as_str(), h.as_str(), p), ("localhost", "localhost", 80));
        let (a, h, p) = parse_endpoint_url("http://[::1]:9000").unwrap();
        assert_eq!((a.as_str(), h.as_str(), p), ("[::1]:9000", "[::1]", 9000));
        assert!(parse_endpoint_url("https://127.0.0.1:1").is_err());
        assert!(parse_endpoint_url("127.0.0.1:1").is_err());
        assert!(parse_endpoint_url("http://h:1/path").is_err());
        assert!(parse_endpoint_url("http://h:port").is_err());
    }

    #[test]
    fn error_types() {
        assert_eq!(
            error_type(400, br#"{"__type":"NotFoundException","message":"no"}"#),
            "NotFoundException"
        );
        assert_eq!(
            error_type(
                400,
                br#"{"__type":"com.amazonaws.kms#InvalidCiphertextException"}"#
            ),
            "InvalidCiphertextException"
        );
        assert_eq!(error_type(502, b"<html>bad gateway</html>"), "HTTP 502");
        assert_eq!(error_type(500, br#"{"message":"x"}"#), "HTTP 500");
        assert_eq!(error_message(br#"{"__type":"X","message":"why"}"#), "why");
    }

    #[test]
    fn signs_with_the_headers_the_server_needs() {
        let endpoint = Endpoint {
            url: "http://127.0.0.1:1".into(),
            authority: "127.0.0.1:1".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        let signer = Signer::new(&endpoint, "AKIDEXAMPLE", "secret", "us-east-1");
        let req = signer
            .request("TrentService.DescribeKey", Bytes::from_static(b"{}"))
            .unwrap();
        let h = req.headers();
        assert_eq!(h["host"], "127.0.0.1:1");
        assert_eq!(h["x-amz-target"], "TrentService.DescribeKey");
        assert_eq!(h["content-type"], CONTENT_TYPE);
        assert!(h.contains_key("x-amz-date"));
        let auth = h["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
        assert!(auth.contains("/us-east-1/kms/aws4_request"));
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-target"));
    }
}
