//! Billing through the real server, the admin CLI and aws-sdk-kms
//! (docs/billing.md): an account whose charges exceed its balance is frozen
//! for CMK cryptography and unfrozen by a top-up; request counts survive
//! graceful restarts exactly; the admin commands refuse bad input without
//! writing anything.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, GrantOperation};
use aws_sdk_kms::Client;
use common::{admin_json, code, product_credential, raw_post, Account, Server};

/// One started hour of a software key costs 720000 / 720 = 1000 minor
/// units in a 30-day month (967 in a 31-day one, 1071 in February).
const FREEZE_CONFIG: &str = "\
[billing]
enabled = true
charge_interval_secs = 1

[billing.prices]
software_key_per_month_minor = 720000
";

/// A server with a configuration file, and the admin CLI with the same file.
struct Billed {
    server: Server,
    config: PathBuf,
    tmp: tempfile::TempDir,
}

impl Billed {
    fn start(config: &str) -> Billed {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keywarden.toml");
        std::fs::write(&path, config).unwrap();
        let server = Server::start_with(
            common::BIN,
            &tmp.path().join("data"),
            tmp.path().join("server.log"),
            &["--config", path.to_str().unwrap()],
        );
        Billed {
            server,
            config: path,
            tmp,
        }
    }

    /// Restarts the server (after [`Server::stop`]) on the same data dir.
    fn restart(&mut self) {
        self.server = Server::start_with(
            common::BIN,
            &self.tmp.path().join("data"),
            self.tmp.path().join("server.log"),
            &["--config", self.config.to_str().unwrap()],
        );
    }

    fn admin(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--config", self.config.to_str().unwrap()]);
        self.server.admin(&all)
    }
}

fn principal(code: &str) -> String {
    format!("arn:aws:iam::000000000000:role/keywarden-product/{code}")
}

async fn create_cmk(client: &Client) -> String {
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

async fn encrypt(client: &Client, key: &str) -> Result<Blob, String> {
    client
        .encrypt()
        .key_id(key)
        .plaintext(Blob::new(b"ledger".to_vec()))
        .send()
        .await
        .map(|o| o.ciphertext_blob.unwrap())
        .map_err(|e| code(&e))
}

/// Polls Encrypt until the account is frozen (the billing run posts every
/// second).
async fn wait_until_frozen(client: &Client, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match encrypt(client, key).await {
            Err(c) if c == "AccountFrozenException" => return,
            Ok(_) => {}
            Err(other) => panic!("unexpected {other}"),
        }
        assert!(
            Instant::now() < deadline,
            "the account was not frozen within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn frozen_message_ok<E: ProvideErrorMetadata>(err: &E) {
    assert_eq!(err.code(), Some("AccountFrozenException"));
    assert!(
        err.message().unwrap_or("").contains("insufficient balance"),
        "{:?}",
        err.message()
    );
}

fn charges(ledger: &serde_json::Value) -> i64 {
    ledger["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["Kind"] == "Charge")
        .map(|e| e["AmountMinorUnits"].as_i64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_balance_freezes_cmk_cryptography_until_a_top_up() {
    let b = Billed::start(FREEZE_CONFIG);
    let acct = b.server.account("tenant");
    let id = acct.account_id.as_str();
    let tenant = b.server.client(&acct);
    let evs_cred = product_credential(&b.server, "evs");
    let evs = b.server.client(&evs_cred);
    let mysql = b.server.client(&product_credential(&b.server, "mysql"));
    let evs_alias = format!("arn:aws:kms:us-east-1:{id}:alias_evs");

    // Enough for one key's first hour, not for two.
    let up = admin_json(&b.admin(&[
        "account",
        "topup",
        "--account",
        id,
        "--amount",
        "15.00",
        "--memo",
        "first",
    ]));
    assert_eq!(up["AmountMinorUnits"], 1500);
    assert_eq!(up["Frozen"], false);

    let cmk = create_cmk(&tenant).await;
    let blob = encrypt(&tenant, &cmk).await.expect("not frozen yet");
    tenant
        .create_grant()
        .key_id(&cmk)
        .grantee_principal(principal("mysql"))
        .operations(GrantOperation::GenerateDataKey)
        .operations(GrantOperation::Decrypt)
        .send()
        .await
        .unwrap();
    mysql
        .generate_data_key()
        .key_id(&cmk)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .expect("the grant works while the account is in credit");
    evs.generate_data_key()
        .key_id(&evs_alias)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .expect("the default key works");

    // The second key's first hour takes the balance below zero.
    let second = create_cmk(&tenant).await;
    wait_until_frozen(&tenant, &cmk).await;

    let err = tenant
        .encrypt()
        .key_id(&second)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    frozen_message_ok(err.as_service_error().unwrap());
    let err = tenant
        .generate_data_key()
        .key_id(&cmk)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap_err();
    frozen_message_ok(err.as_service_error().unwrap());
    let err = tenant
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap_err();
    frozen_message_ok(err.as_service_error().unwrap());
    // On the wire: HTTP 400 with the AWS error shape.
    let raw = raw_post(
        &b.server.url,
        &acct,
        "TrentService.Encrypt",
        &format!(r#"{{"KeyId": "{cmk}", "Plaintext": "eA=="}}"#),
    )
    .await;
    assert_eq!(raw.status, 400, "{raw:?}");
    assert_eq!(raw.error_type(), "AccountFrozenException");
    assert!(raw.body["message"]
        .as_str()
        .unwrap()
        .contains("insufficient balance"));

    // Management keeps working.
    tenant.describe_key().key_id(&cmk).send().await.unwrap();
    assert_eq!(tenant.list_keys().send().await.unwrap().keys().len(), 3);
    tenant
        .create_alias()
        .alias_name("alias/while-frozen")
        .target_key_id(&cmk)
        .send()
        .await
        .unwrap();

    // The product's default key keeps working; the granted CMK does not.
    evs.generate_data_key()
        .key_id(&evs_alias)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .expect("default keys are not frozen by default");
    let err = mysql
        .generate_data_key()
        .key_id(&cmk)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap_err();
    frozen_message_ok(err.as_service_error().unwrap());

    // The account sees why.
    let balance = raw_post(
        &b.server.url,
        &acct,
        "KeywardenService.GetAccountBalance",
        "{}",
    )
    .await;
    assert_eq!(balance.status, 200, "{balance:?}");
    assert_eq!(balance.body["AccountId"], id);
    assert_eq!(balance.body["Frozen"], true);
    assert_eq!(balance.body["BillingEnabled"], true);
    assert_eq!(balance.body["Currency"], "USD");
    let minor = balance.body["BalanceMinorUnits"].as_i64().unwrap();
    assert!(minor < 0, "{balance:?}");
    assert!(balance.body["Balance"].as_str().unwrap().starts_with('-'));
    assert_eq!(balance.body["MonthToDate"]["KeyHours"], 2);
    // Products may not call it.
    let refused = raw_post(
        &b.server.url,
        &evs_cred,
        "KeywardenService.GetAccountBalance",
        "{}",
    )
    .await;
    assert_eq!(refused.error_type(), "AccessDeniedException", "{refused:?}");

    // The operator's view agrees.
    let standing = admin_json(&b.admin(&["account", "balance", "--account", id]));
    assert_eq!(standing["Frozen"], true);
    assert_eq!(standing["BalanceMinorUnits"], minor);

    // A top-up unfreezes at once; the server notices within its cache
    // refresh period.
    let up = admin_json(&b.admin(&["account", "topup", "--account", id, "--amount", "100.00"]));
    assert_eq!(up["Frozen"], false);
    assert_eq!(up["BalanceMinorUnits"], minor + 10_000);
    let topped_up = Instant::now();
    loop {
        match encrypt(&tenant, &cmk).await {
            Ok(_) => break,
            Err(c) => {
                assert_eq!(c, "AccountFrozenException");
                assert!(
                    topped_up.elapsed() < Duration::from_secs(1),
                    "still frozen 1 s after the top-up"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    tenant.decrypt().ciphertext_blob(blob).send().await.unwrap();
    mysql
        .generate_data_key()
        .key_id(&cmk)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();

    // The ledger: the first top-up, the charges, the second top-up.
    let ledger = admin_json(&b.admin(&["account", "ledger", "--account", id]));
    let entries = ledger["Entries"].as_array().unwrap();
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["Kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"TopUp"));
    assert_eq!(kinds.last(), Some(&"TopUp"));
    assert!(kinds.contains(&"Charge"), "{ledger:#}");
    assert_eq!(entries[0]["Memo"], "first");
    assert_eq!(entries[0]["Amount"], "15.00");
    assert!(entries[0]["Time"].as_str().unwrap().ends_with('Z'));
    let posted = charges(&ledger);
    assert!(posted > 1500, "{ledger:#}");
    assert_eq!(ledger["BalanceMinorUnits"], 11_500 - posted);

    // The statement of this month: its lines add up to the charges posted.
    let month = standing["MonthToDate"]["Month"]
        .as_str()
        .unwrap()
        .to_owned();
    let st = admin_json(&b.admin(&["account", "statement", "--account", id, "--month", &month]));
    let lines = st["Lines"].as_array().unwrap();
    let sum: i64 = lines
        .iter()
        .map(|l| l["AmountMinorUnits"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, st["LinesTotalMinorUnits"].as_i64().unwrap());
    assert_eq!(
        sum,
        st["ChargesPostedMinorUnits"].as_i64().unwrap(),
        "{st:#}"
    );
    assert_eq!(st["Reconciled"], true);
    assert_eq!(st["TopUpsMinorUnits"], 11_500);
    let key_lines: Vec<_> = lines.iter().filter(|l| l["Kind"] == "KeyHours").collect();
    assert_eq!(key_lines.len(), 2, "default keys are free: {st:#}");
    assert!(key_lines
        .iter()
        .all(|l| l["Hours"] == 1 && l["Protection"] == "SOFTWARE"));
    let requests = lines.iter().find(|l| l["Kind"] == "Requests").unwrap();
    assert_eq!(requests["AmountMinorUnits"], 0, "within the free requests");
    let text = b.admin(&[
        "account",
        "statement",
        "--account",
        id,
        "--month",
        &month,
        "--format",
        "text",
    ]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("(amounts in USD)"), "{text}");
    assert!(
        text.contains(&format!("Charges posted for {month}")),
        "{text}"
    );
    assert!(!text.contains("not posted"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_default_keys_stops_the_products_default_keys_too() {
    let b = Billed::start(&FREEZE_CONFIG.replace(
        "charge_interval_secs = 1\n",
        "charge_interval_secs = 1\nfreeze_default_keys = true\n",
    ));
    let acct = b.server.account("tenant");
    let tenant = b.server.client(&acct);
    let evs = b.server.client(&product_credential(&b.server, "evs"));
    let evs_alias = format!("arn:aws:kms:us-east-1:{}:alias_evs", acct.account_id);
    let cmk = create_cmk(&tenant).await;
    wait_until_frozen(&tenant, &cmk).await;
    let err = evs
        .generate_data_key()
        .key_id(&evs_alias)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap_err();
    frozen_message_ok(err.as_service_error().unwrap());

    admin_json(&b.admin(&[
        "account",
        "topup",
        "--account",
        &acct.account_id,
        "--amount",
        "50",
    ]));
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match evs
            .generate_data_key()
            .key_id(&evs_alias)
            .key_spec(DataKeySpec::Aes256)
            .send()
            .await
        {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(code(&e), "AccountFrozenException");
                assert!(Instant::now() < deadline, "still frozen after 1 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

type Tally = Arc<Mutex<BTreeMap<(String, &'static str), u64>>>;

/// `clients` concurrent clients, `each` requests each, cycling through
/// Encrypt, GenerateDataKey and Decrypt on `keys`; successes tallied per
/// key id and operation.
async fn load(
    server: &Server,
    acct: &Account,
    keys: &[(String, Blob)],
    each: usize,
    tally: &Tally,
) {
    let tasks: Vec<_> = (0..4)
        .map(|c| {
            let client = server.client(acct);
            let keys = keys.to_vec();
            let tally = tally.clone();
            tokio::spawn(async move {
                for i in 0..each {
                    let (arn, blob) = &keys[(c + i) % keys.len()];
                    let key_id = arn.rsplit('/').next().unwrap().to_owned();
                    let op = match i % 3 {
                        0 => client
                            .encrypt()
                            .key_id(arn)
                            .plaintext(Blob::new(vec![i as u8; 16]))
                            .send()
                            .await
                            .map(|_| "Encrypt")
                            .map_err(|e| code(&e)),
                        1 => client
                            .generate_data_key()
                            .key_id(arn)
                            .key_spec(DataKeySpec::Aes256)
                            .send()
                            .await
                            .map(|_| "GenerateDataKey")
                            .map_err(|e| code(&e)),
                        _ => client
                            .decrypt()
                            .ciphertext_blob(blob.clone())
                            .send()
                            .await
                            .map(|_| "Decrypt")
                            .map_err(|e| code(&e)),
                    };
                    if let Ok(op) = op {
                        *tally.lock().unwrap().entry((key_id, op)).or_default() += 1;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_counts_are_exact_across_graceful_restarts() {
    let mut b = Billed::start("[billing]\nenabled = true\n");
    let acct = b.server.account("tenant");
    let tally: Tally = Arc::default();
    let mut keys = Vec::new();
    {
        let tenant = b.server.client(&acct);
        for _ in 0..2 {
            let arn = create_cmk(&tenant).await;
            let blob = encrypt(&tenant, &arn).await.unwrap();
            let key_id = arn.rsplit('/').next().unwrap().to_owned();
            *tally
                .lock()
                .unwrap()
                .entry((key_id, "Encrypt"))
                .or_default() += 1;
            keys.push((arn, blob));
        }
        // ReEncrypt is one request: counted once, for its destination.
        tenant
            .re_encrypt()
            .ciphertext_blob(keys[0].1.clone())
            .destination_key_id(&keys[1].0)
            .send()
            .await
            .unwrap();
        let dest = keys[1].0.rsplit('/').next().unwrap().to_owned();
        *tally
            .lock()
            .unwrap()
            .entry((dest, "ReEncrypt"))
            .or_default() += 1;
    }

    load(&b.server, &acct, &keys, 50, &tally).await;
    assert!(b.server.stop().success());
    b.restart();
    load(&b.server, &acct, &keys, 50, &tally).await;
    assert!(b.server.stop().success());

    let expected = tally.lock().unwrap().clone();
    let successes: u64 = expected.values().sum();
    assert!(successes >= 400, "{expected:?}");
    let usage = admin_json(&b.admin(&["account", "usage", "--account", &acct.account_id]));
    assert_eq!(usage["TotalRequests"], successes, "{usage:#}");
    let got: BTreeMap<(String, String), u64> = usage["Requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (
                    r["KeyId"].as_str().unwrap().to_owned(),
                    r["Operation"].as_str().unwrap().to_owned(),
                ),
                r["Count"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: BTreeMap<(String, String), u64> = expected
        .iter()
        .map(|((k, op), n)| ((k.clone(), (*op).to_owned()), *n))
        .collect();
    assert_eq!(got, want);
    let mut by_op: BTreeMap<&str, u64> = BTreeMap::new();
    for ((_, op), n) in &expected {
        *by_op.entry(op).or_default() += n;
    }
    for (op, n) in by_op {
        assert_eq!(usage["RequestsByOperation"][op], n, "{op}");
    }
    assert_eq!(usage["KeyHours"].as_array().unwrap().len(), 2);
    assert_eq!(usage["TotalKeyHours"], 2);
}

fn run_admin(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(common::BIN)
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

fn refused(out: &Output, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted; stdout {:?}", out.stdout);
    assert!(stderr.contains(says), "expected {says:?} in {stderr}");
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_top_up_retried_with_its_reference_credits_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let acct =
        common::parse_account(&run_admin(&data, &["account", "create", "--name", "t"]).stdout);
    let id = acct.account_id.as_str();
    let top_up = |amount: &str| {
        run_admin(
            &data,
            &[
                "account",
                "topup",
                "--account",
                id,
                "--amount",
                amount,
                "--memo",
                "invoice 7",
                "--reference",
                "txn-0007",
            ],
        )
    };
    let first = admin_json(&top_up("12.50"));
    assert_eq!(first["Reference"], "txn-0007");
    assert_eq!(first["BalanceMinorUnits"], 1250);
    // The acknowledgement was lost; the operator retries.
    let again = admin_json(&top_up("12.50"));
    assert_eq!(again["Seq"], first["Seq"], "the retry names the same entry");
    assert_eq!(again["Time"], first["Time"]);
    assert_eq!(again["Reference"], "txn-0007");
    assert_eq!(again["BalanceMinorUnits"], 1250, "credited once");
    refused(
        &top_up("13"),
        "reference txn-0007 was used for a top-up of 12.50, not 13.00",
    );
    // Without a reference every top-up appends.
    admin_json(&run_admin(
        &data,
        &["account", "topup", "--account", id, "--amount", "1"],
    ));
    let ledger = admin_json(&run_admin(&data, &["account", "ledger", "--account", id]));
    let entries = ledger["Entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{ledger}");
    assert_eq!(entries[0]["Reference"], "txn-0007");
    assert!(entries[1].get("Reference").is_none(), "{ledger}");
    assert_eq!(ledger["BalanceMinorUnits"], 1350);
    refused(
        &run_admin(
            &data,
            &[
                "account",
                "topup",
                "--account",
                id,
                "--amount",
                "1",
                "--reference",
                "tab\there",
            ],
        ),
        "printable ASCII",
    );
}

#[test]
fn bad_admin_input_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let acct =
        common::parse_account(&run_admin(&data, &["account", "create", "--name", "t"]).stdout);
    let id = acct.account_id.as_str();
    admin_json(&run_admin(
        &data,
        &["account", "topup", "--account", id, "--amount", "5"],
    ));
    let ledger = || admin_json(&run_admin(&data, &["account", "ledger", "--account", id]));
    let before = ledger();
    assert_eq!(before["Entries"].as_array().unwrap().len(), 1);
    assert_eq!(before["Entries"][0]["AmountMinorUnits"], 500);

    for (amount, says) in [
        ("-1", "no sign"),
        ("0", "greater than zero"),
        ("0.00", "greater than zero"),
        ("1.234", "at most 2 fraction digits"),
        ("abc", "invalid amount"),
        ("1e3", "invalid amount"),
        ("", "invalid amount"),
    ] {
        refused(
            &run_admin(
                &data,
                &["account", "topup", "--account", id, "--amount", amount],
            ),
            says,
        );
    }
    refused(
        &run_admin(
            &data,
            &[
                "account",
                "topup",
                "--account",
                "999999999999",
                "--amount",
                "1",
            ],
        ),
        "account 999999999999 does not exist",
    );
    refused(
        &run_admin(
            &data,
            &["account", "topup", "--account", "12", "--amount", "1"],
        ),
        "12-digit account id",
    );
    refused(
        &run_admin(&data, &["account", "balance", "--account", "999999999999"]),
        "does not exist",
    );

    for (config, says) in [
        ("[billing]\nenabeld = true\n", "unknown field"),
        (
            "[billing.prices]\nsoftware_key_per_month_minor = -1\n",
            "prices must not be negative",
        ),
        ("[billing\nenabled = true\n", "is not valid"),
    ] {
        let path = tmp.path().join("bad.toml");
        std::fs::write(&path, config).unwrap();
        refused(
            &run_admin(
                &data,
                &[
                    "account",
                    "topup",
                    "--account",
                    id,
                    "--amount",
                    "1",
                    "--config",
                    path.to_str().unwrap(),
                ],
            ),
            says,
        );
    }
    refused(
        &run_admin(
            &data,
            &[
                "account",
                "statement",
                "--account",
                id,
                "--month",
                "2026-13",
            ],
        ),
        "month must be YYYY-MM",
    );
    refused(
        &run_admin(
            &data,
            &["account", "usage", "--account", id, "--month", "26-1"],
        ),
        "month must be YYYY-MM",
    );
    assert_eq!(ledger(), before);

    // A currency without minor units takes whole amounts only.
    let yen = tmp.path().join("yen.toml");
    std::fs::write(
        &yen,
        "[billing.prices]\ncurrency = \"JPY\"\nminor_digits = 0\n",
    )
    .unwrap();
    let yen = yen.to_str().unwrap();
    refused(
        &run_admin(
            &data,
            &[
                "account",
                "topup",
                "--account",
                id,
                "--amount",
                "1.5",
                "--config",
                yen,
            ],
        ),
        "at most 0 fraction digits",
    );
    let up = admin_json(&run_admin(
        &data,
        &[
            "account",
            "topup",
            "--account",
            id,
            "--amount",
            "1500",
            "--config",
            yen,
        ],
    ));
    assert_eq!(up["AmountMinorUnits"], 1500);
    assert_eq!(up["Currency"], "JPY");

    // Billing off: the statement shows the lines but says nothing was
    // posted when they differ (nothing metered here, so they agree).
    let st = admin_json(&run_admin(
        &data,
        &[
            "account",
            "statement",
            "--account",
            id,
            "--month",
            "2026-11",
        ],
    ));
    assert_eq!(st["BillingEnabled"], false);
    assert_eq!(st["ChargesPostedMinorUnits"], 0);
}
