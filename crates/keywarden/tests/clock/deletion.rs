//! Scheduled deletion executes when the waiting period ends, tested through
//! the injected clock on the real SQLite store and software protector.

use keywarden_core::clock::UnixMillis;
use keywarden_core::context::EncryptionContext;
use keywarden_core::ids::KeyRef;
use keywarden_core::model::{KeyState, Origin};
use keywarden_core::store::KeyQuery;
use keywarden_core::KmsError;
use keywarden_testkit::clock::{fixture, key_request, Fixture};

const DAY: i64 = UnixMillis::DAY;

#[tokio::test]
async fn deletion_executes_after_the_waiting_period_and_not_before() {
    let Fixture {
        dir: _dir,
        store,
        clock,
        kms,
        caller,
        ..
    } = fixture().await;
    let req = || key_request(Origin::AwsKms);
    let doomed = kms.create_key(&caller, req()).await.unwrap();
    let kept = kms.create_key(&caller, req()).await.unwrap();
    let doomed_ref = KeyRef::Id(doomed.key_id);
    kms.create_alias(&caller, "alias/doomed", &doomed_ref)
        .await
        .unwrap();
    let ctx = EncryptionContext::empty();
    let (_, blob) = kms
        .encrypt(&caller, &doomed_ref, b"gone soon", &ctx, false)
        .await
        .unwrap();

    kms.schedule_key_deletion(&caller, &doomed_ref, Some(7))
        .await
        .unwrap();
    clock.advance(7 * DAY - 1);
    assert_eq!(kms.execute_due_deletions().await.unwrap(), 0);
    let k = kms.describe_key(&caller, &doomed_ref).await.unwrap();
    assert_eq!(k.state, KeyState::PendingDeletion);

    // Cancelling stops the clock; re-scheduling starts a new period.
    kms.cancel_key_deletion(&caller, &doomed_ref).await.unwrap();
    clock.advance(DAY);
    assert_eq!(kms.execute_due_deletions().await.unwrap(), 0);
    kms.schedule_key_deletion(&caller, &doomed_ref, Some(7))
        .await
        .unwrap();
    clock.advance(7 * DAY);
    assert_eq!(kms.execute_due_deletions().await.unwrap(), 1);
    assert_eq!(
        kms.execute_due_deletions().await.unwrap(),
        0,
        "destroyed once"
    );

    assert!(matches!(
        kms.describe_key(&caller, &doomed_ref).await,
        Err(KmsError::NotFound(_))
    ));
    assert!(matches!(
        kms.decrypt(&caller, &blob, &ctx, None, false).await,
        Err(KmsError::InvalidCiphertext)
    ));
    let page = kms.list_aliases(&caller, None, None, None).await.unwrap();
    assert!(page.items.is_empty(), "the alias went with the key");
    // Only the kept key's material remains in the store.
    use keywarden_core::store::KeyStore;
    let all = store
        .list_keys(&KeyQuery {
            limit: 100,
            ..KeyQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].key_id, kept.key_id);
}
