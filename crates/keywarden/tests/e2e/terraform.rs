//! Terraform's AWS provider against the real server: `aws_kms_key` (with
//! rotation, tags and a deletion window) and `aws_kms_alias` apply, a plan
//! afterwards shows no changes, and destroy succeeds. The provider reads
//! the key policy (GetKeyPolicy) after creating a key, which failed before
//! key policies were served.
//!
//! The provider validates its credentials and learns its account id with
//! STS `GetCallerIdentity` on the same endpoint (no `skip_*` settings).
//!
//! Terraform is not installed by the test command; where it (or the
//! `hashicorp/aws` provider in a local filesystem mirror) is absent the
//! test prints "skipped: ..." and returns.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use common::Server;

/// The directory above `registry.terraform.io` of a local mirror holding
/// `hashicorp/aws`, found as the docs say.
fn provider_mirror() -> Option<PathBuf> {
    let out = Command::new("find")
        .args([
            "/",
            "-maxdepth",
            "5",
            "-path",
            "*registry.terraform.io/hashicorp/aws",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?;
    Some(Path::new(line).parent()?.parent()?.parent()?.to_owned())
}

fn terraform(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("run terraform")
}

#[test]
fn terraform_manages_keys_and_aliases() {
    if Command::new("terraform").arg("version").output().is_err() {
        println!("skipped: terraform is not on PATH");
        return;
    }
    let Some(mirror) = provider_mirror() else {
        println!("skipped: no local mirror of the hashicorp/aws provider");
        return;
    };
    let server = Server::start(common::BIN);
    let tenant = server.account("terraform");
    let dir = tempfile::tempdir().unwrap();
    let cli_config = dir.path().join("cli.tfrc");
    std::fs::write(
        &cli_config,
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n    include = [\"registry.terraform.io/hashicorp/aws\"]\n  }}\n  direct {{ exclude = [\"registry.terraform.io/hashicorp/aws\"] }}\n}}\n",
            mirror.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("main.tf"),
        format!(
            r#"provider "aws" {{
  region                  = "us-east-1"
  skip_metadata_api_check = true
  endpoints {{
    kms = "{url}"
    sts = "{url}"
  }}
}}
resource "aws_kms_key" "k" {{
  description             = "managed by terraform"
  deletion_window_in_days = 7
  enable_key_rotation     = true
  tags = {{ team = "platform" }}
}}
resource "aws_kms_alias" "a" {{
  name          = "alias/terraform"
  target_key_id = aws_kms_key.k.key_id
}}
"#,
            url = server.url
        ),
    )
    .unwrap();
    let cli_config = cli_config.to_str().unwrap().to_owned();
    let env = [
        ("TF_CLI_CONFIG_FILE", cli_config.as_str()),
        ("AWS_ACCESS_KEY_ID", tenant.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", tenant.secret_access_key.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let run = |args: &[&str]| {
        let out = terraform(dir.path(), &env, args);
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, log) = run(&["init", "-input=false", "-no-color"]);
    assert_eq!(code, Some(0), "terraform init: {log}");
    let (code, log) = run(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    assert_eq!(code, Some(0), "terraform apply: {log}");
    assert!(log.contains("2 added"), "{log}");
    // Nothing drifts: every attribute the provider reads back matches.
    let (code, log) = run(&["plan", "-detailed-exitcode", "-input=false", "-no-color"]);
    assert_eq!(code, Some(0), "terraform plan shows changes: {log}");
    let (code, log) = run(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert_eq!(code, Some(0), "terraform destroy: {log}");
    assert!(log.contains("2 destroyed"), "{log}");
}
