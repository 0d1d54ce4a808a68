//! Test helpers shared by the modules' unit tests: entries, the record one
//! is written as, and a chain written through the sink.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::chain::{AuditKey, Chain};
use crate::record::{Entry, Facts, Outcome, Record};
use crate::sink::Sink;

pub(crate) fn entry(i: u64) -> Entry {
    let mut facts = Facts {
        claimed_principal: "AKIDEXAMPLE".into(),
        authenticated: true,
        account: Some("111122223333".into()),
        product: None,
        principal_arn: Some("arn:aws:iam::111122223333:root".into()),
        denied_by: None,
        body: Some(Bytes::from(format!(
            r#"{{"KeyId":"alias/k{i}","Plaintext":"c2VjcmV0","EncryptionContext":{{"tenant":"t{i}"}},"GrantTokens":["tok"]}}"#
        ))),
    };
    let resp = br#"{"KeyId":"arn:aws:kms:us-east-1:111122223333:key/abc","CiphertextBlob":"AAAA"}"#;
    Entry::new(
        1_700_000_000_000 + i as i64,
        &format!("req-{i}"),
        "127.0.0.1:5000",
        "TrentService.Encrypt".to_owned(),
        &mut facts,
        Outcome::Ok(resp),
        false,
    )
}

/// The record `entry` is written as (seq 1).
pub(crate) fn as_record(entry: &Entry) -> Record {
    let mut line = Vec::new();
    let mut chain = Chain::START;
    chain.append(&AuditKey::from_bytes(&[7; 32]), entry, &mut line);
    assert_eq!(line.pop(), Some(b'\n'));
    serde_json::from_slice(&line).unwrap()
}

pub(crate) fn write_chain(dir: &Path, n: u64) -> (PathBuf, AuditKey) {
    let key = AuditKey::from_bytes(&[7; 32]);
    let path = dir.join("audit.log");
    let mut sink = Sink::new(path.clone(), AuditKey::from_bytes(&[7; 32]));
    let batch: Vec<Entry> = (1..=n).map(entry).collect();
    sink.flush(&batch[..n as usize / 2]).unwrap();
    sink.flush(&batch[n as usize / 2..]).unwrap();
    (path, key)
}
