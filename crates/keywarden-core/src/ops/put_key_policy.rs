//! PutKeyPolicy, and the checks every key policy document passes (also
//! CreateKey's `Policy`).

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Caller, Kms};
use crate::operation::Operation;
use crate::ops::get_key_policy::check_policy_name;

/// Largest key policy document, in bytes (AWS KMS's quota: 32 KB).
pub const MAX_KEY_POLICY_BYTES: usize = 32_768;

/// Checks a key policy document before it is stored: at most
/// [`MAX_KEY_POLICY_BYTES`] (`LimitExceededException`); JSON (serde_json's
/// nesting limit refuses hostile depth); an object whose only elements are
/// `Version` (`2012-10-17` or `2008-10-17`), `Id` and `Statement` (an
/// object or a non-empty array of objects), each statement with an
/// `Effect` of `Allow` or `Deny` (`MalformedPolicyDocumentException`,
/// saying what is wrong).
///
/// Then the whole grammar ([`crate::policy::parse_key_policy`]: principals,
/// actions, resources, condition operators and values, duplicate keys);
/// answers the parsed document.
pub fn check_key_policy(text: &str) -> Result<crate::policy::PolicyDocument, KmsError> {
    let malformed = |why: String| KmsError::MalformedPolicyDocument(why);
    if text.len() > MAX_KEY_POLICY_BYTES {
        return Err(KmsError::LimitExceeded(format!(
            "the key policy is {} bytes; a key policy may have at most {MAX_KEY_POLICY_BYTES}",
            text.len()
        )));
    }
    let doc: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| malformed(format!("The new key policy is not valid JSON: {e}.")))?;
    let Some(doc) = doc.as_object() else {
        return Err(malformed("The new key policy is not a JSON object.".into()));
    };
    for (name, value) in doc {
        match name.as_str() {
            "Version" => {
                if !matches!(value.as_str(), Some("2012-10-17" | "2008-10-17")) {
                    return Err(malformed(
                        "The new key policy's Version must be \"2012-10-17\" or \"2008-10-17\"."
                            .into(),
                    ));
                }
            }
            "Id" => {
                if !value.is_string() {
                    return Err(malformed(
                        "The new key policy's Id must be a string.".into(),
                    ));
                }
            }
            "Statement" => {}
            other => {
                return Err(malformed(format!(
                    "The new key policy has an unknown element {:?}.",
                    crate::ids::truncate_for_message(other)
                )))
            }
        }
    }
    let statements: Vec<&serde_json::Value> =
        match doc.get("Statement") {
            None => {
                return Err(malformed(
                    "The new key policy has no Statement element.".into(),
                ))
            }
            Some(serde_json::Value::Array(list)) if !list.is_empty() => list.iter().collect(),
            Some(one @ serde_json::Value::Object(_)) => vec![one],
            Some(_) => return Err(malformed(
                "The new key policy's Statement must be an object or a non-empty array of objects."
                    .into(),
            )),
        };
    for (n, statement) in statements.into_iter().enumerate() {
        let Some(statement) = statement.as_object() else {
            return Err(malformed(format!("Statement {n} is not a JSON object.")));
        };
        if !matches!(
            statement.get("Effect").and_then(|e| e.as_str()),
            Some("Allow" | "Deny")
        ) {
            return Err(malformed(format!(
                "Statement {n} needs an Effect of \"Allow\" or \"Deny\"."
            )));
        }
    }
    crate::policy::parse_key_policy(text)
        .map_err(|e| malformed(format!("The new key policy is not valid: {e}.")))
}

impl Kms {
    /// Replaces the key's policy document. Default keys' policies are
    /// Keywarden's (`UnsupportedOperationException`). Unless `bypass`
    /// (`BypassPolicyLockoutSafetyCheck`), a document under which the
    /// caller could not call PutKeyPolicy again is refused
    /// (`MalformedPolicyDocumentException`).
    pub async fn put_key_policy(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        policy_name: Option<&str>,
        policy: &str,
        bypass: bool,
    ) -> Result<(), KmsError> {
        check_policy_name(policy_name)?;
        // Authorized first, as AWS does: a caller who may not change the
        // key learns nothing about the document's faults.
        let key = self
            .resolve_fresh(
                caller,
                key_ref,
                crate::kms::Access::Manage(Operation::PutKeyPolicy),
            )
            .await?;
        let doc = check_key_policy(policy)?;
        if !bypass {
            let arn = self.record_arn(&key);
            self.check_lockout(caller, &arn, &key.account_id, &doc)
                .await?;
        }
        self.update_key_with(caller, key_ref, Operation::PutKeyPolicy, |_, key| {
            key.policy = Some(policy.to_owned());
            Ok(())
        })
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_policies_are_checked_before_they_are_stored() {
        let ok = r#"{"Version":"2012-10-17","Id":"k","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;
        check_key_policy(ok).unwrap();
        check_key_policy(r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"kms:*"}}"#)
            .unwrap();
        let default = crate::ops::get_key_policy::default_key_policy(
            "aws",
            &crate::ids::AccountId::parse("111122223333").unwrap(),
        );
        check_key_policy(&default).unwrap();
        for (bad, why) in [
            ("", "not valid JSON"),
            ("{", "not valid JSON"),
            ("[]", "not a JSON object"),
            ("{}", "no Statement"),
            (r#"{"Statement":[]}"#, "non-empty array"),
            (r#"{"Statement":"x"}"#, "non-empty array"),
            (r#"{"Statement":[1]}"#, "Statement 0 is not a JSON object"),
            (r#"{"Statement":[{"Effect":"Maybe"}]}"#, "Effect"),
            (
                r#"{"Version":"2020-01-01","Statement":[{"Effect":"Allow"}]}"#,
                "Version",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow"}],"Extra":1}"#,
                "unknown element",
            ),
        ] {
            match check_key_policy(bad) {
                Err(KmsError::MalformedPolicyDocument(m)) => assert!(m.contains(why), "{bad}: {m}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        // Hostile nesting is refused, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(check_key_policy(&deep).is_err());
        let huge = format!(
            r#"{{"Statement":[{{"Effect":"Allow","Sid":"{}"}}]}}"#,
            "a".repeat(MAX_KEY_POLICY_BYTES)
        );
        assert!(matches!(
            check_key_policy(&huge),
            Err(KmsError::LimitExceeded(_))
        ));
    }
}
