//! `keywarden encrypt` / `keywarden decrypt` against the real server: round
//! trips of every size class with both suites, failures that leave no
//! output, several keys, strict and discovery mode; and the library's KMS
//! keyring and caching materials manager over the wire.

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Account, Server};
use keywarden_envelope::cache::{CacheLimits, CachingMaterialsManager};
use keywarden_envelope::kms::KmsKeyring;
use keywarden_envelope::{
    AlgorithmSuite, DecryptOptions, DecryptionRequest, DefaultMaterialsManager, EncryptOptions,
    EncryptionContext, Error, Keyring,
};

const SUITES: [(&str, u16); 2] = [("committing", 0x0478), ("committing-signed", 0x0578)];

/// Runs the binary as a user would: credentials and endpoint from the
/// environment only, nothing inherited from this machine's AWS settings.
struct Cli<'a> {
    server: &'a Server,
    account: &'a Account,
}

impl Cli<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(common::BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") || k.starts_with("KEYWARDEN_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(args)
            .env("KEYWARDEN_ENDPOINT", &self.server.url)
            .env("AWS_ACCESS_KEY_ID", &self.account.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.account.secret_access_key)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run keywarden")
    }

    fn ok(&self, args: &[&str]) {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "keywarden {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `args`, expects failure, returns stderr (one line).
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "keywarden {args:?} succeeded");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        stderr
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Deterministic, incompressible-looking bytes.
fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The directory's entries: no temporary file may be left behind.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

async fn new_key(client: &aws_sdk_kms::Client) -> String {
    client
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_every_size_with_both_suites() {
    let server = Server::start(common::BIN);
    let account = server.account("envelope");
    let arn = new_key(&server.client(&account)).await;
    let cli = Cli {
        server: &server,
        account: &account,
    };
    let dir = tempfile::tempdir().unwrap();
    for size in [0usize, 1, 4096, 4097, 10_000_000] {
        let plain = data(size);
        let pt = dir.path().join(format!("p{size}"));
        std::fs::write(&pt, &plain).unwrap();
        for (suite, id) in SUITES {
            let ct = dir.path().join(format!("c{size}-{suite}"));
            let back = dir.path().join(format!("b{size}-{suite}"));
            cli.ok(&[
                "encrypt",
                "--key-id",
                &arn,
                "--suite",
                suite,
                "--context",
                "purpose=e2e",
                s(&pt),
                s(&ct),
            ]);
            let message = std::fs::read(&ct).unwrap();
            // Version 2, then the suite id.
            assert_eq!(message[0], 0x02, "{suite} {size}");
            assert_eq!(u16::from_be_bytes([message[1], message[2]]), id);
            if size >= 16 {
                assert!(!message.windows(16).any(|w| w == &plain[..16]));
            }
            cli.ok(&[
                "decrypt",
                "--key-id",
                &arn,
                "--context",
                "purpose=e2e",
                s(&ct),
                s(&back),
            ]);
            assert!(std::fs::read(&back).unwrap() == plain, "{suite} {size}");
            // Discovery mode reads it too.
            std::fs::remove_file(&back).unwrap();
            cli.ok(&["decrypt", s(&ct), s(&back)]);
            assert!(std::fs::read(&back).unwrap() == plain, "{suite} {size}");
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&back).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
    // No temporary files anywhere.
    assert!(entries(dir.path()).iter().all(|e| !e.starts_with('.')));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_to_stdout_and_frame_length() {
    let server = Server::start(common::BIN);
    let account = server.account("envelope");
    let arn = new_key(&server.client(&account)).await;
    let cli = Cli {
        server: &server,
        account: &account,
    };
    let plain = data(10_001);
    let pipe = |args: &[&str], input: &[u8]| -> Vec<u8> {
        use std::io::Write;
        let mut child = cli
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let message = pipe(
        &[
            "encrypt",
            "--key-id",
            &arn,
            "--frame-length",
            "1000",
            "-",
            "-",
        ],
        &plain,
    );
    assert_eq!(
        pipe(&["decrypt", "--key-id", &arn, "-", "-"], &message),
        plain
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_exit_non_zero_and_leave_no_output() {
    let server = Server::start(common::BIN);
    let account = server.account("envelope");
    let client = server.client(&account);
    let arn = new_key(&client).await;
    let other = new_key(&client).await;
    let cli = Cli {
        server: &server,
        account: &account,
    };
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("plain");
    let ct = dir.path().join("message");
    let out = dir.path().join("out");
    std::fs::write(&pt, data(20_000)).unwrap();
    cli.ok(&[
        "encrypt",
        "--key-id",
        &arn,
        "--context",
        "tenant=a",
        s(&pt),
        s(&ct),
    ]);
    let message = std::fs::read(&ct).unwrap();
    // An existing output stays as it was when decryption fails.
    std::fs::write(&out, b"previous contents").unwrap();
    let before = entries(dir.path());
    let check_untouched = |what: &str| {
        assert_eq!(entries(dir.path()), before, "{what}: leftovers");
        assert_eq!(std::fs::read(&out).unwrap(), b"previous contents", "{what}");
    };

    // Strict mode naming another key: that key's EDK is not in the message.
    let e = cli.fails(&["decrypt", "--key-id", &other, s(&ct), s(&out)]);
    assert!(
        e.contains("no encrypted data key could be decrypted"),
        "{e}"
    );
    check_untouched("wrong key");

    // Another tenant, discovery mode: the AWS error comes through.
    let intruder = server.account("intruder");
    let e = Cli {
        server: &server,
        account: &intruder,
    }
    .fails(&["decrypt", s(&ct), s(&out)]);
    assert!(e.contains("Exception"), "the AWS error code: {e}");
    check_untouched("other tenant");

    // Required context pair missing or different.
    let e = cli.fails(&["decrypt", "--context", "tenant=b", s(&ct), s(&out)]);
    assert!(e.contains("encryption context"), "{e}");
    check_untouched("context mismatch");

    // Tampered: a flipped bit in the last frame, in the header, or the footer.
    let bad = dir.path().join("bad");
    for (what, at) in [
        ("body", message.len() / 2),
        ("header", 40),
        ("end", message.len() - 1),
    ] {
        let mut m = message.clone();
        m[at] ^= 0x01;
        std::fs::write(&bad, &m).unwrap();
        let e = cli.fails(&["decrypt", "--key-id", &arn, s(&bad), s(&out)]);
        assert!(
            e.contains("authentication failed") || e.contains("malformed"),
            "{what}: {e}"
        );
        std::fs::remove_file(&bad).unwrap();
        check_untouched(what);
    }

    // Truncated anywhere.
    for cut in [0, 1, 10, message.len() / 2, message.len() - 1] {
        std::fs::write(&bad, &message[..cut]).unwrap();
        let e = cli.fails(&["decrypt", "--key-id", &arn, s(&bad), s(&out)]);
        assert!(
            e.contains("malformed") || e.contains("authentication failed"),
            "cut {cut}: {e}"
        );
        std::fs::remove_file(&bad).unwrap();
        check_untouched("truncated");
    }

    // Too many encrypted data keys for the limit.
    let e = cli.fails(&["decrypt", "--max-encrypted-data-keys", "0", s(&ct), s(&out)]);
    assert!(e.contains("encrypted data keys"), "{e}");
    check_untouched("max keys");

    // Encrypting with a key that does not exist: nothing written either.
    let missing =
        arn.rsplit_once('/').unwrap().0.to_owned() + "/00000000-0000-0000-0000-000000000000";
    let e = cli.fails(&["encrypt", "--key-id", &missing, s(&pt), s(&out)]);
    assert!(e.contains("NotFoundException"), "{e}");
    check_untouched("encrypt with missing key");

    // No credentials: a clear message, before anything is written.
    let e = {
        let out = cli
            .command(&["decrypt", s(&ct), s(&out)])
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(e.contains("AWS_SECRET_ACCESS_KEY"), "{e}");
    check_untouched("no credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keys_either_decrypts_and_strict_mode_refuses_others() {
    let server = Server::start(common::BIN);
    let account = server.account("envelope");
    let client = server.client(&account);
    let (a, b, c) = (
        new_key(&client).await,
        new_key(&client).await,
        new_key(&client).await,
    );
    let cli = Cli {
        server: &server,
        account: &account,
    };
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("plain");
    let ct = dir.path().join("message");
    std::fs::write(&pt, data(5000)).unwrap();
    cli.ok(&["encrypt", "--key-id", &a, "--key-id", &b, s(&pt), s(&ct)]);

    for key in [&a, &b] {
        let out = dir.path().join("out");
        cli.ok(&["decrypt", "--key-id", key, s(&ct), s(&out)]);
        assert_eq!(std::fs::read(&out).unwrap(), data(5000));
        std::fs::remove_file(&out).unwrap();
    }
    // With the generator disabled, the second key (and discovery, which
    // moves on to it) still decrypts; the first key's failure is reported
    // only if nothing works.
    client.disable_key().key_id(&a).send().await.unwrap();
    let out = dir.path().join("out");
    cli.ok(&["decrypt", s(&ct), s(&out)]);
    std::fs::remove_file(&out).unwrap();
    let e = cli.fails(&["decrypt", "--key-id", &a, s(&ct), s(&out)]);
    assert!(e.contains("DisabledException"), "{e}");
    // Strict mode with a key not in the message: not even tried.
    let e = cli.fails(&["decrypt", "--key-id", &c, s(&ct), s(&out)]);
    assert!(e.contains("0 of 2 encrypted data keys tried"), "{e}");
    assert!(e.contains("2 not eligible"), "{e}");

    // The same through the library: the strict keyring for C gets A's and
    // B's encrypted data keys and calls nothing.
    let message = std::fs::read(&ct).unwrap();
    let materials = DefaultMaterialsManager::new(KmsKeyring::strict(client.clone(), [&a]).unwrap());
    let mut plain = Vec::new();
    let info = keywarden_envelope::decrypt(
        &DefaultMaterialsManager::new(KmsKeyring::strict(client.clone(), [&b]).unwrap()),
        &DecryptOptions::default(),
        &message[..],
        &mut plain,
    )
    .await
    .unwrap();
    assert_eq!(plain, data(5000));
    let edks = info.encrypted_data_keys;
    assert_eq!(edks.len(), 2);
    assert!(edks.iter().all(|k| k.provider_id == "aws-kms"));
    assert_eq!(edks[0].provider_info, a.as_bytes());
    assert_eq!(edks[1].provider_info, b.as_bytes());
    let strict_c = KmsKeyring::strict(client.clone(), [&c]).unwrap();
    let err = strict_c
        .on_decrypt(DecryptionRequest {
            suite: info.suite,
            context: &info.context,
            encrypted_data_keys: &edks,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoDecryptableKey(_)), "{err:?}");
    // A (disabled) is refused by the server with its AWS error code.
    let err = materials
        .keyring()
        .on_decrypt(DecryptionRequest {
            suite: info.suite,
            context: &info.context,
            encrypted_data_keys: &edks,
        })
        .await
        .unwrap_err();
    let Error::NoDecryptableKey(why) = err else {
        panic!("{err:?}")
    };
    assert!(why.contains("DisabledException"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyring_binds_the_full_context_and_names_the_key_arn() {
    let server = Server::start(common::BIN);
    let account = server.account("envelope");
    let client = server.client(&account);
    let arn = new_key(&client).await;
    let keyring = KmsKeyring::strict(client.clone(), [&arn]).unwrap();
    let context: EncryptionContext = [("a".to_owned(), "1".to_owned())].into();
    let (data_key, edks) = keyring
        .on_encrypt(AlgorithmSuite::Aes256GcmHkdfSha512CommitKey, &context)
        .await
        .unwrap();
    assert_eq!(data_key.len(), 32);
    assert_eq!(edks[0].provider_info, arn.as_bytes());
    // KMS itself opens the EDK only with the same context.
    let opened = client
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(
            edks[0].ciphertext.clone(),
        ))
        .encryption_context("a", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(opened.plaintext.unwrap().as_ref(), &data_key[..]);
    let wrong = client
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(
            edks[0].ciphertext.clone(),
        ))
        .encryption_context("a", "2")
        .send()
        .await
        .unwrap_err();
    assert_eq!(common::code(&wrong), "InvalidCiphertextException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_manager_saves_kms_calls_within_one_context() {
    let server = Server::start(common::BIN);
    let account = server.account("envelope");
    let client = server.client(&account);
    let arn = new_key(&client).await;
    let cache = CachingMaterialsManager::new(
        DefaultMaterialsManager::new(KmsKeyring::strict(client.clone(), [&arn]).unwrap()),
        CacheLimits {
            max_messages: 10,
            ..CacheLimits::default()
        },
    )
    .unwrap();
    let mut messages = Vec::new();
    for i in 0..25u32 {
        let tenant = if i % 5 == 4 { "b" } else { "a" };
        let context: EncryptionContext = [("tenant".to_owned(), tenant.to_owned())].into();
        let plain = data(100 + i as usize);
        let mut message = Vec::new();
        let info = keywarden_envelope::encrypt(
            &cache,
            &context,
            &EncryptOptions {
                plaintext_length: Some(plain.len() as u64),
                ..EncryptOptions::default()
            },
            &plain[..],
            &mut message,
        )
        .await
        .unwrap();
        messages.push((plain, message, tenant, info.encrypted_data_keys));
    }
    // 20 messages for "a" at 10 per data key (2 misses), 5 for "b" (1 miss).
    let stats = cache.stats();
    assert_eq!((stats.encrypt_misses, stats.encrypt_hits), (3, 22));
    // Messages of different contexts never share a data key: no encrypted
    // data key of a "b" message appears in an "a" message.
    for (_, _, ta, ea) in &messages {
        for (_, _, tb, eb) in &messages {
            if ta != tb {
                assert_ne!(ea, eb);
            }
        }
    }
    let distinct: std::collections::BTreeSet<Vec<u8>> =
        messages.iter().map(|m| m.3[0].ciphertext.clone()).collect();
    assert_eq!(distinct.len(), 3);
    for (plain, message, _, _) in &messages {
        let mut out = Vec::new();
        keywarden_envelope::decrypt(&cache, &DecryptOptions::default(), &message[..], &mut out)
            .await
            .unwrap();
        assert_eq!(&out, plain);
    }
    // Decryption is keyed by the EDK set: 3 distinct data keys, 3 calls.
    let stats = cache.stats();
    assert_eq!((stats.decrypt_misses, stats.decrypt_hits), (3, 22));
}
