//! `keywarden-sfs` end to end: the real `keywarden` server (port 0, fresh
//! data dir), an account and `sfs` product credentials made with
//! `keywarden admin`, the real `keywarden-sfs` binary and the real system
//! tools (fscrypt, mkfs.ext4, mount). Checks that files written in an
//! unlocked file system read back in fresh processes and after a remount,
//! that locking leaves only encoded names and unreadable contents, that the
//! image and the metadata file hold neither plaintext nor the data key
//! (with an unencrypted directory as positive control), that rekeying keeps
//! the files and retires the old key, and that refusals are clean, one-line
//! errors.
//!
//! Needs root, loop devices and ext4 encryption in the kernel; without them
//! it prints "skipped: <why>" and returns. Without the fscrypt or mkfs.ext4
//! tools it skips too, except under CI (`CI` set), where scripts/test.sh
//! installs them and their absence is a failure.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use keywarden_testkit::server::{admin_json, keywarden_binary, Server};

use base64::Engine as _;

const SFS: &str = env!("CARGO_BIN_EXE_keywarden-sfs");

/// The contents of a file in the encrypted directory.
const MARKER: &[u8] = b"KWSFSmarker-5d1e8c0a: the tenant's plaintext";
/// The name of a file in the encrypted directory.
const NAME_MARKER: &str = "KWSFSname-a41f7c93.txt";
/// The contents of a file in an unencrypted directory (positive control).
const CONTROL: &[u8] = b"KWSFScontrol-0b3e9d17: not encrypted";
const CONTROL_NAME: &str = "KWSFScontrolname-77c2.txt";

/// fscrypt's global configuration. Its CLI reads only this path (no flag or
/// environment variable names another), so the test writes one when, and
/// only when, the file is absent: v2 policies, AES-256-XTS/CTS, cheap
/// passphrase hashing (only passphrase protectors use it; ours are raw keys).
const FSCRYPT_CONF: &str = "/etc/fscrypt.conf";
const FSCRYPT_CONF_TEXT: &str = r#"{
	"source": "custom_passphrase",
	"hash_costs": {"time": "1", "memory": "8192", "parallelism": "1"},
	"options": {"padding": "32", "contents": "AES_256_XTS", "filenames": "AES_256_CTS", "policy_version": "2"},
	"use_fs_keyring_for_v1_policies": false,
	"allow_cross_user_metadata": false
}
"#;

/// Why this machine cannot run the test, if it cannot. A missing tool is
/// a failure under CI.
fn unsupported() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root (mount and fscrypt setup need root)".to_owned());
    }
    if !Path::new("/sys/fs/ext4/features/encryption").exists() {
        return Some(
            "the kernel's ext4 has no encryption (/sys/fs/ext4/features/encryption)".into(),
        );
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no loop devices (/dev/loop-control)".to_owned());
    }
    for (tool, arg, package) in [
        ("fscrypt", "--version", "fscrypt"),
        ("mkfs.ext4", "-V", "e2fsprogs"),
    ] {
        let found = Command::new(tool)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            let why = format!(
                "{tool} not found: install the system package {package} (scripts/test.sh does)"
            );
            assert!(std::env::var_os("CI").is_none(), "{why}");
            return Some(why);
        }
    }
    None
}

fn ensure_fscrypt_conf() {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(FSCRYPT_CONF)
    {
        Ok(mut f) => {
            f.write_all(FSCRYPT_CONF_TEXT.as_bytes()).unwrap();
            let _ = writeln!(
                std::io::stderr(),
                "note: {FSCRYPT_CONF} was absent; created it (v2 policies) and left it in place"
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("could not create {FSCRYPT_CONF}: {e}"),
    }
}

/// Unmounts its directory on drop if it is still mounted, so that a failing
/// assertion leaves no mount behind.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
}

fn is_mounted(dir: &Path) -> bool {
    let dir = std::fs::canonicalize(dir).unwrap();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(1) == dir.to_str())
}

/// The sfs product's view: how `keywarden-sfs` reaches Keywarden.
struct Sfs {
    endpoint: String,
    access_key_id: String,
    secret_access_key: String,
}

impl Sfs {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(SFS);
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
        self.command(args).output().expect("run keywarden-sfs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "keywarden-sfs {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs a command that must fail with one line on stderr; returns it.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "keywarden-sfs {args:?} should have failed; stderr: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "not one line: {stderr}"
        );
        assert!(stderr.starts_with("keywarden-sfs: error: "), "{stderr}");
        stderr
    }

    /// The data key a .kwsfs file stands for, decrypted here as the sfs
    /// product (test-only: the binary never shows it).
    fn data_key_of(&self, kwsfs: &[u8], account: &str) -> Vec<u8> {
        let record: serde_json::Value = serde_json::from_slice(kwsfs).unwrap();
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
        let client = keywarden_product::ProductClient::new(keywarden_product::ProductConfig {
            endpoint: self.endpoint.clone(),
            region: "us-east-1".to_owned(),
            product_code: "sfs".to_owned(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone().into(),
        })
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let key = runtime
            .block_on(client.decrypt_data_key(account, &key_arn, &context, &ciphertext))
            .unwrap();
        key.expose().to_vec()
    }
}

/// `fscrypt unlock DIR` with `key` on its standard input (a datagram socket,
/// as the binary does it: the test writes no key file either).
fn fscrypt_unlock_with(dir: &Path, key: &[u8]) -> (bool, String) {
    let (ours, theirs) = UnixDatagram::pair().unwrap();
    ours.send(key).unwrap();
    drop(ours);
    let out = Command::new("fscrypt")
        .arg("unlock")
        .arg(dir)
        .arg("--quiet")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The policy descriptor `fscrypt status DIR` shows.
fn policy_of(dir: &Path) -> String {
    let out = Command::new("fscrypt")
        .arg("status")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Policy:").map(|p| p.trim().to_owned()))
        .expect("a policy")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// The names in `dir`, as they are listed.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn file_systems_round_trip_encrypted_rekey_and_refuse_cleanly() {
    if let Some(why) = unsupported() {
        // Straight to the process's stderr: the test harness captures
        // print!/eprint!, and a skip must show in an ordinary run.
        let _ = writeln!(std::io::stderr(), "skipped: {why}");
        return;
    }
    ensure_fscrypt_conf();
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
    let creds = admin_json(&server.admin(&["product", "credentials", "create", "--code", "sfs"]));
    let sfs = Sfs {
        endpoint: server.url.clone(),
        access_key_id: creds["AccessKeyId"].as_str().unwrap().to_owned(),
        secret_access_key: creds["SecretAccessKey"].as_str().unwrap().to_owned(),
    };
    let images = tmp.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let image = images.join("fs.img");
    let image_s = image.to_str().unwrap();
    let kwsfs = images.join("fs.img.kwsfs");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _guard = MountGuard(mnt.clone());
    let mnt_s = mnt.to_str().unwrap();
    let data = mnt.join("data");
    let fs_args = |account: &str| -> Vec<String> {
        vec![
            "--account".into(),
            account.into(),
            "--image".into(),
            image_s.into(),
            "--dir".into(),
            mnt_s.into(),
        ]
    };
    let with = |command: &str, account: &str| -> Vec<String> {
        let mut v = vec![command.to_owned()];
        v.extend(fs_args(account));
        v
    };
    let unlock_alice = with("unlock", &alice);
    let mount_alice = with("mount", &alice);
    let rekey_alice = with("rekey", &alice);

    // Create: an ext4 image and its .kwsfs (both 0600) under alice's sfs
    // key, left unmounted and with nothing else beside them.
    let said = sfs.ok(&[
        "create",
        "--account",
        &alice,
        "--image",
        image_s,
        "--size",
        "64M",
    ]);
    assert!(said.contains(&format!(":{alice}:key/")), "{said}");
    assert!(said.contains("locked and unmounted"), "{said}");
    for path in [&image, &kwsfs] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }
    assert_eq!(names_in(&images), ["fs.img", "fs.img.kwsfs"]);
    assert!(!std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .contains(images.to_str().unwrap()));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&kwsfs).unwrap()).unwrap();
    let key_arn = record["key_arn"].as_str().unwrap().to_owned();
    assert!(
        key_arn.starts_with(&format!("arn:aws:kms:us-east-1:{alice}:key/")),
        "{key_arn}"
    );
    assert_eq!(record["format"], "keywarden-sfs-dek");
    assert_eq!(record["encryption_context"]["keywarden:product"], "sfs");
    assert_eq!(record["encryption_context"]["account"], alice.as_str());
    assert_eq!(
        record["encryption_context"]["keywarden:filesystem"],
        record["filesystem_id"]
    );
    // The ext4 superblock (at 1024; s_magic at +0x38, s_uuid at +0x68)
    // carries the file system id.
    let head = std::fs::read(&image).unwrap();
    assert_eq!(&head[1024 + 0x38..1024 + 0x3a], &[0x53, 0xef], "not ext4");
    let fs_uuid: String = hex(&head[1024 + 0x68..1024 + 0x78]);
    assert_eq!(
        fs_uuid,
        record["filesystem_id"].as_str().unwrap().replace('-', "")
    );
    drop(head);

    // Never overwritten.
    let err = sfs.fails(&[
        "create",
        "--account",
        &alice,
        "--image",
        image_s,
        "--size",
        "64M",
    ]);
    assert!(err.contains("already exists"), "{err}");

    // A create that fails after mounting (fscrypt missing) unmounts and
    // leaves nothing behind.
    let failed = images.join("failed.img");
    let out = sfs
        .command(&[
            "create",
            "--account",
            &alice,
            "--image",
            failed.to_str().unwrap(),
            "--size",
            "64M",
        ])
        .env("KEYWARDEN_FSCRYPT", "false")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("could not create") && err.contains("false failed"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(names_in(&images), ["fs.img", "fs.img.kwsfs"]);
    assert!(!std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .contains(images.to_str().unwrap()));

    // Mounted but locked: nothing can be created in data/.
    sfs.ok(&args(&mount_alice));
    assert!(is_mounted(&mnt));
    assert_eq!(policy_of(&data).len(), 32, "a v2 policy descriptor");
    assert!(std::fs::write(data.join("early.txt"), b"x").is_err());

    // Unlock, write; an unencrypted directory beside data/ as the control.
    sfs.ok(&args(&unlock_alice));
    std::fs::write(data.join(NAME_MARKER), MARKER).unwrap();
    std::fs::create_dir(data.join("sub")).unwrap();
    std::fs::write(data.join("sub").join("nested.txt"), MARKER).unwrap();
    std::fs::create_dir(mnt.join("plain")).unwrap();
    std::fs::write(mnt.join("plain").join(CONTROL_NAME), CONTROL).unwrap();

    // Locked: the names are encoded, the contents unreadable.
    sfs.ok(&["lock", "--dir", mnt_s]);
    let locked = names_in(&data);
    assert_eq!(locked.len(), 2, "{locked:?}");
    for name in &locked {
        assert!(!name.contains("KWSFS") && name != "sub", "{locked:?}");
        let path = data.join(name);
        if path.is_file() {
            let err = std::fs::read(&path).unwrap_err();
            assert!(
                err.to_string().contains("Required key not available"),
                "{err}"
            );
        }
    }
    assert_eq!(
        std::fs::read(mnt.join("plain").join(CONTROL_NAME)).unwrap(),
        CONTROL
    );

    // Unlocked again by a fresh process, and after a remount.
    sfs.ok(&args(&unlock_alice));
    assert_eq!(names_in(&data), [NAME_MARKER, "sub"]);
    assert_eq!(std::fs::read(data.join(NAME_MARKER)).unwrap(), MARKER);
    sfs.ok(&["lock", "--dir", mnt_s]);
    sfs.ok(&["umount", "--dir", mnt_s]);
    assert!(!is_mounted(&mnt));
    sfs.ok(&args(&mount_alice));
    assert_ne!(
        names_in(&data),
        [NAME_MARKER, "sub"],
        "unlocked without a key"
    );
    sfs.ok(&args(&unlock_alice));
    assert_eq!(
        std::fs::read(data.join("sub").join("nested.txt")).unwrap(),
        MARKER
    );
    sfs.ok(&["lock", "--dir", mnt_s]);
    sfs.ok(&["umount", "--dir", mnt_s]);

    // No plaintext in the image (unmounted: everything is on it); the
    // unencrypted directory's contents and name are there.
    let old_kwsfs = std::fs::read(&kwsfs).unwrap();
    let old_key = sfs.data_key_of(&old_kwsfs, &alice);
    assert_eq!(old_key.len(), 32);
    let image_bytes = std::fs::read(&image).unwrap();
    assert!(
        contains(&image_bytes, CONTROL),
        "positive control: no plaintext found at all"
    );
    assert!(contains(&image_bytes, CONTROL_NAME.as_bytes()));
    assert!(!contains(&image_bytes, MARKER), "the image holds plaintext");
    assert!(
        !contains(&image_bytes, NAME_MARKER.as_bytes()),
        "the image holds a file name"
    );
    assert!(
        !contains(&image_bytes, &old_key),
        "the image holds the data key"
    );
    assert!(!contains(&old_kwsfs, &old_key) && !contains(&old_kwsfs, hex(&old_key).as_bytes()));
    drop(image_bytes);

    // Refusals, with the image mounted and locked; all leave it locked.
    sfs.ok(&args(&mount_alice));
    // Another account: refused before asking Keywarden.
    for command in ["unlock", "mount", "rekey"] {
        let err = sfs.fails(&args(&with(command, &bob)));
        assert!(
            err.contains(&format!("belongs to account {alice}, not {bob}")),
            "{command}: {err}"
        );
    }
    // Malformed and tampered metadata.
    for (bad, expect) in [
        (b"{not json".to_vec(), "is malformed"),
        (Vec::new(), "is malformed"),
        (
            replace_first(&old_kwsfs, "keywarden-sfs-dek", "something-else"),
            "format is not",
        ),
        (
            replace_first(&old_kwsfs, r#""version": 1"#, r#""version": 9"#),
            "unsupported version 9",
        ),
    ] {
        std::fs::write(&kwsfs, &bad).unwrap();
        let err = sfs.fails(&args(&unlock_alice));
        assert!(err.contains(expect), "{expect}: {err}");
    }
    let mut tampered: serde_json::Value = serde_json::from_slice(&old_kwsfs).unwrap();
    let mut ciphertext = base64::engine::general_purpose::STANDARD
        .decode(record["encrypted_data_key"].as_str().unwrap())
        .unwrap();
    let mid = ciphertext.len() / 2;
    ciphertext[mid] ^= 1;
    tampered["encrypted_data_key"] = base64::engine::general_purpose::STANDARD
        .encode(&ciphertext)
        .into();
    let other_id = "6f9619ff-8b86-4d01-b42d-00cf4fc964ff";
    let mut moved: serde_json::Value = serde_json::from_slice(&old_kwsfs).unwrap();
    moved["filesystem_id"] = other_id.into();
    moved["encryption_context"]["keywarden:filesystem"] = other_id.into();
    for forged in [tampered, moved] {
        std::fs::write(&kwsfs, serde_json::to_vec(&forged).unwrap()).unwrap();
        let err = sfs.fails(&args(&unlock_alice));
        assert!(err.contains("Decrypt: InvalidCiphertextException"), "{err}");
    }
    std::fs::remove_file(&kwsfs).unwrap();
    let err = sfs.fails(&args(&unlock_alice));
    assert!(
        err.contains("could not read") && err.contains(".kwsfs"),
        "{err}"
    );
    std::fs::write(&kwsfs, &old_kwsfs).unwrap();
    assert_ne!(names_in(&data), [NAME_MARKER, "sub"], "a refusal unlocked");

    // Rekey: a new data key and protector; the policy (and so the master
    // key and the files' keys) unchanged; the old key no longer unlocks.
    let policy = policy_of(&data);
    let said = sfs.ok(&args(&rekey_alice));
    assert!(
        said.contains("rekeyed") && said.contains("old protector removed"),
        "{said}"
    );
    let new_kwsfs = std::fs::read(&kwsfs).unwrap();
    let new_record: serde_json::Value = serde_json::from_slice(&new_kwsfs).unwrap();
    assert_eq!(new_record["filesystem_id"], record["filesystem_id"]);
    assert_eq!(new_record["key_arn"], key_arn.as_str());
    assert_ne!(
        new_record["encrypted_data_key"],
        record["encrypted_data_key"]
    );
    assert_ne!(new_record["protector_name"], record["protector_name"]);
    let new_key = sfs.data_key_of(&new_kwsfs, &alice);
    assert_ne!(new_key, old_key);
    assert_eq!(policy_of(&data), policy, "rekey changed the policy");

    let (ok, err) = fscrypt_unlock_with(&data, &old_key);
    assert!(!ok, "the old data key still unlocks");
    assert!(err.contains("incorrect key provided"), "{err}");
    let (ok, err) = fscrypt_unlock_with(&data, &new_key);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(data.join(NAME_MARKER)).unwrap(), MARKER);
    sfs.ok(&["lock", "--dir", mnt_s]);
    sfs.ok(&args(&unlock_alice));
    assert_eq!(std::fs::read(data.join(NAME_MARKER)).unwrap(), MARKER);
    sfs.ok(&["lock", "--dir", mnt_s]);
    // The old .kwsfs names a protector that is gone.
    std::fs::write(&kwsfs, &old_kwsfs).unwrap();
    let err = sfs.fails(&args(&unlock_alice));
    assert!(err.contains("no protector named"), "{err}");
    std::fs::write(&kwsfs, &new_kwsfs).unwrap();

    // What fscrypt is given: a wrapper records its arguments and
    // environment, then runs the real fscrypt. Neither holds the key (the
    // scan of every file at the end covers the record) nor the product's
    // credential.
    let record_file = tmp.path().join("fscrypt-argv-env.txt");
    let wrapper = tmp.path().join("fscrypt-wrapper.sh");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&wrapper)
            .unwrap();
        write!(
            f,
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{0}'\nenv >> '{0}'\nexec fscrypt \"$@\"\n",
            record_file.display()
        )
        .unwrap();
    }
    let out = sfs
        .command(&args(&unlock_alice))
        .env("KEYWARDEN_FSCRYPT", &wrapper)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(data.join(NAME_MARKER)).unwrap(), MARKER);
    sfs.ok(&["lock", "--dir", mnt_s]);
    let recorded = std::fs::read_to_string(&record_file).unwrap();
    assert!(
        recorded.contains("unlock") && recorded.contains("--unlock-with="),
        "{recorded}"
    );
    assert!(!recorded.contains("--key"), "{recorded}");
    assert!(
        !recorded.contains(&sfs.secret_access_key),
        "the credential reached fscrypt"
    );
    assert!(!recorded.contains("AWS_ACCESS_KEY_ID"), "{recorded}");

    // The operator disables the sfs product: unlock and rekey fail with
    // the AWS error, within the server's refresh interval.
    admin_json(&server.admin(&["product", "disable", "--code", "sfs"]));
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let out = sfs.run(&args(&unlock_alice));
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("AccessDeniedException") && err.contains("disabled"),
                "{err}"
            );
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            break;
        }
        sfs.ok(&["lock", "--dir", mnt_s]);
        assert!(
            std::time::Instant::now() < deadline,
            "still unlocked 2 s after disabling the product"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = sfs.fails(&args(&rekey_alice));
    assert!(err.contains("AccessDeniedException"), "{err}");
    assert_eq!(std::fs::read(&kwsfs).unwrap(), new_kwsfs);
    assert_ne!(names_in(&data), [NAME_MARKER, "sub"]);
    admin_json(&server.admin(&["product", "enable", "--code", "sfs"]));
    sfs.ok(&["umount", "--dir", mnt_s]);

    // No data key anywhere on disk: not in the image, the .kwsfs,
    // Keywarden's data dir or its log.
    let secrets: Vec<Vec<u8>> = [&old_key, &new_key]
        .into_iter()
        .flat_map(|k| {
            [
                k.clone(),
                hex(k).into_bytes(),
                hex(k).to_uppercase().into_bytes(),
            ]
        })
        .collect();
    let files = files_under(tmp.path());
    assert!(files.contains(&server.log) && files.contains(&kwsfs) && files.contains(&image));
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        for secret in &secrets {
            assert!(!contains(&bytes, secret), "{} holds a key", path.display());
        }
    }
}

fn replace_first(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(text.contains(from), "{from}");
    text.replacen(from, to, 1).into_bytes()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
