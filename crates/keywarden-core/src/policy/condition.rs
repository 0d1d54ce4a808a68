//! Condition operators and the checks of their values.
//!
//! Operators, the `IfExists` suffix (not on `Null`) and the `ForAnyValue:` /
//! `ForAllValues:` set qualifiers follow
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html>
//! and
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html>.
//! Names are matched exactly (case-sensitive), as written there.

use std::fmt;
use std::net::IpAddr;

use time::format_description::well_known::{Iso8601, Rfc3339};

use super::document::ConditionValue;

/// A condition operator as written: `ForAnyValue:StringLikeIfExists` is
/// `{ qualifier: Some(ForAnyValue), kind: StringLike, if_exists: true }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConditionOperator {
    /// `ForAnyValue:` or `ForAllValues:` for multivalued context keys.
    pub qualifier: Option<SetQualifier>,
    /// The comparison.
    pub kind: OperatorKind,
    /// The `IfExists` suffix: a key missing from the request satisfies the
    /// condition.
    pub if_exists: bool,
}

/// The set qualifiers for multivalued context keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetQualifier {
    /// At least one request value must match.
    ForAnyValue,
    /// Every request value must match (vacuously true for none).
    ForAllValues,
}

macro_rules! operator_kinds {
    ($($(#[$doc:meta])* $name:ident => $family:ident,)*) => {
        /// The comparison a condition makes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum OperatorKind {
            $($(#[$doc])* $name,)*
        }

        impl OperatorKind {
            /// Every operator, in the documentation's order.
            pub const ALL: &'static [OperatorKind] = &[$(OperatorKind::$name,)*];

            /// The operator's name in a policy.
            pub fn name(self) -> &'static str {
                match self {
                    $(OperatorKind::$name => stringify!($name),)*
                }
            }

            /// What kind of values the operator compares.
            pub fn family(self) -> OperatorFamily {
                match self {
                    $(OperatorKind::$name => OperatorFamily::$family,)*
                }
            }
        }
    };
}

operator_kinds! {
    /// Exact, case-sensitive string match.
    StringEquals => String,
    /// Negated exact, case-sensitive string match.
    StringNotEquals => String,
    /// Exact string match ignoring case.
    StringEqualsIgnoreCase => String,
    /// Negated string match ignoring case.
    StringNotEqualsIgnoreCase => String,
    /// Case-sensitive match with `*` and `?` wildcards.
    StringLike => String,
    /// Negated case-sensitive wildcard match.
    StringNotLike => String,
    /// Numbers equal.
    NumericEquals => Numeric,
    /// Numbers differ.
    NumericNotEquals => Numeric,
    /// Request value less than the policy value.
    NumericLessThan => Numeric,
    /// Request value at most the policy value.
    NumericLessThanEquals => Numeric,
    /// Request value greater than the policy value.
    NumericGreaterThan => Numeric,
    /// Request value at least the policy value.
    NumericGreaterThanEquals => Numeric,
    /// Same instant.
    DateEquals => Date,
    /// Different instants.
    DateNotEquals => Date,
    /// Request time before the policy time.
    DateLessThan => Date,
    /// Request time at or before the policy time.
    DateLessThanEquals => Date,
    /// Request time after the policy time.
    DateGreaterThan => Date,
    /// Request time at or after the policy time.
    DateGreaterThanEquals => Date,
    /// Boolean match.
    Bool => Bool,
    /// Byte-for-byte match of base64-encoded values.
    BinaryEquals => Binary,
    /// The request's address is in one of the CIDR ranges.
    IpAddress => Ip,
    /// The request's address is in none of the CIDR ranges.
    NotIpAddress => Ip,
    /// Exact, case-sensitive ARN match.
    ArnEquals => Arn,
    /// Case-sensitive ARN match with wildcards in each component.
    ArnLike => Arn,
    /// Negated exact ARN match.
    ArnNotEquals => Arn,
    /// Negated wildcard ARN match.
    ArnNotLike => Arn,
    /// `true`: the key is absent; `false`: present (and not null).
    Null => Null,
}

/// What kind of values an operator compares (and so which values it takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperatorFamily {
    /// Strings (numbers and booleans are compared as their text).
    String,
    /// Integers or decimals.
    Numeric,
    /// ISO 8601 dates and times, or seconds since the Unix epoch.
    Date,
    /// `true` or `false`.
    Bool,
    /// Base64.
    Binary,
    /// IPv4/IPv6 addresses or CIDR ranges.
    Ip,
    /// ARNs, possibly with wildcards.
    Arn,
    /// `true` or `false` (whether the key is absent).
    Null,
}

const FOR_ANY_VALUE: &str = "ForAnyValue:";
const FOR_ALL_VALUES: &str = "ForAllValues:";
const IF_EXISTS: &str = "IfExists";

impl ConditionOperator {
    /// Parses an operator name; `None` if it is not one.
    pub fn parse(name: &str) -> Option<ConditionOperator> {
        let (qualifier, rest) = if let Some(rest) = name.strip_prefix(FOR_ANY_VALUE) {
            (Some(SetQualifier::ForAnyValue), rest)
        } else if let Some(rest) = name.strip_prefix(FOR_ALL_VALUES) {
            (Some(SetQualifier::ForAllValues), rest)
        } else {
            (None, name)
        };
        let (if_exists, base) = match rest.strip_suffix(IF_EXISTS) {
            Some(base) => (true, base),
            None => (false, rest),
        };
        let kind = OperatorKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == base)?;
        if if_exists && kind == OperatorKind::Null {
            return None;
        }
        Some(ConditionOperator {
            qualifier,
            kind,
            if_exists,
        })
    }

    /// Checks one policy value for this operator; on failure, what the
    /// operator expects.
    pub(crate) fn check_value(&self, value: &ConditionValue) -> Result<(), &'static str> {
        match self.kind.family() {
            // AWS compares numbers and booleans given to string operators as
            // their text, so any scalar is accepted.
            OperatorFamily::String => Ok(()),
            OperatorFamily::Numeric => match value {
                ConditionValue::Number(_) => Ok(()),
                ConditionValue::String(s) if is_decimal(s) => Ok(()),
                _ => Err("a number"),
            },
            OperatorFamily::Date => match value {
                ConditionValue::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
                ConditionValue::String(s) if is_date(s) => Ok(()),
                _ => Err("an ISO 8601 date and time or seconds since the Unix epoch"),
            },
            OperatorFamily::Bool | OperatorFamily::Null => match value {
                ConditionValue::Bool(_) => Ok(()),
                ConditionValue::String(s) if s == "true" || s == "false" => Ok(()),
                _ => Err("true or false"),
            },
            OperatorFamily::Binary => match value {
                ConditionValue::String(s) if is_base64(s) => Ok(()),
                _ => Err("a base64-encoded value"),
            },
            OperatorFamily::Ip => match value {
                ConditionValue::String(s) if is_cidr(s) => Ok(()),
                _ => Err("an IP address or CIDR range such as 203.0.113.0/24"),
            },
            OperatorFamily::Arn => match value {
                ConditionValue::String(s) if s == "*" || s.starts_with("arn:") => Ok(()),
                _ => Err("an ARN"),
            },
        }
    }
}

impl fmt::Display for ConditionOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.qualifier {
            Some(SetQualifier::ForAnyValue) => f.write_str(FOR_ANY_VALUE)?,
            Some(SetQualifier::ForAllValues) => f.write_str(FOR_ALL_VALUES)?,
            None => {}
        }
        f.write_str(self.kind.name())?;
        if self.if_exists {
            f.write_str(IF_EXISTS)?;
        }
        Ok(())
    }
}

/// An optionally signed decimal: `-12`, `3.5`, `.5` is refused.
fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// ISO 8601 (a date, or a date and time with offset) or epoch seconds.
fn is_date(s: &str) -> bool {
    if !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    time::OffsetDateTime::parse(s, &Rfc3339).is_ok()
        || time::OffsetDateTime::parse(s, &Iso8601::DEFAULT).is_ok()
        || time::Date::parse(s, &Iso8601::DEFAULT).is_ok()
}

fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len().is_multiple_of(4)
        && s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn is_cidr(s: &str) -> bool {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return false;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix {
        None => true,
        Some(p) => {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| n <= max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_names_parse_with_qualifiers_and_if_exists() {
        for kind in OperatorKind::ALL {
            let op = ConditionOperator::parse(kind.name()).unwrap();
            assert_eq!(op.kind, *kind);
            assert_eq!(op.to_string(), kind.name());
            for name in [
                format!("ForAnyValue:{}", kind.name()),
                format!("ForAllValues:{}", kind.name()),
            ] {
                let op = ConditionOperator::parse(&name).unwrap();
                assert_eq!(op.to_string(), name);
            }
            let with_suffix = format!("{}IfExists", kind.name());
            let parsed = ConditionOperator::parse(&with_suffix);
            if *kind == OperatorKind::Null {
                assert_eq!(parsed, None, "NullIfExists does not exist");
            } else {
                let op = parsed.unwrap();
                assert!(op.if_exists);
                assert_eq!(op.to_string(), with_suffix);
            }
        }
        assert_eq!(OperatorKind::ALL.len(), 27);
        let op = ConditionOperator::parse("ForAllValues:StringLikeIfExists").unwrap();
        assert_eq!(op.qualifier, Some(SetQualifier::ForAllValues));
        assert_eq!(op.kind, OperatorKind::StringLike);
        assert!(op.if_exists);
        for bad in [
            "",
            "stringequals",
            "StringEqual",
            "IfExists",
            "ForAnyValue:",
            "ForSomeValues:StringEquals",
            "ForAnyValue:ForAllValues:StringEquals",
            "StringEqualsIfExistsIfExists",
            "NullIfExists",
        ] {
            assert_eq!(ConditionOperator::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn values_are_checked_per_operator() {
        let op = |name: &str| ConditionOperator::parse(name).unwrap();
        let s = |v: &str| ConditionValue::String(v.into());
        let n = |v: serde_json::Number| ConditionValue::Number(v);
        let ok = |o: &str, v: ConditionValue| op(o).check_value(&v).is_ok();

        assert!(ok("StringEquals", s("x")));
        assert!(ok("StringEquals", ConditionValue::Bool(true)));
        assert!(ok("StringLike", n(5.into())));

        assert!(ok("NumericLessThan", n(10.into())));
        assert!(ok("NumericLessThan", s("10")));
        assert!(ok("NumericLessThan", s("-1.25")));
        assert!(!ok("NumericLessThan", s("ten")));
        assert!(!ok("NumericLessThan", s(".5")));
        assert!(!ok("NumericLessThan", s("1e3")));
        assert!(!ok("NumericLessThan", ConditionValue::Bool(true)));

        assert!(ok("DateGreaterThan", s("2020-04-01T00:00:01Z")));
        assert!(ok("DateGreaterThan", s("2020-04-01T00:00:01+02:00")));
        assert!(ok("DateGreaterThan", s("2020-04-01")));
        assert!(ok("DateGreaterThan", s("1585699201")));
        assert!(ok("DateGreaterThan", n(1585699201.into())));
        assert!(!ok("DateGreaterThan", s("April 1st")));
        assert!(!ok("DateGreaterThan", s("2020-13-01")));
        assert!(!ok(
            "DateGreaterThan",
            n(serde_json::Number::from_f64(1.5).unwrap())
        ));

        for b in ["Bool", "Null"] {
            assert!(ok(b, ConditionValue::Bool(false)));
            assert!(ok(b, s("true")));
            assert!(!ok(b, s("yes")));
            assert!(!ok(b, n(1.into())));
        }

        assert!(ok("BinaryEquals", s("QmluYXJ5VmFsdWVJbkJhc2U2NA==")));
        assert!(!ok("BinaryEquals", s("not base64!")));
        assert!(!ok("BinaryEquals", s("abc")));

        assert!(ok("IpAddress", s("203.0.113.0/24")));
        assert!(ok("NotIpAddress", s("2001:db8::/32")));
        assert!(ok("IpAddress", s("203.0.113.7")));
        assert!(!ok("IpAddress", s("203.0.113.0/33")));
        assert!(!ok("IpAddress", s("2001:db8::/129")));
        assert!(!ok("IpAddress", s("example.com")));
        assert!(!ok("IpAddress", s("10.0.0.0/")));

        assert!(ok("ArnLike", s("arn:aws:iam::111122223333:role/*")));
        assert!(!ok("ArnEquals", s("role/x")));
        assert!(!ok("ArnEquals", n(1.into())));
    }
}
