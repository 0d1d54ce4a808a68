//! The configuration file (`--config`, `KEYWARDEN_CONFIG`): TOML, every
//! field optional with the documented default (docs/billing.md); unknown
//! keys are refused, so a misspelt setting is an error, not a silent
//! default.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use keywarden_core::billing::PriceTable;
use keywarden_core::ops::billing::BillingConfig;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[billing]`.
    #[serde(default)]
    pub billing: Billing,
    /// `[[custom_key_stores]]`: HSMs reached through PKCS#11.
    #[serde(default)]
    pub custom_key_stores: Vec<CustomKeyStore>,
    /// `[[hsm_clusters]]`: HSM tokens on which accounts may create their
    /// own custom key stores (`CreateCustomKeyStore`).
    #[serde(default)]
    pub hsm_clusters: Vec<HsmCluster>,
    /// `[root_key]`.
    #[serde(default)]
    pub root_key: RootKeyConfig,
    /// `[database]`.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// `[limits]`: quotas, request and connection limits.
    #[serde(default)]
    pub limits: crate::limits_config::LimitsConfig,
    /// `[audit]`.
    #[serde(default)]
    pub audit: AuditSection,
}

/// `[audit]`: the audit log (docs/audit.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// The audit file (default `DATA_DIR/audit.log`); its head is
    /// `<path>.head`. One per node.
    pub path: Option<std::path::PathBuf>,
    /// Record encryption context values, not only keys (default false).
    #[serde(default)]
    pub context_values: bool,
    /// A batch is written at most this long after its first record
    /// (default 100 ms, 1-100).
    pub flush_interval_ms: Option<u64>,
}

impl AuditSection {
    /// The audit file for the data dir `data_dir`.
    pub fn path(&self, data_dir: &Path) -> std::path::PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| data_dir.join("audit.log"))
    }

    /// The batch window.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms.unwrap_or(100))
    }
}

/// `[database]`: a PostgreSQL database instead of the embedded one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://...`; `--database-url` / `KEYWARDEN_DATABASE_URL` win
    /// over it.
    pub url: Option<DatabaseUrl>,
    /// Connections per node (default 16).
    pub pool_size: Option<usize>,
    /// How long a node keeps serving cached keys and credentials while the
    /// store cannot be reached (default 60 s; 0 refuses at once).
    pub outage_grace_secs: Option<u64>,
}

impl DatabaseConfig {
    /// The outage grace period.
    pub fn outage_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.outage_grace_secs.unwrap_or(60))
    }
}

/// A database URL. It may hold a password, so `Debug` shows only the
/// scheme and host.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, for the driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `postgres://host:port/db` without user, password or query, for
    /// messages.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "(a database URL)".into();
        };
        // The authority ends at the first '/' or '?'; the userinfo ends at
        // its last '@'. Nothing after the path is shown (a password may be
        // a query parameter).
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let path = tail.split_once('?').map_or(tail, |(p, _)| p);
        format!("{scheme}://{host}{path}")
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

// Never refused here: the parser's error would quote the value, password
// and all. `setup` checks the scheme and names only the redacted form.
impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(DatabaseUrl(s.to_owned()))
    }
}

/// `[root_key]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootKeyConfig {
    /// Seal the root key file with an AES key in this custom key store's
    /// HSM (docs/hsm.md). Only for a new data dir.
    pub sealed_by: Option<String>,
}

/// `[[custom_key_stores]]`: one HSM token, offered to accounts as a custom
/// key store (docs/hsm.md). The PIN is read from a file or an environment
/// variable, never from the command line or this file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomKeyStore {
    /// `cks-...`: the id accounts name in `CustomKeyStoreId`. Never change
    /// it: key versions record it.
    pub id: String,
    /// A unique name.
    pub name: String,
    /// The PKCS#11 module (shared library).
    pub module: std::path::PathBuf,
    /// The token's label.
    pub token_label: String,
    /// A file holding the user PIN (first line; mode 0600 recommended). A
    /// relative path is resolved against the configuration file's
    /// directory.
    pub pin_file: Option<std::path::PathBuf>,
    /// An environment variable holding the user PIN.
    pub pin_env: Option<String>,
    /// Sessions kept open (default 4).
    #[serde(default = "default_sessions")]
    pub sessions: usize,
}

fn default_sessions() -> usize {
    4
}

/// `[[hsm_clusters]]`: an HSM token the operator approves for accounts'
/// own custom key stores (docs/hsm.md). Accounts name only the `id`; the
/// module path never comes from a request. No PIN here: each store's
/// `KeyStorePassword` is the PIN, given by the account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmCluster {
    /// `cluster-` and lowercase letters and digits (AWS's
    /// `CloudHsmClusterId` form, 19-24 characters in all).
    pub id: String,
    /// The PKCS#11 module (shared library).
    pub module: std::path::PathBuf,
    /// The token's label.
    pub token_label: String,
    /// A PEM certificate file: when set, CreateCustomKeyStore's
    /// `TrustAnchorCertificate` must be this certificate. A relative path
    /// is resolved against the configuration file's directory.
    pub trust_anchor_file: Option<std::path::PathBuf>,
    /// Sessions kept open per store (default 4).
    #[serde(default = "default_sessions")]
    pub sessions: usize,
}

/// Checks an `[[hsm_clusters]]` id: `cluster-` and lowercase letters and
/// digits, 19-24 characters in all (what AWS accepts as a
/// `CloudHsmClusterId`).
pub fn check_cluster_id(id: &str) -> Result<(), String> {
    let ok = (19..=24).contains(&id.len())
        && id.strip_prefix("cluster-").is_some_and(|r| {
            r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "[[hsm_clusters]] id must be cluster- followed by lowercase letters and digits, 19-24 characters in all, got {id:?}"
        ))
    }
}

impl CustomKeyStore {
    /// Reads the PIN from the file or the environment variable (exactly one
    /// must be given).
    pub fn pin(&self) -> Result<zeroize::Zeroizing<String>> {
        match (&self.pin_file, &self.pin_env) {
            (Some(path), None) => {
                let text =
                    zeroize::Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
                        format!(
                            "custom key store {}: reading pin_file {}",
                            self.id,
                            path.display()
                        )
                    })?);
                let pin = text.lines().next().unwrap_or("").trim_end().to_owned();
                anyhow::ensure!(
                    !pin.is_empty(),
                    "custom key store {}: pin_file {} is empty",
                    self.id,
                    path.display()
                );
                Ok(zeroize::Zeroizing::new(pin))
            }
            (None, Some(var)) => {
                let pin = std::env::var(var).map_err(|_| {
                    anyhow::anyhow!(
                        "custom key store {}: environment variable {var} (pin_env) is not set",
                        self.id
                    )
                })?;
                anyhow::ensure!(
                    !pin.is_empty(),
                    "custom key store {}: {var} is empty",
                    self.id
                );
                Ok(zeroize::Zeroizing::new(pin))
            }
            _ => anyhow::bail!(
                "custom key store {}: give exactly one of pin_file and pin_env",
                self.id
            ),
        }
    }
}

/// `[billing]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Billing {
    /// Post charges and freeze accounts whose balance goes below zero.
    pub enabled: bool,
    /// Seconds between two billing runs of a server (charges posted).
    pub charge_interval_secs: u64,
    /// Whether a frozen account's default keys stop too.
    pub freeze_default_keys: bool,
    /// `[billing.prices]`.
    pub prices: Prices,
}

impl Default for Billing {
    fn default() -> Self {
        Billing {
            enabled: false,
            charge_interval_secs: 10,
            freeze_default_keys: false,
            prices: Prices::default(),
        }
    }
}

/// `[billing.prices]`: amounts in minor units (cents), integers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prices {
    /// ISO 4217 code.
    pub currency: String,
    /// Digits of the minor unit.
    pub minor_digits: u32,
    /// Per software-protected customer key and month.
    pub software_key_per_month_minor: i64,
    /// Per hardware-protected (HSM) customer key and month.
    pub hardware_key_per_month_minor: i64,
    /// Per 10,000 cryptographic requests beyond the free allowance.
    pub per_10k_requests_minor: i64,
    /// Free cryptographic requests per account and month.
    pub free_requests_per_month: u64,
}

impl Default for Prices {
    fn default() -> Self {
        let p = PriceTable::default();
        Prices {
            currency: p.currency,
            minor_digits: p.minor_digits,
            software_key_per_month_minor: p.software_key_month,
            hardware_key_per_month_minor: p.hardware_key_month,
            per_10k_requests_minor: p.requests_10k,
            free_requests_per_month: p.free_requests,
        }
    }
}

impl Billing {
    /// The core's form.
    pub fn to_core(&self) -> BillingConfig {
        BillingConfig {
            enabled: self.enabled,
            prices: self.prices.to_core(),
            freeze_default_keys: self.freeze_default_keys,
        }
    }

    /// Time between billing runs.
    pub fn charge_interval(&self) -> Duration {
        Duration::from_secs(self.charge_interval_secs)
    }
}

impl Prices {
    fn to_core(&self) -> PriceTable {
        PriceTable {
            currency: self.currency.clone(),
            minor_digits: self.minor_digits,
            software_key_month: self.software_key_per_month_minor,
            hardware_key_month: self.hardware_key_per_month_minor,
            requests_10k: self.per_10k_requests_minor,
            free_requests: self.free_requests_per_month,
        }
    }
}

impl Config {
    /// Reads and checks the file; the defaults without one.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading configuration file {}", path.display()))?;
        let mut config: Config = toml::from_str(&text)
            .with_context(|| format!("configuration file {} is not valid", path.display()))?;
        // A relative pin_file is beside the configuration file, whatever
        // the directory the command runs in (docs/hsm.md).
        let base = path.parent().unwrap_or(Path::new(""));
        for store in &mut config.custom_key_stores {
            if let Some(pin_file) = &mut store.pin_file {
                if pin_file.is_relative() {
                    *pin_file = base.join(&*pin_file);
                }
            }
        }
        for cluster in &mut config.hsm_clusters {
            if let Some(file) = &mut cluster.trust_anchor_file {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
        }
        for (i, cluster) in config.hsm_clusters.iter().enumerate() {
            check_cluster_id(&cluster.id)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("configuration file {}", path.display()))?;
            anyhow::ensure!(
                !config.hsm_clusters[..i].iter().any(|c| c.id == cluster.id),
                "configuration file {}: [[hsm_clusters]] id {} is configured twice",
                path.display(),
                cluster.id
            );
            anyhow::ensure!(
                (1..=64).contains(&cluster.sessions),
                "configuration file {}: hsm cluster {}: sessions must be 1-64",
                path.display(),
                cluster.id
            );
            if let Some(file) = &cluster.trust_anchor_file {
                std::fs::read_to_string(file).with_context(|| {
                    format!(
                        "configuration file {}: hsm cluster {}: reading trust_anchor_file {}",
                        path.display(),
                        cluster.id,
                        file.display()
                    )
                })?;
            }
        }
        config
            .billing
            .prices
            .to_core()
            .check()
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("configuration file {}: [billing.prices]", path.display()))?;
        for store in &config.custom_key_stores {
            keywarden_core::ops::custom_key_stores::check_store_id(&store.id)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("configuration file {}", path.display()))?;
            anyhow::ensure!(
                (1..=64).contains(&store.sessions),
                "configuration file {}: custom key store {}: sessions must be 1-64",
                path.display(),
                store.id
            );
        }
        if let Some(id) = &config.root_key.sealed_by {
            anyhow::ensure!(
                config.custom_key_stores.iter().any(|s| &s.id == id),
                "configuration file {}: [root_key] sealed_by = {id:?} names no [[custom_key_stores]] entry",
                path.display()
            );
        }
        config
            .limits
            .to_server()
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("configuration file {}: [limits]", path.display()))?;
        anyhow::ensure!(
            (1..=100).contains(&config.audit.flush_interval_ms.unwrap_or(100)),
            "configuration file {}: [audit] flush_interval_ms must be 1-100",
            path.display()
        );
        anyhow::ensure!(
            (1..=3600).contains(&config.billing.charge_interval_secs),
            "configuration file {}: [billing] charge_interval_secs must be 1-3600",
            path.display()
        );
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_never_show_their_secrets() {
        let cases = [
            (
                "postgres://kw:hunter2@db.internal:5432/keywarden",
                "postgres://db.internal:5432/keywarden",
            ),
            (
                "postgresql://kw:p@ss@db:5432/kw?sslmode=disable",
                "postgresql://db:5432/kw",
            ),
            (
                "postgres://db:5432/kw?user=kw&password=p@ss",
                "postgres://db:5432/kw",
            ),
            ("postgres://kw:hunter2@[::1]:5432", "postgres://[::1]:5432"),
            ("hunter2", "(a database URL)"),
        ];
        for (url, shown) in cases {
            let url: DatabaseUrl = url.parse().unwrap();
            assert_eq!(url.redacted(), shown);
            let debug = format!("{url:?}");
            assert!(
                !debug.contains("hunter2") && !debug.contains("ss"),
                "{debug}"
            );
        }
    }

    fn parse(s: &str) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.toml");
        std::fs::write(&p, s).unwrap();
        Config::load(Some(&p))
    }

    #[test]
    fn defaults_and_overrides() {
        let c = parse("").unwrap();
        assert!(!c.billing.enabled);
        assert_eq!(c.billing.to_core().prices, PriceTable::default());
        let c = parse(
            "[billing]\nenabled = true\n[billing.prices]\nsoftware_key_per_month_minor = 250\n",
        )
        .unwrap();
        assert!(c.billing.enabled);
        assert_eq!(c.billing.to_core().prices.software_key_month, 250);
        assert_eq!(c.billing.to_core().prices.requests_10k, 3);
    }

    #[test]
    fn a_relative_pin_file_is_beside_the_configuration_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.toml");
        let store = |pin_file: &str| {
            format!(
                "[[custom_key_stores]]\nid = \"cks-1\"\nname = \"hsm\"\nmodule = \"/m.so\"\n\
                 token_label = \"t\"\npin_file = \"{pin_file}\"\n"
            )
        };
        std::fs::write(&p, store("pins/hsm-pin")).unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(
            c.custom_key_stores[0].pin_file.as_deref(),
            Some(dir.path().join("pins/hsm-pin").as_path())
        );
        std::fs::write(&p, store("/etc/keywarden/hsm-pin")).unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(
            c.custom_key_stores[0].pin_file.as_deref(),
            Some(Path::new("/etc/keywarden/hsm-pin"))
        );
    }

    #[test]
    fn hsm_clusters_are_checked() {
        let cluster = |id: &str, extra: &str| {
            format!(
                "[[hsm_clusters]]\nid = \"{id}\"\nmodule = \"/m.so\"\ntoken_label = \"t\"\n{extra}"
            )
        };
        let c = parse(&cluster("cluster-abc123def45", "")).unwrap();
        assert_eq!(c.hsm_clusters[0].sessions, 4);
        assert!(c.hsm_clusters[0].trust_anchor_file.is_none());
        for bad in [
            cluster("cluster-abc", ""),
            cluster("cluster-ABC123DEF45", ""),
            cluster("clusterx-abc123def45", ""),
            cluster("cluster-abc123def45678901", ""),
            cluster("cluster-abc123def45", "sessions = 0\n"),
            cluster(
                "cluster-abc123def45",
                "trust_anchor_file = \"missing.pem\"\n",
            ),
            cluster("cluster-abc123def45", "pin_file = \"pin\"\n"),
            format!(
                "{}{}",
                cluster("cluster-abc123def45", ""),
                cluster("cluster-abc123def45", "")
            ),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
        // A relative trust anchor file is beside the configuration file.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "pem").unwrap();
        let p = dir.path().join("k.toml");
        std::fs::write(
            &p,
            cluster("cluster-abc123def45", "trust_anchor_file = \"ca.pem\"\n"),
        )
        .unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(
            c.hsm_clusters[0].trust_anchor_file.as_deref(),
            Some(dir.path().join("ca.pem").as_path())
        );
    }

    #[test]
    fn malformed_files_are_refused() {
        for bad in [
            "[billing\nenabled = true",
            "[billing]\nenabeld = true",
            "[billing.prices]\nsoftware_key_per_month_minor = -1",
            "[billing.prices]\nsoftware_key_per_month_minor = 1.5",
            "[billing.prices]\ncurrency = \"dollars\"",
            "[billing]\ncharge_interval_secs = 0",
            "[other]\nx = 1",
            "[root_key]\nsealed_by = \"cks-none\"",
            "[root_key]\nsealed = true",
            "[limits]\nmax_connections = 0",
            "[limits]\ncrypto_per_sec = 5",
            "[audit]\nflush_interval_ms = 0",
            "[audit]\nflush_interval_ms = 101",
            "[audit]\ncontext = true",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(format!("{err:#}").contains("k.toml"), "{bad}: {err:#}");
        }
    }
}
