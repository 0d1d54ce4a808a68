//! Runs the real bench binary against a real keywarden server (spawned by the
//! bench itself) and checks the JSON report.

use std::process::Command;

use keywarden_testkit::server::keywarden_binary;

#[test]
fn spawned_keywarden_serves_2000_requests_without_errors() {
    let keywarden = keywarden_binary();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_keywarden-bench"))
        .arg("--spawn")
        .arg(&keywarden)
        .args([
            "--mix",
            "GenerateDataKey=1,Decrypt=1,Encrypt=1",
            "--concurrency",
            "4",
            "--requests",
            "2000",
            "--warmup",
            "0.5",
            "--pool-size",
            "32",
            "--fail-on-error",
            "--json",
        ])
        .arg(&json)
        .env("KEYWARDEN_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("command:"), "{stdout}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["total_errors"], 0, "{report:#}");
    assert_eq!(report["target"]["kind"], "spawn");
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["concurrency"], 4);
    assert_eq!(row["requests"], 2000, "{row:#}");
    assert_eq!(row["ok"], 2000);
    assert_eq!(row["errors"], 0);
    for op in ["GenerateDataKey", "Decrypt", "Encrypt"] {
        assert!(
            row["ops"][op]["requests"].as_u64().unwrap() > 0,
            "{op}: {row:#}"
        );
    }
    let cpu = row["server"]["cpu"]["us_per_request"].as_f64().unwrap();
    assert!(cpu > 0.0, "server CPU per request {cpu}: {row:#}");
    assert!(row["latency_us"]["p99"].as_f64().unwrap() > 0.0);
    assert!(row["server"]["rss_kib_after"].as_u64().unwrap() > 0);
    assert!(
        report["server_exit"]
            .as_str()
            .unwrap()
            .contains("stopped by SIGTERM"),
        "{report:#}"
    );
}

#[test]
fn spawned_keywarden_signs_with_an_ecc_key_beside_the_raw_signature() {
    let keywarden = keywarden_binary();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_keywarden-bench"))
        .arg("--spawn")
        .arg(&keywarden)
        .args([
            "--mix",
            "Sign=1",
            "--key-spec",
            "ECC_NIST_P256",
            "--concurrency",
            "2",
            "--requests",
            "300",
            "--warmup",
            "0.2",
            "--raw-duration",
            "0.3",
            "--fail-on-error",
            "--json",
        ])
        .arg(&json)
        .env("KEYWARDEN_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("raw µs/op"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["total_errors"], 0, "{report:#}");
    assert_eq!(report["key_spec"], "ECC_NIST_P256");
    let row = &report["rows"][0];
    assert_eq!(row["ok"], 300, "{row:#}");
    assert_eq!(row["ops"]["Sign"]["requests"], 300, "{row:#}");
    let raw = &report["raw"];
    assert_eq!(raw["operation"], "Sign", "{raw:#}");
    assert_eq!(raw["algorithm"], "ECDSA_SHA_256", "{raw:#}");
    assert_eq!(raw["message_bytes"], 256, "{raw:#}");
    assert!(raw["ops"].as_u64().unwrap() > 0, "{raw:#}");
    let raw_us = raw["us_per_op"].as_f64().unwrap();
    assert!(raw_us > 0.0, "{raw:#}");
    let srv = row["server"]["cpu"]["us_per_request"].as_f64().unwrap();
    let overhead = row["server_overhead_us_per_request"].as_f64().unwrap();
    assert!((srv - raw_us - overhead).abs() < 0.02, "{row:#} {raw:#}");

    // A mix the key cannot serve is refused before anything starts.
    let output = Command::new(env!("CARGO_BIN_EXE_keywarden-bench"))
        .arg("--spawn")
        .arg(&keywarden)
        .args(["--mix", "Sign=1", "--requests", "1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the mix has Sign") && stderr.contains("--key-spec"),
        "{stderr}"
    );
}

#[test]
fn pkcs11_subcommand_seals_on_a_fresh_softhsm_token() {
    let output = Command::new(env!("CARGO_BIN_EXE_keywarden-bench"))
        .args([
            "pkcs11",
            "--threads-list",
            "1,2",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pkcs11 failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{stdout}");
    for (row, threads) in rows.iter().zip([1, 2]) {
        assert_eq!(row["threads"], threads, "{stdout}");
        assert_eq!(row["errors"], 0, "{stdout}");
        assert!(row["ops"].as_u64().unwrap() > 0, "{stdout}");
    }
}

#[test]
fn spawned_keywarden_serves_an_hsm_key() {
    let keywarden = keywarden_binary();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_keywarden-bench"))
        .arg("--spawn")
        .arg(&keywarden)
        .args([
            "--hsm",
            "--hsm-sessions",
            "2",
            "--mix",
            "GenerateDataKey=1,Decrypt=1",
            "--concurrency",
            "2",
            "--requests",
            "200",
            "--warmup",
            "0",
            "--pool-size",
            "8",
            "--fail-on-error",
            "--json",
        ])
        .arg(&json)
        .env("KEYWARDEN_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("spawn-hsm"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["total_errors"], 0, "{report:#}");
}

#[test]
fn two_spawned_nodes_share_a_spawned_postgres() {
    let keywarden = keywarden_binary();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_keywarden-bench"))
        .arg("--spawn")
        .arg(&keywarden)
        .args([
            "--nodes",
            "2",
            "--spawn-postgres",
            "--mix",
            "GenerateDataKey=1,Decrypt=1",
            "--concurrency",
            "4",
            "--requests",
            "400",
            "--warmup",
            "0.2",
            "--pool-size",
            "8",
            "--fail-on-error",
            "--json",
        ])
        .arg(&json)
        .env("KEYWARDEN_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["total_errors"], 0, "{report:#}");
    let target = &report["target"];
    assert_eq!(target["nodes"].as_array().unwrap().len(), 2, "{target:#}");
    assert_eq!(target["database"]["spawned"], true, "{target:#}");
    assert!(target["database"]["postmaster_pid"].as_u64().unwrap() > 0);
    let row = &report["rows"][0];
    assert_eq!(row["requests"], 400, "{row:#}");
    let nodes = row["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{row:#}");
    // Two connections per node: both get a share.
    let per_node: Vec<u64> = nodes
        .iter()
        .map(|n| n["requests"].as_u64().unwrap())
        .collect();
    assert_eq!(per_node.iter().sum::<u64>(), 400, "{row:#}");
    assert!(per_node.iter().all(|&n| n > 0), "{row:#}");
    let node_ticks: u64 = nodes
        .iter()
        .map(|n| n["cpu"]["ticks"].as_u64().unwrap())
        .sum();
    assert_eq!(row["server"]["cpu"]["ticks"], node_ticks, "{row:#}");
    assert!(row["postgres"]["processes_after"].as_u64().unwrap() >= 4);
    let pg = row["postgres"]["cpu"]["ticks"].as_u64().unwrap();
    assert_eq!(
        row["keywarden_plus_postgres"]["ticks"].as_u64().unwrap(),
        node_ticks + pg,
        "{row:#}"
    );
    assert!(stdout.contains("node 2"), "{stdout}");
}
