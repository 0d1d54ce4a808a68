//! Known-answer vectors from the official SDKs (`tests/vectors/README.md`).

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use keywarden_envelope::{decrypt_to_vec, DecryptOptions, DefaultMaterialsManager, Error};
use serde_json::Value;

use common::StaticKeyring;

fn b64(v: &Value) -> Vec<u8> {
    BASE64
        .decode(v.as_str().expect("a string"))
        .expect("base64")
}

#[tokio::test]
async fn official_message_format_v2_vectors() {
    let doc: Value =
        serde_json::from_str(include_str!("vectors/message-format-v2.json")).expect("JSON");
    let tests = doc["tests"].as_array().expect("tests");
    let (mut decrypted, mut commitment_refused, mut non_framed_refused) = (0, 0, 0);
    for t in tests {
        let name = t["comment"].as_str().unwrap();
        let message = b64(&t["ciphertext"]);
        let cmm = DefaultMaterialsManager::new(StaticKeyring::new(b64(&t["data-key"])));
        let result = decrypt_to_vec(&cmm, &DecryptOptions::default(), &message).await;
        match (&t["plaintext"], result) {
            (Value::String(_), Ok((plaintext, info))) => {
                assert_eq!(plaintext, b64(&t["plaintext"]), "{name}");
                assert_eq!(info.message_id.to_vec(), b64(&t["message-id"]), "{name}");
                for (k, v) in t["encryption-context"].as_object().unwrap() {
                    assert_eq!(
                        info.context.get(k).map(String::as_str),
                        v.as_str(),
                        "{name}"
                    );
                }
                decrypted += 1;
            }
            // Non-framed bodies cannot be released in constant memory
            // before their single tag is checked; we refuse them.
            (Value::String(_), Err(Error::Malformed(m))) if m.contains("non-framed") => {
                assert!(
                    name.contains("unframed")
                        || name.contains("frame_size=0")
                        || name.contains("frameSize=0"),
                    "{name}"
                );
                non_framed_refused += 1;
            }
            (Value::Null, Err(Error::Authentication("key commitment"))) => {
                assert!(
                    t["error"].as_str().unwrap().contains("commitment"),
                    "{name}"
                );
                commitment_refused += 1;
            }
            (expected, got) => panic!("{name}: expected {expected:?}, got {got:?}"),
        }
    }
    assert_eq!(tests.len(), 46);
    assert_eq!(
        (decrypted, commitment_refused, non_framed_refused),
        (34, 5, 7)
    );
}
