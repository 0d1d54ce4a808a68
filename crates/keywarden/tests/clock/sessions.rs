//! Role sessions expire: STS AssumeRole credentials through the injected
//! clock (the HTTP mapping of an expired token to `ExpiredTokenException`
//! is pinned in the server's error table).

use keywarden_core::ops::sessions::SessionRefusal;
use keywarden_testkit::clock::{fixture, Fixture};

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}"#;

#[tokio::test]
async fn a_session_works_until_it_expires_and_not_after() {
    let Fixture {
        dir: _dir,
        clock,
        kms,
        caller,
        ..
    } = fixture().await;
    let role = kms
        .iam_create_role(
            &caller.account_id,
            "worker",
            None,
            TRUST,
            None,
            Some(7200),
            &[],
        )
        .await
        .unwrap();
    let arn = kms.role_arn(&role);
    let creds = kms
        .assume_role(&caller, &arn, "job", Some(900))
        .await
        .unwrap();
    let check = || kms.session_credential(&creds.access_key_id, &creds.session_token);
    let active = check().await.unwrap().unwrap();
    assert_eq!(active.secret().expose(), creds.secret_access_key.expose());
    // One millisecond before the expiry it still works (from the cache)...
    clock.advance(900_000 - 1);
    assert!(check().await.unwrap().is_ok());
    // ...and at the expiry it does not (the cached session).
    clock.advance(1);
    assert_eq!(check().await.unwrap().err(), Some(SessionRefusal::Expired));
    // A session first seen after its expiry (not cached) is refused too.
    let unseen = kms
        .assume_role(&caller, &arn, "unseen", Some(900))
        .await
        .unwrap();
    clock.advance(900_000);
    assert_eq!(
        kms.session_credential(&unseen.access_key_id, &unseen.session_token)
            .await
            .unwrap()
            .err(),
        Some(SessionRefusal::Expired)
    );

    // The longest session the role allows lasts that long.
    let long = kms
        .assume_role(&caller, &arn, "long-job", Some(7200))
        .await
        .unwrap();
    clock.advance(7_199_000);
    assert!(kms
        .session_credential(&long.access_key_id, &long.session_token)
        .await
        .unwrap()
        .is_ok());
    clock.advance(1_000);
    assert_eq!(
        kms.session_credential(&long.access_key_id, &long.session_token)
            .await
            .unwrap()
            .err(),
        Some(SessionRefusal::Expired)
    );
    // A token presented with another session's access key id is invalid.
    assert_eq!(
        kms.session_credential(&creds.access_key_id, &long.session_token)
            .await
            .unwrap()
            .err(),
        Some(SessionRefusal::Invalid)
    );
}
