//! Terraform's AWS provider against the real server, without
//! `skip_credentials_validation` or `skip_requesting_account_id`: the
//! provider validates its credentials and learns its account id with STS
//! `GetCallerIdentity` on the same endpoint.
//!
//! - `terraform_manages_keys_and_aliases`: `aws_kms_key` (with rotation,
//!   tags and a deletion window) and `aws_kms_alias`. The provider reads the
//!   key policy (GetKeyPolicy) after creating a key, which failed before key
//!   policies were served.
//! - `terraform_manages_iam_and_kms`: `aws_iam_user`, `aws_iam_access_key`,
//!   `aws_iam_user_policy`, `aws_iam_role`, `aws_kms_key` with and without
//!   `policy`, `aws_kms_key_policy`, `aws_kms_alias`, `aws_kms_grant` to the
//!   IAM user, and an `aws_kms_ciphertext` decrypted again by
//!   `data.aws_kms_secrets` (the plaintext comes back through an output).
//!
//! Each applies, then a plan shows no changes (every attribute the provider
//! reads back matches what it wrote), then destroy succeeds.
//!
//! Terraform is not installed by the test command; where it (or the
//! `hashicorp/aws` provider in a local filesystem mirror) is absent the
//! tests print "skipped: ..." and return. Set `TF_LOG=DEBUG` and
//! `TF_LOG_PATH=FILE` to see every request the provider makes.

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

/// A Terraform working directory against a fresh server, with the
/// provider taken from the local mirror and an account's root credentials.
struct Workspace {
    server: Server,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Workspace {
    /// `None` (after printing why) where terraform or the provider is
    /// missing.
    fn new(account: &str) -> Option<Workspace> {
        if Command::new("terraform").arg("version").output().is_err() {
            println!("skipped: terraform is not on PATH");
            return None;
        }
        let Some(mirror) = provider_mirror() else {
            println!("skipped: no local mirror of the hashicorp/aws provider");
            return None;
        };
        let server = Server::start(common::BIN);
        let tenant = server.account(account);
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
        let env = vec![
            (
                "TF_CLI_CONFIG_FILE".to_owned(),
                cli_config.to_str().unwrap().to_owned(),
            ),
            ("AWS_ACCESS_KEY_ID".to_owned(), tenant.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".to_owned(),
                tenant.secret_access_key.clone(),
            ),
            ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
        ];
        Some(Workspace { server, dir, env })
    }

    /// Writes `main.tf`: the provider block (every endpoint at the server)
    /// and `resources`.
    fn configure(&self, resources: &str) {
        let provider = format!(
            r#"provider "aws" {{
  region                  = "us-east-1"
  skip_metadata_api_check = true
  endpoints {{
    iam = "{url}"
    kms = "{url}"
    sts = "{url}"
  }}
}}
"#,
            url = self.server.url
        );
        std::fs::write(
            self.dir.path().join("main.tf"),
            format!("{provider}{resources}"),
        )
        .unwrap();
    }

    /// Runs `terraform args...`: its exit code and its output.
    fn run(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = Command::new("terraform")
            .args(args)
            .current_dir(self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .expect("run terraform");
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Runs `terraform args...` and asserts it exits 0; on failure the
    /// message carries terraform's output and the server's warnings.
    fn ok(&self, what: &str, args: &[&str]) -> String {
        let (code, log) = self.run(args);
        if code != Some(0) {
            panic!(
                "terraform {what} exited {code:?}:\n{log}\n--- server warnings ---\n{}",
                self.server_warnings()
            );
        }
        log
    }

    /// The server log's lines that are not debug or info chatter.
    fn server_warnings(&self) -> String {
        std::fs::read_to_string(&self.server.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// init, apply (`added` resources), a plan with no changes, destroy.
    fn apply_plan_destroy(&self, added: usize, between: impl FnOnce(&Workspace)) {
        self.ok("init", &["init", "-input=false", "-no-color"]);
        let log = self.ok(
            "apply",
            &["apply", "-auto-approve", "-input=false", "-no-color"],
        );
        assert!(log.contains(&format!("{added} added")), "{log}");
        // Nothing drifts: every attribute the provider reads back matches.
        let (code, log) = self.run(&["plan", "-detailed-exitcode", "-input=false", "-no-color"]);
        assert_eq!(
            code,
            Some(0),
            "terraform plan shows changes (2) or failed (1): {log}"
        );
        between(self);
        let log = self.ok(
            "destroy",
            &["destroy", "-auto-approve", "-input=false", "-no-color"],
        );
        assert!(log.contains(&format!("{added} destroyed")), "{log}");
    }
}

#[test]
fn terraform_manages_keys_and_aliases() {
    let Some(ws) = Workspace::new("terraform") else {
        return;
    };
    ws.configure(
        r#"resource "aws_kms_key" "k" {
  description             = "managed by terraform"
  deletion_window_in_days = 7
  enable_key_rotation     = true
  tags = { team = "platform" }
}
resource "aws_kms_alias" "a" {
  name          = "alias/terraform"
  target_key_id = aws_kms_key.k.key_id
}
"#,
    );
    ws.apply_plan_destroy(2, |_| {});
}

/// The plaintext `aws_kms_ciphertext` encrypts and `data.aws_kms_secrets`
/// decrypts again.
const SECRET: &str = "s3cr3t-from-terraform";

#[test]
fn terraform_manages_iam_and_kms() {
    let Some(ws) = Workspace::new("terraform-iam") else {
        return;
    };
    ws.configure(&format!(
        r#"data "aws_caller_identity" "me" {{}}
locals {{
  root = "arn:aws:iam::${{data.aws_caller_identity.me.account_id}}:root"
}}
resource "aws_iam_user" "app" {{
  name          = "tf-app"
  path          = "/apps/"
  force_destroy = true
  tags = {{ team = "platform" }}
}}
resource "aws_iam_access_key" "app" {{
  user = aws_iam_user.app.name
}}
resource "aws_iam_user_policy" "app" {{
  name = "use-keys"
  user = aws_iam_user.app.name
  policy = jsonencode({{
    Version = "2012-10-17"
    Statement = [{{
      Effect   = "Allow"
      Action   = ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"]
      Resource = aws_kms_key.plain.arn
    }}]
  }})
}}
resource "aws_iam_role" "ops" {{
  name                  = "tf-ops"
  description           = "operators"
  max_session_duration  = 7200
  force_detach_policies = true
  assume_role_policy = jsonencode({{
    Version = "2012-10-17"
    Statement = [{{
      Effect    = "Allow"
      Principal = {{ AWS = local.root }}
      Action    = "sts:AssumeRole"
    }}]
  }})
  tags = {{ team = "ops" }}
}}
resource "aws_iam_role_policy" "ops" {{
  name = "describe-keys"
  role = aws_iam_role.ops.id
  policy = jsonencode({{
    Version = "2012-10-17"
    Statement = [{{
      Effect   = "Allow"
      Action   = "kms:DescribeKey"
      Resource = "*"
    }}]
  }})
}}
resource "aws_iam_policy" "list" {{
  name        = "list-keys"
  path        = "/kms/"
  description = "list keys and aliases"
  policy = jsonencode({{
    Version = "2012-10-17"
    Statement = [{{
      Effect   = "Allow"
      Action   = ["kms:ListKeys", "kms:ListAliases"]
      Resource = "*"
    }}]
  }})
}}
resource "aws_iam_user_policy_attachment" "list" {{
  user       = aws_iam_user.app.name
  policy_arn = aws_iam_policy.list.arn
}}
resource "aws_iam_role_policy_attachment" "list" {{
  role       = aws_iam_role.ops.name
  policy_arn = aws_iam_policy.list.arn
}}
resource "aws_kms_key" "plain" {{
  description             = "no policy given"
  deletion_window_in_days = 7
  enable_key_rotation     = true
  tags = {{ team = "platform" }}
}}
resource "aws_kms_key" "with_policy" {{
  description             = "policy given"
  deletion_window_in_days = 10
  policy = jsonencode({{
    Version = "2012-10-17"
    Statement = [
      {{
        Sid       = "Root"
        Effect    = "Allow"
        Principal = {{ AWS = local.root }}
        Action    = "kms:*"
        Resource  = "*"
      }},
      {{
        Sid       = "App"
        Effect    = "Allow"
        Principal = {{ AWS = aws_iam_user.app.arn }}
        Action    = ["kms:Encrypt", "kms:Decrypt"]
        Resource  = "*"
      }},
    ]
  }})
  tags = {{ team = "security" }}
}}
resource "aws_kms_key" "separate_policy" {{
  description             = "policy from aws_kms_key_policy"
  deletion_window_in_days = 30
}}
resource "aws_kms_key_policy" "separate" {{
  key_id = aws_kms_key.separate_policy.id
  policy = jsonencode({{
    Version = "2012-10-17"
    Statement = [
      {{
        Sid       = "Root"
        Effect    = "Allow"
        Principal = {{ AWS = local.root }}
        Action    = "kms:*"
        Resource  = "*"
      }},
      {{
        Sid       = "Role"
        Effect    = "Allow"
        Principal = {{ AWS = aws_iam_role.ops.arn }}
        Action    = "kms:DescribeKey"
        Resource  = "*"
      }},
    ]
  }})
}}
resource "aws_kms_alias" "plain" {{
  name          = "alias/tf-plain"
  target_key_id = aws_kms_key.plain.key_id
}}
resource "aws_kms_grant" "app" {{
  name              = "tf-app-grant"
  key_id            = aws_kms_key.plain.key_id
  grantee_principal = aws_iam_user.app.arn
  operations        = ["Encrypt", "Decrypt", "GenerateDataKey"]
  constraints {{
    encryption_context_equals = {{ app = "tf" }}
  }}
}}
resource "aws_kms_ciphertext" "secret" {{
  key_id    = aws_kms_alias.plain.name
  plaintext = "{SECRET}"
  context   = {{ app = "tf" }}
}}
data "aws_kms_secrets" "secret" {{
  secret {{
    name    = "secret"
    payload = aws_kms_ciphertext.secret.ciphertext_blob
    context = {{ app = "tf" }}
  }}
}}
output "decrypted" {{
  value     = data.aws_kms_secrets.secret.plaintext["secret"]
  sensitive = true
}}
output "access_key_id" {{
  value = aws_iam_access_key.app.id
}}
resource "aws_kms_key" "signing" {{
  description              = "asymmetric signing key"
  customer_master_key_spec = "ECC_NIST_P256"
  key_usage                = "SIGN_VERIFY"
  deletion_window_in_days  = 7
}}
resource "aws_kms_key" "mac" {{
  description              = "HMAC key"
  customer_master_key_spec = "HMAC_256"
  key_usage                = "GENERATE_VERIFY_MAC"
  deletion_window_in_days  = 7
}}
data "aws_kms_public_key" "signing" {{
  key_id = aws_kms_key.signing.id
}}
output "signing_public_key" {{
  value = data.aws_kms_public_key.signing.public_key_pem
}}
output "signing_algorithms" {{
  value = data.aws_kms_public_key.signing.signing_algorithms
}}
"#
    ));
    ws.apply_plan_destroy(17, |ws| {
        let out = ws.ok("output", &["output", "-json", "-no-color"]);
        let outputs: serde_json::Value = serde_json::from_str(&out).expect("output -json");
        assert_eq!(
            outputs["decrypted"]["value"], SECRET,
            "the round trip through KMS gave another plaintext"
        );
        let key_id = outputs["access_key_id"]["value"].as_str().unwrap_or("");
        assert!(key_id.starts_with("AKIA"), "access key id {key_id:?}");
        let pem = outputs["signing_public_key"]["value"]
            .as_str()
            .unwrap_or("");
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem:?}");
        assert_eq!(
            outputs["signing_algorithms"]["value"],
            serde_json::json!(["ECDSA_SHA_256"])
        );
    });
}
