//! Fuzz target: SigV4 header parsing and verification
//! (`keywarden_server::sigv4::Verifier`).
//!
//! Seeds: requests signed by the official `aws-sigv4` crate (with and
//! without `x-amz-content-sha256`, a session token, a path and query).
//! Each case mutates the `Authorization` and `X-Amz-Date` values, the body,
//! adds (possibly duplicate) headers, drops one, and picks the secret, the
//! clock and the allowed skew. Properties: `parse` and `verify` never
//! panic; an untouched request verifies with its secret at its time; a
//! wrong secret never verifies. `KEYWARDEN_FUZZ_SECS` sets the run time
//! (keywarden-fuzz).

use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderMap, HeaderName, HeaderValue};
use keywarden_fuzz::{apply, mutations_in, run, Bytes, Mutation};
use keywarden_server::sigv4::{SignedRequest, Verifier};
use proptest::prelude::*;
use proptest::sample::Index;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const HOST: &str = "kms.example.test:8443";
/// 2024-05-06T07:08:09Z.
const T0: u64 = 1_714_979_289;

struct Seed {
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn signed(path_and_query: &str, body: &[u8], checksum: bool, token: Option<&str>) -> Seed {
    let identity: Identity = Credentials::new(
        "AKIDFUZZEXAMPLE",
        SECRET,
        token.map(str::to_owned),
        None,
        "fuzz",
    )
    .into();
    let mut settings = SigningSettings::default();
    if checksum {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("kms")
        .time(UNIX_EPOCH + Duration::from_secs(T0))
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let plain = [
        ("host", HOST),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "TrentService.Decrypt"),
    ];
    let url = format!("https://{HOST}{path_and_query}");
    let signable = SignableRequest::new(
        "POST",
        url,
        plain.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut headers = HeaderMap::new();
    for (n, v) in plain.iter().copied().chain(instructions.headers()) {
        headers.insert(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (path_and_query.to_owned(), None),
    };
    Seed {
        path,
        query,
        headers,
        body: body.to_vec(),
    }
}

fn seeds() -> Vec<Seed> {
    let body = br#"{"CiphertextBlob":"AQIDBA==","EncryptionContext":{"a":"b"}}"#;
    vec![
        signed("/", body, false, None),
        signed("/", body, true, None),
        signed("/", b"", false, Some("FQoGZXIvYXdzEFAaDFUZZTOKEN")),
        signed("/a%20b/c?x=1&y=%2F&x=0", body, false, None),
    ]
}

#[derive(Debug)]
struct Case {
    seed: Index,
    authorization: Vec<Mutation>,
    amz_date: Vec<Mutation>,
    body: Vec<Mutation>,
    added: Vec<(String, Bytes)>,
    removed: Option<Index>,
    /// `None`: the request's own secret.
    secret: Option<Bytes>,
    /// Seconds from the signing time.
    now: i64,
    skew_secs: u64,
}

impl Case {
    fn untouched(&self) -> bool {
        self.authorization.is_empty()
            && self.amz_date.is_empty()
            && self.body.is_empty()
            && self.added.is_empty()
            && self.removed.is_none()
    }
}

fn case() -> impl Strategy<Value = Case> {
    let header_name = prop_oneof![
        prop::sample::select(vec![
            "authorization",
            "x-amz-date",
            "date",
            "host",
            "x-amz-content-sha256",
            "x-amz-security-token",
            "content-type",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9-]{1,12}",
    ];
    let header_value = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(Bytes),
        prop::sample::select(vec![
            "AWS4-HMAC-SHA256 Credential=AKIDFUZZEXAMPLE/20240506/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
            "20240506T070809Z",
            "Mon, 06 May 2024 07:08:09 GMT",
            "99991231T235959Z",
            "00000101T000000Z",
            "UNSIGNED-PAYLOAD",
            "",
        ])
        .prop_map(|s| Bytes(s.as_bytes().to_vec())),
    ];
    let secret = prop_oneof![
        3 => Just(None),
        1 => proptest::collection::vec(any::<u8>(), 0..48).prop_map(|b| Some(Bytes(b))),
    ];
    let now = prop_oneof![
        4 => Just(0i64),
        2 => -1000i64..1000,
        1 => any::<i64>(),
    ];
    let skew = prop::sample::select(vec![0u64, 1, 900, 86_400, u64::MAX]);
    (
        any::<Index>(),
        mutations_in(0..4),
        mutations_in(0..3),
        mutations_in(0..2),
        proptest::collection::vec((header_name, header_value), 0..3),
        proptest::option::of(any::<Index>()),
        secret,
        now,
        skew,
    )
        .prop_map(
            |(seed, authorization, amz_date, body, added, removed, secret, now, skew_secs)| Case {
                seed,
                authorization,
                amz_date,
                body,
                added,
                removed,
                secret,
                now,
                skew_secs,
            },
        )
}

fn mutate_header(headers: &mut HeaderMap, name: &str, mutations: &[Mutation]) {
    if mutations.is_empty() {
        return;
    }
    let Some(value) = headers.get(name) else {
        return;
    };
    let bytes = apply(value.as_bytes(), mutations);
    match HeaderValue::from_bytes(&bytes) {
        Ok(v) => {
            headers.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), v);
        }
        // HTTP cannot carry it; the server would never see it.
        Err(_) => {
            headers.remove(name);
        }
    }
}

#[test]
fn fuzz_sigv4() {
    let seeds = seeds();
    run("sigv4", case(), |case| {
        let seed = &seeds[case.seed.index(seeds.len())];
        let mut headers = seed.headers.clone();
        mutate_header(&mut headers, "authorization", &case.authorization);
        mutate_header(&mut headers, "x-amz-date", &case.amz_date);
        if let Some(i) = &case.removed {
            let names: Vec<HeaderName> = headers.keys().cloned().collect();
            headers.remove(&names[i.index(names.len())]);
        }
        for (name, value) in &case.added {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(&value.0),
            ) {
                headers.append(n, v);
            }
        }
        let body = apply(&seed.body, &case.body);
        let req = SignedRequest {
            method: "POST",
            path: &seed.path,
            query: seed.query.as_deref(),
            headers: &headers,
            body: &body,
        };
        let verifier = Verifier::new("us-east-1", "kms", Duration::from_secs(case.skew_secs));
        let signed_at = UNIX_EPOCH + Duration::from_secs(T0);
        let now = if case.now >= 0 {
            signed_at.checked_add(Duration::from_secs(case.now.unsigned_abs()))
        } else {
            signed_at.checked_sub(Duration::from_secs(case.now.unsigned_abs()))
        };
        let Some(now) = now else { return Ok(()) };

        let auth = match verifier.parse(&req) {
            Ok(auth) => auth,
            Err(e) => {
                prop_assert!(!case.untouched(), "an untouched request did not parse: {e}");
                // Every refusal renders as an AWS error.
                prop_assert!(!e.aws_type().is_empty() && !e.message().is_empty());
                return Ok(());
            }
        };
        let secret = case.secret.as_ref().map_or(SECRET.as_bytes(), |s| &s.0[..]);
        let result = verifier.verify(&req, &auth, secret, now);
        if secret != SECRET.as_bytes() {
            prop_assert!(result.is_err(), "a wrong secret verified");
        }
        if case.untouched() && case.secret.is_none() && case.now.unsigned_abs() <= case.skew_secs {
            prop_assert!(result.is_ok(), "an untouched request failed: {result:?}");
        }
        Ok(())
    });
}
