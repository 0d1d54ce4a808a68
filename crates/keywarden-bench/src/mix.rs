//! Operations and the weighted operation mix (`--mix GenerateDataKey=1,Decrypt=1`).

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use keywarden_core::Operation;

/// The KMS operations the generator can issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    GenerateDataKey,
    GenerateDataKeyWithoutPlaintext,
    Decrypt,
    Encrypt,
    DescribeKey,
    /// Needs a `SIGN_VERIFY` key (`--key-spec`).
    Sign,
    /// Needs an HMAC key (`--key-spec HMAC_*`).
    GenerateMac,
}

impl Op {
    pub const ALL: [Op; 7] = [
        Op::GenerateDataKey,
        Op::GenerateDataKeyWithoutPlaintext,
        Op::Decrypt,
        Op::Encrypt,
        Op::DescribeKey,
        Op::Sign,
        Op::GenerateMac,
    ];

    /// The operation in keywarden-core's table.
    pub fn operation(self) -> Operation {
        match self {
            Op::GenerateDataKey => Operation::GenerateDataKey,
            Op::GenerateDataKeyWithoutPlaintext => Operation::GenerateDataKeyWithoutPlaintext,
            Op::Decrypt => Operation::Decrypt,
            Op::Encrypt => Operation::Encrypt,
            Op::DescribeKey => Operation::DescribeKey,
            Op::Sign => Operation::Sign,
            Op::GenerateMac => Operation::GenerateMac,
        }
    }

    pub fn name(self) -> &'static str {
        self.operation().wire_name()
    }

    /// The `X-Amz-Target` header value.
    pub fn target(self) -> &'static str {
        self.operation().target()
    }

    /// Index into per-operation arrays.
    pub fn index(self) -> usize {
        match self {
            Op::GenerateDataKey => 0,
            Op::GenerateDataKeyWithoutPlaintext => 1,
            Op::Decrypt => 2,
            Op::Encrypt => 3,
            Op::DescribeKey => 4,
            Op::Sign => 5,
            Op::GenerateMac => 6,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Op {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let s = s.strip_prefix("TrentService.").unwrap_or(s);
        Op::ALL
            .into_iter()
            .find(|op| op.name().eq_ignore_ascii_case(s))
            .with_context(|| {
                format!(
                    "unknown operation {s:?} (known: {})",
                    Op::ALL.map(Op::name).join(", ")
                )
            })
    }
}

/// A weighted set of operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    /// Operations with their weight (> 0), in the order given.
    entries: Vec<(Op, u32)>,
    total: u32,
}

impl Mix {
    pub fn entries(&self) -> &[(Op, u32)] {
        &self.entries
    }

    pub fn contains(&self, op: Op) -> bool {
        self.entries.iter().any(|(o, _)| *o == op)
    }

    /// Maps `r` in `0..total_weight()` to an operation.
    pub fn pick_with(&self, mut r: u32) -> Op {
        for (op, w) in &self.entries {
            if r < *w {
                return *op;
            }
            r -= w;
        }
        // Unreachable for r < total; be lenient.
        self.entries[self.entries.len() - 1].0
    }

    pub fn total_weight(&self) -> u32 {
        self.total
    }

    pub fn pick(&self, rng: &mut fastrand::Rng) -> Op {
        if self.entries.len() == 1 {
            return self.entries[0].0;
        }
        self.pick_with(rng.u32(0..self.total))
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (op, w)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{op}={w}")?;
        }
        Ok(())
    }
}

impl FromStr for Mix {
    type Err = anyhow::Error;

    /// `Op=weight,Op=weight`; a bare `Op` means weight 1. Weights are integers;
    /// an operation given twice has its weights added; weight 0 drops it.
    fn from_str(s: &str) -> Result<Self> {
        let mut entries: Vec<(Op, u32)> = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, weight) = match part.split_once('=') {
                Some((n, w)) => {
                    let w: u32 = w
                        .trim()
                        .parse()
                        .with_context(|| format!("weight of {:?} is not an integer", n.trim()))?;
                    (n, w)
                }
                None => (part, 1),
            };
            let op: Op = name.parse()?;
            match entries.iter_mut().find(|(o, _)| *o == op) {
                Some((_, w)) => *w = w.checked_add(weight).context("mix weights are too large")?,
                None => entries.push((op, weight)),
            }
        }
        entries.retain(|(_, w)| *w > 0);
        if entries.is_empty() {
            bail!("the mix {s:?} has no operation with a positive weight");
        }
        let total = entries
            .iter()
            .try_fold(0u32, |acc, (_, w)| acc.checked_add(*w))
            .context("mix weights are too large")?;
        Ok(Mix { entries, total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_weights() {
        let mix: Mix = "GenerateDataKey=3,Decrypt=1".parse().unwrap();
        assert_eq!(mix.entries(), &[(Op::GenerateDataKey, 3), (Op::Decrypt, 1)]);
        assert_eq!(mix.total_weight(), 4);
        assert_eq!(mix.to_string(), "GenerateDataKey=3,Decrypt=1");
    }

    #[test]
    fn bare_names_spaces_case_and_prefix() {
        let mix: Mix = " encrypt , TrentService.DescribeKey=2 ,".parse().unwrap();
        assert_eq!(mix.entries(), &[(Op::Encrypt, 1), (Op::DescribeKey, 2)]);
    }

    #[test]
    fn parses_sign_and_generate_mac() {
        let mix: Mix = "Sign=1".parse().unwrap();
        assert_eq!(mix.entries(), &[(Op::Sign, 1)]);
        let mix: Mix = "TrentService.GenerateMac=2,describekey".parse().unwrap();
        assert_eq!(mix.entries(), &[(Op::GenerateMac, 2), (Op::DescribeKey, 1)]);
        assert_eq!(mix.to_string(), "GenerateMac=2,DescribeKey=1");
        assert_eq!(Op::Sign.target(), "TrentService.Sign");
        assert_eq!(Op::GenerateMac.target(), "TrentService.GenerateMac");
    }

    #[test]
    fn duplicates_add_and_zero_drops() {
        let mix: Mix = "Decrypt=1,Encrypt=0,Decrypt=2".parse().unwrap();
        assert_eq!(mix.entries(), &[(Op::Decrypt, 3)]);
    }

    #[test]
    fn rejects_bad_input() {
        assert!("".parse::<Mix>().is_err());
        assert!("Decrypt=0".parse::<Mix>().is_err());
        assert!("Verify=1".parse::<Mix>().is_err());
        assert!("Sign=x".parse::<Mix>().is_err());
        assert!("Decrypt=x".parse::<Mix>().is_err());
        assert!("Decrypt=-1".parse::<Mix>().is_err());
        assert!("Decrypt=1.5".parse::<Mix>().is_err());
        assert!("Decrypt=4294967295,Encrypt=1".parse::<Mix>().is_err());
    }

    #[test]
    fn pick_follows_weights() {
        let mix: Mix = "GenerateDataKey=1,Decrypt=2,Encrypt=1".parse().unwrap();
        let picked: Vec<Op> = (0..4).map(|r| mix.pick_with(r)).collect();
        assert_eq!(
            picked,
            [Op::GenerateDataKey, Op::Decrypt, Op::Decrypt, Op::Encrypt]
        );
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = [0u32; Op::ALL.len()];
        for _ in 0..40_000 {
            counts[mix.pick(&mut rng).index()] += 1;
        }
        let d = counts[Op::Decrypt.index()];
        assert!((19_000..21_000).contains(&d), "decrypt picked {d} times");
        assert_eq!(counts[Op::DescribeKey.index()], 0);
    }

    #[test]
    fn op_indexes_are_distinct() {
        let mut seen = [false; Op::ALL.len()];
        for op in Op::ALL {
            assert!(!seen[op.index()]);
            seen[op.index()] = true;
            assert_eq!(op.name().parse::<Op>().unwrap(), op);
            assert_eq!(op.target(), format!("TrentService.{}", op.name()));
        }
    }
}
