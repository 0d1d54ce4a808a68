//! `[limits]` of the configuration file: per-account request quotas and
//! the request and connection limits (docs/limits.md). Every field is
//! optional; the defaults are `keywarden_server::limits::Limits::default()`.

use std::time::Duration;

use keywarden_server::limits::{Limits, QuotaConfig, Rate, MIN_HEADER_BYTES};
use serde::Deserialize;

/// `[limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Cryptographic requests per second and account on this node (0: no
    /// quota).
    pub crypto_per_second: Option<u32>,
    /// Cryptographic requests accepted at once (default: one second's
    /// worth).
    pub crypto_burst: Option<u32>,
    /// Management requests per second and account on this node (0: no
    /// quota).
    pub manage_per_second: Option<u32>,
    /// Management requests accepted at once (default: one second's worth).
    pub manage_burst: Option<u32>,
    /// Accounts the quota limiter remembers at most.
    pub max_tracked_accounts: Option<usize>,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request head (and a new connection
    /// its first request).
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a client has to send a request body after its head.
    pub body_read_timeout_secs: Option<u64>,
    /// Largest request head in bytes (at least 8192).
    pub max_header_bytes: Option<usize>,
    /// Most headers in one request.
    pub max_headers: Option<usize>,
    /// Largest request body in bytes.
    pub max_body_bytes: Option<usize>,
}

impl LimitsConfig {
    /// The server's form, checked.
    pub fn to_server(&self) -> Result<Limits, String> {
        let d = Limits::default();
        let rate = |per_second: Option<u32>, burst: Option<u32>, default: Rate| match per_second {
            None => Rate {
                per_second: default.per_second,
                burst: burst.unwrap_or(default.burst),
            },
            Some(0) => Rate::UNLIMITED,
            Some(n) => Rate {
                per_second: n,
                burst: burst.unwrap_or(n),
            },
        };
        let limits = Limits {
            quotas: QuotaConfig {
                crypto: rate(self.crypto_per_second, self.crypto_burst, d.quotas.crypto),
                manage: rate(self.manage_per_second, self.manage_burst, d.quotas.manage),
                max_tracked_accounts: self
                    .max_tracked_accounts
                    .unwrap_or(d.quotas.max_tracked_accounts),
            },
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            header_read_timeout: self
                .header_read_timeout_secs
                .map_or(d.header_read_timeout, Duration::from_secs),
            body_read_timeout: self
                .body_read_timeout_secs
                .map_or(d.body_read_timeout, Duration::from_secs),
            max_header_bytes: self.max_header_bytes.unwrap_or(d.max_header_bytes),
            max_headers: self.max_headers.unwrap_or(d.max_headers),
            max_body_bytes: self.max_body_bytes.unwrap_or(d.max_body_bytes),
        };
        for (name, rate) in [
            ("crypto_burst", limits.quotas.crypto),
            ("manage_burst", limits.quotas.manage),
        ] {
            if rate.per_second > 0 && rate.burst == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if limits.quotas.max_tracked_accounts == 0 {
            return Err("max_tracked_accounts must be at least 1".into());
        }
        if limits.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if limits.header_read_timeout.is_zero() || limits.body_read_timeout.is_zero() {
            return Err(
                "header_read_timeout_secs and body_read_timeout_secs must be at least 1".into(),
            );
        }
        if !(MIN_HEADER_BYTES..=16 * 1024 * 1024).contains(&limits.max_header_bytes) {
            return Err(format!(
                "max_header_bytes must be {MIN_HEADER_BYTES} to 16 MiB"
            ));
        }
        if limits.max_headers == 0 {
            return Err("max_headers must be at least 1".into());
        }
        if !(1024..=64 * 1024 * 1024).contains(&limits.max_body_bytes) {
            return Err("max_body_bytes must be 1 KiB to 64 MiB".into());
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Limits, String> {
        toml::from_str::<LimitsConfig>(s)
            .map_err(|e| e.to_string())?
            .to_server()
    }

    #[test]
    fn defaults_overrides_and_refusals() {
        assert_eq!(parse("").unwrap(), Limits::default());
        let l =
            parse("crypto_per_second = 5\nmanage_per_second = 0\nmax_connections = 10").unwrap();
        assert_eq!(
            l.quotas.crypto,
            Rate {
                per_second: 5,
                burst: 5
            }
        );
        assert_eq!(l.quotas.manage, Rate::UNLIMITED);
        assert_eq!(l.max_connections, 10);
        let l = parse("crypto_burst = 3").unwrap();
        assert_eq!(l.quotas.crypto.burst, 3);
        for bad in [
            "crypto_per_second = 5\ncrypto_burst = 0",
            "max_connections = 0",
            "max_header_bytes = 100",
            "header_read_timeout_secs = 0",
            "max_body_bytes = 1",
            "crypto_per_second = -1",
            "cryptos = 1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
