//! [`Query`]: the filters of `keywarden admin audit query`, applied to
//! records as read back from the file.

use crate::record::Record;

/// Filters for `keywarden admin audit query`.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The account acted for.
    pub account: Option<String>,
    /// A key: matches a requested key (as named) or a key ARN, or the key
    /// id at the end of a key ARN.
    pub key: Option<String>,
    /// The operation: the full target or the name after the dot.
    pub operation: Option<String>,
    /// From this time on (Unix ms, inclusive).
    pub since_ms: Option<i64>,
    /// Before this time (Unix ms, exclusive).
    pub until_ms: Option<i64>,
}

impl Query {
    /// Whether `r` matches every filter given.
    pub fn matches(&self, r: &Record) -> bool {
        if let Some(a) = &self.account {
            if r.account.as_deref() != Some(a.as_str()) {
                return false;
            }
        }
        if let Some(k) = &self.key {
            let suffix = format!("/{k}");
            let hit = r.keys.values().any(|v| v == k)
                || r.key_arns.iter().any(|a| a == k || a.ends_with(&suffix));
            if !hit {
                return false;
            }
        }
        if let Some(op) = &self.operation {
            let name = r.operation.rsplit_once('.').map_or("", |(_, n)| n);
            if &r.operation != op && name != op {
                return false;
            }
        }
        if self.since_ms.is_some_and(|s| r.time_ms < s) {
            return false;
        }
        if self.until_ms.is_some_and(|u| r.time_ms >= u) {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{as_record, entry};

    #[test]
    fn queries_filter() {
        let r = as_record(&entry(1));
        assert!(Query::default().matches(&r));
        let q = |f: fn(&mut Query)| {
            let mut q = Query::default();
            f(&mut q);
            q.matches(&r)
        };
        assert!(q(|q| q.account = Some("111122223333".into())));
        assert!(!q(|q| q.account = Some("999999999999".into())));
        assert!(q(|q| q.key = Some("abc".into())));
        assert!(q(|q| q.key = Some("alias/k1".into())));
        assert!(!q(|q| q.key = Some("zzz".into())));
        assert!(q(|q| q.operation = Some("Encrypt".into())));
        assert!(q(|q| q.operation = Some("TrentService.Encrypt".into())));
        assert!(!q(|q| q.operation = Some("Decrypt".into())));
        assert!(q(|q| q.since_ms = Some(1_700_000_000_001)));
        assert!(!q(|q| q.until_ms = Some(1_700_000_000_001)));
    }
}
