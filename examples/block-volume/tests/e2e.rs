//! `keywarden-volume` end to end: the real `keywarden` server (port 0,
//! fresh data dir), an account and `evs` product credentials made with
//! `keywarden admin`, the real `keywarden-volume` binary and the real QEMU
//! tools (package qemu-utils). Checks that data written through `open`
//! reads back in a fresh process, that the image holds no plaintext, that
//! rotation replaces the passphrase without re-encrypting the data, that
//! the passphrase is nowhere on disk, and that refusals are clean.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use keywarden_testkit::server::{admin_json, keywarden_binary, Server};

use base64::Engine as _;

const VOLUME: &str = env!("CARGO_BIN_EXE_keywarden-volume");

/// 16 ASCII letters and digits: distinctive, and shown whole in one row of
/// qemu-io's `read -v` dump.
const MARKER: &[u8; 16] = b"KWVOLmarker7f3a9";

/// Fails with what to install when the QEMU tools are missing.
fn require_qemu() {
    for tool in ["qemu-img", "qemu-io"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} not found: install the system package qemu-utils (scripts/test.sh does)"
        );
    }
}

/// The evs product's view: how `keywarden-volume` reaches Keywarden.
struct Evs {
    endpoint: String,
    access_key_id: String,
    secret_access_key: String,
}

impl Evs {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(VOLUME);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KEYWARDEN_ENDPOINT", &self.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", &self.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_access_key);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run keywarden-volume")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "keywarden-volume {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
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
            "keywarden-volume {args:?} should have failed; stderr: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }

    /// `open ... -- qemu-io -c C1 -c C2 ...`; returns stdout and stderr.
    fn qemu_io(&self, account: &str, image: &Path, commands: &[&str]) -> (Output, String) {
        let mut args = vec![
            "open",
            "--account",
            account,
            "--image",
            image.to_str().unwrap(),
            "--",
            "qemu-io",
        ];
        for c in commands {
            args.extend(["-c", c]);
        }
        let out = self.run(&args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out, text)
    }

    fn client(&self) -> keywarden_product::ProductClient {
        keywarden_product::ProductClient::new(keywarden_product::ProductConfig {
            endpoint: self.endpoint.clone(),
            region: "us-east-1".to_owned(),
            product_code: "evs".to_owned(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone().into(),
        })
        .unwrap()
    }

    /// The passphrase a .kwdek file stands for, decrypted here as the evs
    /// product (test-only: the binary never shows it).
    fn passphrase_of(&self, kwdek: &[u8], account: &str) -> String {
        let record: serde_json::Value = serde_json::from_slice(kwdek).unwrap();
        let context = record["encryption_context"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let ciphertext = base64::engine::general_purpose::STANDARD
            .decode(record["encrypted_data_key"].as_str().unwrap())
            .unwrap();
        let key_arn = record["key_arn"].as_str().unwrap().to_owned();
        let client = self.client();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let key = runtime
            .block_on(client.decrypt_data_key(account, &key_arn, &context, &ciphertext))
            .unwrap();
        key.expose().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// qemu-io run directly on the LUKS image with `passphrase`, handed over on
/// stdin (a pipe: the test writes no secret file either).
fn qemu_io_with_passphrase(image: &Path, passphrase: &str, command: &str) -> (bool, String) {
    let mut child = Command::new("qemu-io")
        .args([
            "--object",
            "secret,id=t0,file=/dev/stdin",
            "--image-opts",
            "-c",
        ])
        .arg(command)
        .arg(format!(
            "driver=qcow2,file.driver=file,file.filename={},encrypt.key-secret=t0",
            image.display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run qemu-io");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(passphrase.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
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

/// The byte range of the LUKS header inside a qcow2 file, from the qcow2
/// header extension "full disk encryption header pointer" (type
/// 0x0537be77: u64 offset, u64 length), qcow2 v3 layout.
fn luks_header_range(image: &[u8]) -> std::ops::Range<usize> {
    let be32 = |at: usize| u32::from_be_bytes(image[at..at + 4].try_into().unwrap()) as usize;
    let be64 = |at: usize| u64::from_be_bytes(image[at..at + 8].try_into().unwrap()) as usize;
    assert_eq!(&image[..4], b"QFI\xfb", "not qcow2");
    assert_eq!(be32(4), 3, "qcow2 version");
    let mut at = be32(100); // header_length: the extensions follow it
    loop {
        let (kind, len) = (be32(at), be32(at + 4));
        assert_ne!(kind, 0, "no encryption header extension");
        if kind == 0x0537_be77 {
            let (offset, length) = (be64(at + 8), be64(at + 16));
            return offset..offset + length;
        }
        at += 8 + len.div_ceil(8) * 8;
    }
}

#[test]
fn volumes_round_trip_encrypted_rotate_and_refuse_cleanly() {
    require_qemu();
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_in(
        keywarden_binary(),
        &tmp.path().join("data"),
        tmp.path().join("server.log"),
    );
    let alice = admin_json(&server.admin(&["account", "create", "--name", "alice"]))["AccountId"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob = admin_json(&server.admin(&["account", "create", "--name", "bob"]))["AccountId"]
        .as_str()
        .unwrap()
        .to_owned();
    let creds = admin_json(&server.admin(&["product", "credentials", "create", "--code", "evs"]));
    let evs = Evs {
        endpoint: server.url.clone(),
        access_key_id: creds["AccessKeyId"].as_str().unwrap().to_owned(),
        secret_access_key: creds["SecretAccessKey"].as_str().unwrap().to_owned(),
    };
    let volumes = tmp.path().join("volumes");
    std::fs::create_dir(&volumes).unwrap();
    let image = volumes.join("vol.qcow2");
    let image_s = image.to_str().unwrap();
    let kwdek = volumes.join("vol.qcow2.kwdek");
    let marker_file = tmp.path().join("marker.bin");
    std::fs::write(&marker_file, MARKER).unwrap();
    let write_marker = format!("write -s {} 2M 4k", marker_file.display());

    // Create: a LUKS qcow2 and its .kwdek (0600) under alice's evs key.
    let out = evs.ok(&[
        "create",
        "--account",
        &alice,
        "--image",
        image_s,
        "--size",
        "64M",
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(&format!(":{alice}:key/")), "{said}");
    for path in [&image, &kwdek] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&kwdek).unwrap()).unwrap();
    let key_arn = record["key_arn"].as_str().unwrap().to_owned();
    assert!(
        key_arn.starts_with(&format!("arn:aws:kms:us-east-1:{alice}:key/")),
        "{key_arn}"
    );
    assert_eq!(record["encryption_context"]["keywarden:product"], "evs");
    assert_eq!(record["encryption_context"]["account"], alice.as_str());
    assert_eq!(
        record["encryption_context"]["keywarden:volume"],
        record["volume_id"]
    );
    let info = Command::new("qemu-img")
        .args(["info", "--output=json", image_s])
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format-specific"]["data"]["encrypt"]["format"], "luks");
    assert_eq!(info["virtual-size"], 64 << 20);

    // Never overwritten.
    let before = std::fs::read(&image).unwrap();
    let err = evs.fails(&[
        "create",
        "--account",
        &alice,
        "--image",
        image_s,
        "--size",
        "64M",
    ]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&image).unwrap(), before);

    // Write through `open`, read back in fresh processes.
    let (out, text) = evs.qemu_io(&alice, &image, &["write -P 0x5a 0 1M", &write_marker]);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("wrote 1048576/1048576 bytes at offset 0"),
        "{text}"
    );
    assert!(
        text.contains("wrote 4096/4096 bytes at offset 2097152"),
        "{text}"
    );
    let read_back = ["read -P 0x5a 0 1M", "read -v 2M 16"];
    let check_read_back = |text: &str| {
        assert!(!text.contains("Pattern verification failed"), "{text}");
        assert!(
            text.contains("read 1048576/1048576 bytes at offset 0"),
            "{text}"
        );
        assert!(
            text.contains(std::str::from_utf8(MARKER).unwrap()),
            "{text}"
        );
    };
    let (out, text) = evs.qemu_io(&alice, &image, &read_back);
    assert!(out.status.success(), "{text}");
    check_read_back(&text);
    // The pattern check can fail (so its absence above means something).
    let (out, text) = evs.qemu_io(&alice, &image, &["read -P 0x5b 0 1M"]);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("Pattern verification failed"), "{text}");

    // No plaintext in the image; a plain qcow2 written the same way has it.
    let plain = tmp.path().join("plain.qcow2");
    let ok = Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            plain.to_str().unwrap(),
            "64M",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = Command::new("qemu-io")
        .args(["-c", "write -P 0x5a 0 1M", "-c", &write_marker])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(out.status.success());
    let zeds = [0x5a; 512];
    let plain_bytes = std::fs::read(&plain).unwrap();
    assert!(contains(&plain_bytes, MARKER) && contains(&plain_bytes, &zeds));
    std::fs::remove_file(&plain).unwrap();
    let image_bytes = std::fs::read(&image).unwrap();
    assert!(!contains(&image_bytes, MARKER), "the image holds plaintext");
    assert!(!contains(&image_bytes, &zeds), "the image holds plaintext");

    // The .kwdek's passphrase (decrypted here, as the product) is the
    // image's LUKS passphrase.
    let old_kwdek = std::fs::read(&kwdek).unwrap();
    let old_passphrase = evs.passphrase_of(&old_kwdek, &alice);
    assert_eq!(old_passphrase.len(), 64);
    let (ok, text) = qemu_io_with_passphrase(&image, &old_passphrase, "read -P 0x5a 0 1M");
    assert!(
        ok && !text.contains("Pattern verification failed"),
        "{text}"
    );

    // Rotate: a new data key opens the volume, the old one no longer does,
    // and only the LUKS header changed (the data was not re-encrypted).
    let before = std::fs::read(&image).unwrap();
    let out = evs.ok(&["rotate", "--account", &alice, "--image", image_s]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("rotated"), "{said}");
    let new_kwdek = std::fs::read(&kwdek).unwrap();
    assert_ne!(new_kwdek, old_kwdek);
    let new_record: serde_json::Value = serde_json::from_slice(&new_kwdek).unwrap();
    assert_eq!(new_record["volume_id"], record["volume_id"]);
    assert_eq!(new_record["key_arn"], key_arn.as_str());
    assert_ne!(
        new_record["encrypted_data_key"],
        record["encrypted_data_key"]
    );
    let new_passphrase = evs.passphrase_of(&new_kwdek, &alice);
    assert_ne!(new_passphrase, old_passphrase);

    let (out, text) = evs.qemu_io(&alice, &image, &read_back);
    assert!(out.status.success(), "{text}");
    check_read_back(&text);
    let (ok, text) = qemu_io_with_passphrase(&image, &old_passphrase, "read 0 4k");
    assert!(!ok, "the old passphrase still opens the volume: {text}");
    assert!(text.contains("Invalid password"), "{text}");
    let (ok, text) = qemu_io_with_passphrase(&image, &new_passphrase, "read -P 0x5a 0 1M");
    assert!(
        ok && !text.contains("Pattern verification failed"),
        "{text}"
    );

    let after = std::fs::read(&image).unwrap();
    assert_eq!(before.len(), after.len());
    let header = luks_header_range(&before);
    assert_eq!(header, luks_header_range(&after));
    assert!(header.end <= before.len());
    assert_ne!(
        before[header.clone()],
        after[header.clone()],
        "no new keyslot"
    );
    assert!(
        before[..header.start] == after[..header.start]
            && before[header.end..] == after[header.end..],
        "bytes outside the LUKS header changed: data was rewritten"
    );
    // ...and the data clusters are really out there (1 MiB of ciphertext
    // plus the marker's cluster), not inside the header.
    assert!(before.len() - header.end >= (1 << 20));

    // Refusals leave the image untouched.
    let image_before = std::fs::read(&image).unwrap();
    // Another account: refused before asking Keywarden.
    let (out, text) = evs.qemu_io(&bob, &image, &["read 0 4k"]);
    assert!(!out.status.success());
    assert!(
        text.contains(&format!("belongs to account {alice}, not {bob}")),
        "{text}"
    );
    // Malformed .kwdek.
    for (bad, expect) in [
        (b"{not json".to_vec(), "is malformed"),
        (Vec::new(), "is malformed"),
        (
            new_kwdek.replace_first("keywarden-volume-dek", "something-else"),
            "format is not",
        ),
        (
            new_kwdek.replace_first(r#""version": 1"#, r#""version": 9"#),
            "unsupported version 9",
        ),
    ] {
        std::fs::write(&kwdek, &bad).unwrap();
        let (out, text) = evs.qemu_io(&alice, &image, &["read 0 4k"]);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains(expect), "{expect}: {text}");
        assert!(!text.contains("panicked"), "{text}");
    }
    // Tampered ciphertext, or a volume id changed consistently: Keywarden
    // refuses to decrypt.
    let mut tampered = new_record.clone();
    let mut ciphertext = base64::engine::general_purpose::STANDARD
        .decode(new_record["encrypted_data_key"].as_str().unwrap())
        .unwrap();
    let mid = ciphertext.len() / 2;
    ciphertext[mid] ^= 1;
    tampered["encrypted_data_key"] = base64::engine::general_purpose::STANDARD
        .encode(&ciphertext)
        .into();
    let other_id = "6f9619ff-8b86-4d01-b42d-00cf4fc964ff";
    let mut moved = new_record.clone();
    moved["volume_id"] = other_id.into();
    moved["encryption_context"]["keywarden:volume"] = other_id.into();
    for forged in [tampered, moved] {
        std::fs::write(&kwdek, serde_json::to_vec(&forged).unwrap()).unwrap();
        let (out, text) = evs.qemu_io(&alice, &image, &["read 0 4k"]);
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains("Decrypt: InvalidCiphertextException"),
            "{text}"
        );
    }
    std::fs::write(&kwdek, &new_kwdek).unwrap();
    // A missing .kwdek.
    std::fs::rename(&kwdek, volumes.join("elsewhere")).unwrap();
    let (out, text) = evs.qemu_io(&alice, &image, &["read 0 4k"]);
    assert!(!out.status.success());
    assert!(
        text.contains("could not read") && text.contains(".kwdek"),
        "{text}"
    );
    std::fs::rename(volumes.join("elsewhere"), &kwdek).unwrap();
    assert_eq!(std::fs::read(&image).unwrap(), image_before);

    // A failed create leaves nothing behind.
    let failed = volumes.join("failed.qcow2");
    let out = evs
        .command(&[
            "create",
            "--account",
            &alice,
            "--image",
            failed.to_str().unwrap(),
            "--size",
            "64M",
        ])
        .env("KEYWARDEN_QEMU_IMG", "false")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("qemu-img create failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!failed.exists() && !volumes.join("failed.qcow2.kwdek").exists());

    // The passphrase never appears on a command line: `open` hands the
    // tool a pipe descriptor.
    let out = evs.ok(&[
        "open",
        "--account",
        &alice,
        "--image",
        image_s,
        "--",
        "echo",
    ]);
    let argv = String::from_utf8_lossy(&out.stdout);
    assert!(
        argv.starts_with("--object secret,id=kwsec0,file=/dev/fd/"),
        "{argv}"
    );
    assert!(!argv.contains(&new_passphrase), "{argv}");

    // The operator disables the evs product: `open` fails with the AWS
    // error, within the server's refresh interval.
    admin_json(&server.admin(&["product", "disable", "--code", "evs"]));
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let (out, text) = evs.qemu_io(&alice, &image, &["read 0 4k"]);
        if !out.status.success() {
            assert!(
                text.contains("AccessDeniedException") && text.contains("disabled"),
                "{text}"
            );
            assert!(!text.contains("read 4096"), "{text}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still opened 2 s after disabling the product"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = evs.fails(&["rotate", "--account", &alice, "--image", image_s]);
    assert!(err.contains("AccessDeniedException"), "{err}");
    assert_eq!(std::fs::read(&kwdek).unwrap(), new_kwdek);
    admin_json(&server.admin(&["product", "enable", "--code", "evs"]));

    // No passphrase and no data key anywhere on disk: not in the volumes,
    // the .kwdek, Keywarden's data dir or its log.
    let secrets: Vec<Vec<u8>> = [&old_passphrase, &new_passphrase]
        .into_iter()
        .flat_map(|p| {
            let raw: Vec<u8> = (0..32)
                .map(|i| u8::from_str_radix(&p[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            [p.as_bytes().to_vec(), p.to_uppercase().into_bytes(), raw]
        })
        .collect();
    let files = files_under(tmp.path());
    assert!(files.contains(&server.log) && files.contains(&kwdek));
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        for secret in &secrets {
            assert!(!contains(&bytes, secret), "{} holds a key", path.display());
        }
    }
}

trait ReplaceFirst {
    fn replace_first(&self, from: &str, to: &str) -> Vec<u8>;
}

impl ReplaceFirst for Vec<u8> {
    fn replace_first(&self, from: &str, to: &str) -> Vec<u8> {
        let text = std::str::from_utf8(self).unwrap();
        assert!(text.contains(from), "{from}");
        text.replacen(from, to, 1).into_bytes()
    }
}
