//! The example product end to end: the real `keywarden` server (port 0,
//! fresh data dir), an account and `zos` product credentials made with
//! `keywarden admin`, and the real `object-store` binary putting and getting
//! objects. Checks that objects round-trip, that stored files hold no
//! plaintext, and that tampered or misplaced files fail cleanly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use keywarden_testkit::server::{admin_json, keywarden_binary, Server};

const OBJECT_STORE: &str = env!("CARGO_BIN_EXE_object-store");

/// A distinctive plaintext no ciphertext will contain by chance.
const MARKER: &[u8] = b"OBJECT-STORE-PLAINTEXT-MARKER-5f1c9e0a7b3d42e8a6c1";

/// The product's view: where the store is and how it reaches Keywarden.
struct Store {
    root: PathBuf,
    endpoint: String,
    access_key_id: String,
    secret_access_key: String,
}

impl Store {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(OBJECT_STORE)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .env_clear()
            .env("KEYWARDEN_ENDPOINT", &self.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("KEYWARDEN_PRODUCT", "zos")
            .env("AWS_ACCESS_KEY_ID", &self.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_access_key)
            .output()
            .expect("run object-store")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "object-store {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs a command that must fail; returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "object-store {args:?} should have failed; stderr: {stderr}"
        );
        assert!(out.stdout.is_empty(), "a failed command wrote output");
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }

    fn object_file(&self, account: &str, name: &str) -> PathBuf {
        self.root.join(account).join(format!("{name}.kwobj"))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn objects_round_trip_encrypted_and_tampering_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_in(
        keywarden_binary(),
        &tmp.path().join("data"),
        tmp.path().join("server.log"),
    );
    let alice = admin_json(&server.admin(&["account", "create", "--name", "alice"]));
    let bob = admin_json(&server.admin(&["account", "create", "--name", "bob"]));
    let (alice, bob) = (
        alice["AccountId"].as_str().unwrap().to_owned(),
        bob["AccountId"].as_str().unwrap().to_owned(),
    );
    let zos = admin_json(&server.admin(&["product", "credentials", "create", "--code", "zos"]));
    let store = Store {
        root: tmp.path().join("objects"),
        endpoint: server.url.clone(),
        access_key_id: zos["AccessKeyId"].as_str().unwrap().to_owned(),
        secret_access_key: zos["SecretAccessKey"].as_str().unwrap().to_owned(),
    };

    // Objects: empty, one byte, the marker, 1 MiB random with the marker in
    // the middle.
    let mut random = vec![0u8; 1024 * 1024];
    aws_lc_rs::rand::fill(&mut random).unwrap();
    random[500_000..500_000 + MARKER.len()].copy_from_slice(MARKER);
    let objects: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("one-byte", vec![0x42]),
        ("marker.txt", MARKER.repeat(3)),
        ("random.bin", random.clone()),
    ];
    let inputs = tmp.path().join("inputs");
    std::fs::create_dir(&inputs).unwrap();
    for (name, data) in &objects {
        let file = inputs.join(name);
        std::fs::write(&file, data).unwrap();
        let out = store.ok(&["put", "--account", &alice, name, file.to_str().unwrap()]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(&format!(":{alice}:key/")), "{said}");
    }
    // Bob has objects (and so a default key) of his own.
    let bobs_file = inputs.join("bob.txt");
    std::fs::write(&bobs_file, b"bob's own object").unwrap();
    store.ok(&[
        "put",
        "--account",
        &bob,
        "bob.txt",
        bobs_file.to_str().unwrap(),
    ]);

    // Listed with their sizes.
    let listed = store.ok(&["list", "--account", &alice]);
    assert_eq!(
        String::from_utf8(listed.stdout).unwrap(),
        format!(
            "empty\t0\nmarker.txt\t{}\none-byte\t1\nrandom.bin\t1048576\n",
            MARKER.len() * 3
        )
    );

    // Round trip, to files and to stdout.
    let outputs = tmp.path().join("outputs");
    std::fs::create_dir(&outputs).unwrap();
    for (name, data) in &objects {
        let out = outputs.join(name);
        store.ok(&["get", "--account", &alice, name, out.to_str().unwrap()]);
        assert!(std::fs::read(&out).unwrap() == *data, "{name} differs");
        let piped = store.ok(&["get", "--account", &alice, name, "-"]);
        assert!(piped.stdout == *data, "{name} differs on stdout");
    }

    // No plaintext at rest: not in the objects, not in Keywarden's data dir
    // or log (the data never goes to Keywarden).
    let stored = files_under(&store.root);
    assert_eq!(stored.len(), objects.len() + 1, "{stored:?}");
    let random_window = &random[..64];
    for path in stored
        .iter()
        .chain(&files_under(&server.data_dir))
        .chain([&server.log])
    {
        let bytes = std::fs::read(path).unwrap();
        assert!(
            !contains(&bytes, MARKER),
            "{} holds plaintext",
            path.display()
        );
        assert!(
            !contains(&bytes, random_window),
            "{} holds plaintext",
            path.display()
        );
    }

    // A flipped byte anywhere makes `get` fail with a clear message and
    // leaves no output file: in the magic (framing), in the data key
    // ciphertext (Keywarden refuses it), in the data (local tag check).
    let path = store.object_file(&alice, "marker.txt");
    let original = std::fs::read(&path).unwrap();
    let envelope = keywarden_product::Envelope::from_bytes(&original).unwrap();
    let edk = envelope.encrypted_data_key();
    let edk_at = original
        .windows(edk.len())
        .position(|w| w == edk)
        .expect("data key ciphertext in the file");
    for (at, expect) in [
        (0, "is not a valid stored object"),
        (edk_at + edk.len() / 2, "InvalidCiphertextException"),
        (original.len() - 1, "failed authentication"),
        (original.len() - 40, "failed authentication"),
    ] {
        let mut tampered = original.clone();
        tampered[at] ^= 0x01;
        std::fs::write(&path, &tampered).unwrap();
        let out = outputs.join("tampered");
        let err = store.fails(&[
            "get",
            "--account",
            &alice,
            "marker.txt",
            out.to_str().unwrap(),
        ]);
        assert!(err.contains(expect), "byte {at}: {err}");
        assert!(!out.exists(), "byte {at}: output file left behind");
        let err = store.fails(&["get", "--account", &alice, "marker.txt", "-"]);
        assert!(err.contains(expect), "byte {at}: {err}");
    }
    std::fs::write(&path, &original).unwrap();

    // Renamed within the account: the context names the object.
    std::fs::copy(&path, store.object_file(&alice, "renamed.txt")).unwrap();
    let out = outputs.join("renamed");
    let err = store.fails(&[
        "get",
        "--account",
        &alice,
        "renamed.txt",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("encryption context does not match"), "{err}");
    assert!(!out.exists());

    // Copied under another account: the envelope says whose it is.
    std::fs::copy(&path, store.object_file(&bob, "marker.txt")).unwrap();
    let out = outputs.join("stolen");
    let err = store.fails(&[
        "get",
        "--account",
        &bob,
        "marker.txt",
        out.to_str().unwrap(),
    ]);
    assert!(
        err.contains(&format!("sealed for account {alice}, not {bob}")),
        "{err}"
    );
    assert!(!out.exists());

    // ...and rewritten to claim to be Bob's (account ids and key ids have
    // one length each, so the framing stays valid): every local check
    // passes, and Keywarden refuses to decrypt Alice's data key for Bob,
    // whether the envelope names Alice's key id in Bob's account (no such
    // key) or Bob's own default key (the data key was not made by it).
    let alice_key = envelope.key_arn().to_owned();
    let bobs_key = keywarden_product::Envelope::from_bytes(
        &std::fs::read(store.object_file(&bob, "bob.txt")).unwrap(),
    )
    .unwrap()
    .key_arn()
    .to_owned();
    assert_ne!(alice_key, bobs_key);
    let as_bob = replace_all(&original, alice.as_bytes(), bob.as_bytes());
    let with_bobs_key = replace_all(
        &replace_all(&original, alice_key.as_bytes(), bobs_key.as_bytes()),
        alice.as_bytes(),
        bob.as_bytes(),
    );
    // (Keywarden compares the blob's key id with `KeyId` before looking the
    // blob's key up, so the second is IncorrectKeyException, as AWS answers
    // a mismatched KeyId.)
    for (forged, codes) in [
        (as_bob, &["NotFoundException"][..]),
        (
            with_bobs_key,
            &["IncorrectKeyException", "InvalidCiphertextException"][..],
        ),
    ] {
        let forged_env = keywarden_product::Envelope::from_bytes(&forged).unwrap();
        assert_eq!(forged_env.account_id(), bob);
        std::fs::write(store.object_file(&bob, "marker.txt"), &forged).unwrap();
        let err = store.fails(&[
            "get",
            "--account",
            &bob,
            "marker.txt",
            out.to_str().unwrap(),
        ]);
        assert!(
            codes
                .iter()
                .any(|code| err.contains(&format!("Decrypt: {code}"))),
            "{err}"
        );
        assert!(!out.exists());
    }
    // Bob's own object is still his.
    let bob_out = store.ok(&["get", "--account", &bob, "bob.txt", "-"]);
    assert_eq!(bob_out.stdout, b"bob's own object");

    // A disabled product is refused by the running server (within 100 ms).
    admin_json(&server.admin(&["product", "disable", "--code", "zos"]));
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let out = store.run(&["get", "--account", &bob, "bob.txt", "-"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            assert!(out.stdout.is_empty());
            assert!(
                stderr.contains("AccessDeniedException") && stderr.contains("disabled"),
                "{stderr}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still served 2 s after disabling the product"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    admin_json(&server.admin(&["product", "enable", "--code", "zos"]));

    // Server errors reach the user with their AWS code.
    let wrong = Store {
        secret_access_key: "not-the-secret".to_owned(),
        ..store
    };
    let err = wrong.fails(&["get", "--account", &alice, "one-byte", "-"]);
    assert!(err.contains("Exception"), "{err}");

    // Names that would leave the account's directory are refused.
    for bad in ["../x", "a/b", "..", ".hidden"] {
        let err = wrong.fails(&["put", "--account", &alice, bad, "-"]);
        assert!(err.contains("object name"), "{bad}: {err}");
    }
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = haystack.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}
