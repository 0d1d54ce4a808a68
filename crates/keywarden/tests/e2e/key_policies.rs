//! Key policies through the real server with `aws-sdk-kms` (issue 18,
//! first part): GetKeyPolicy, PutKeyPolicy, ListKeyPolicies, CreateKey's
//! `Policy`, the default key policy, the managed policy of a product's
//! default key, and malformed documents. Policies are stored and returned,
//! not yet evaluated.

use crate::common;

use common::{code, product_credential, raw_post, Server};
use serde_json::{json, Value};

fn parse(policy: &str) -> Value {
    serde_json::from_str(policy).expect("a key policy is JSON")
}

const CUSTOM: &str = r#"{"Version":"2012-10-17","Id":"custom","Statement":[{"Sid":"Key administrators","Effect":"Allow","Principal":{"AWS":"*"},"Action":["kms:Describe*","kms:Get*","kms:List*","kms:Put*","kms:Create*"],"Resource":"*","Condition":{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::*:root"}}},{"Sid":"Decrypt only","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/app"},"Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:app":"billing"}}}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_policies_are_stored_returned_and_checked() {
    let server = Server::start(common::BIN);
    let tenant = server.account("policies");
    let client = server.client(&tenant);

    // A key created without a policy has AWS's default key policy: the
    // account's root may do everything.
    let key = common::create_key(&client).await;
    let got = client.get_key_policy().key_id(&key).send().await.unwrap();
    assert_eq!(got.policy_name(), Some("default"));
    let policy = parse(got.policy().unwrap());
    assert_eq!(policy["Version"], "2012-10-17");
    assert_eq!(
        policy["Statement"][0]["Principal"]["AWS"],
        format!("arn:aws:iam::{}:root", tenant.account_id)
    );
    assert_eq!(policy["Statement"][0]["Action"], "kms:*");
    let listed = client
        .list_key_policies()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.policy_names(), ["default"]);
    assert!(!listed.truncated());

    // PutKeyPolicy replaces it, byte for byte; by alias too.
    client
        .create_alias()
        .alias_name("alias/policies")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    client
        .put_key_policy()
        .key_id("alias/policies")
        .policy_name("default")
        .policy(CUSTOM)
        .send()
        .await
        .unwrap();
    let got = client
        .get_key_policy()
        .key_id(&key)
        .policy_name("default")
        .send()
        .await
        .unwrap();
    assert_eq!(got.policy(), Some(CUSTOM));

    // CreateKey's Policy is kept as given.
    let with_policy = client
        .create_key()
        .policy(CUSTOM)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let got = client
        .get_key_policy()
        .key_id(&with_policy)
        .send()
        .await
        .unwrap();
    assert_eq!(got.policy(), Some(CUSTOM));

    // Malformed documents are refused and change nothing.
    for bad in [
        "not json",
        "[]",
        r#"{"Version":"2012-10-17"}"#,
        r#"{"Statement":[{"Effect":"Perhaps"}]}"#,
        r#"{"Statement":[{"Effect":"Allow"}],"Unknown":true}"#,
    ] {
        let err = client
            .put_key_policy()
            .key_id(&key)
            .policy(bad)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "MalformedPolicyDocumentException", "{bad}");
        let err = client.create_key().policy(bad).send().await.unwrap_err();
        assert_eq!(code(&err), "MalformedPolicyDocumentException", "{bad}");
    }
    let too_big = format!(
        r#"{{"Statement":[{{"Effect":"Allow","Sid":"{}"}}]}}"#,
        "a".repeat(33_000)
    );
    let err = client
        .put_key_policy()
        .key_id(&key)
        .policy(too_big)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "LimitExceededException");
    let err = client
        .get_key_policy()
        .key_id(&key)
        .policy_name("other")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
    let got = client.get_key_policy().key_id(&key).send().await.unwrap();
    assert_eq!(
        got.policy(),
        Some(CUSTOM),
        "refused changes changed nothing"
    );

    // Another account's key is not found.
    let stranger = server.account("stranger");
    let err = server
        .client(&stranger)
        .get_key_policy()
        .key_id(format!(
            "arn:aws:kms:us-east-1:{}:key/{key}",
            tenant.account_id
        ))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NotFoundException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_keys_have_a_managed_policy_nobody_changes() {
    let server = Server::start(common::BIN);
    let tenant = server.account("managed");
    let client = server.client(&tenant);
    let evs = product_credential(&server, "evs");
    let alias_arn = format!("arn:aws:kms:us-east-1:{}:alias_evs", tenant.account_id);
    let r = raw_post(
        &server.url,
        &evs,
        "TrentService.GenerateDataKey",
        &json!({"KeyId": alias_arn, "KeySpec": "AES_256"}).to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let got = client
        .get_key_policy()
        .key_id("alias_evs")
        .send()
        .await
        .unwrap();
    let policy = parse(got.policy().unwrap());
    assert_eq!(
        policy["Statement"][0]["Principal"]["AWS"],
        "arn:aws:iam::000000000000:role/keywarden-product/evs"
    );
    assert_eq!(
        policy["Statement"][0]["Condition"]["StringEquals"]["kms:CallerAccount"],
        tenant.account_id.as_str()
    );
    assert_eq!(
        policy["Statement"][1]["Principal"]["AWS"],
        format!("arn:aws:iam::{}:root", tenant.account_id)
    );
    let err = client
        .put_key_policy()
        .key_id("alias_evs")
        .policy(CUSTOM)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "UnsupportedOperationException");

    // Products do not read or write key policies.
    let r = raw_post(
        &server.url,
        &evs,
        "TrentService.GetKeyPolicy",
        &json!({"KeyId": alias_arn}).to_string(),
    )
    .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.error_type(), "AccessDeniedException");
}
