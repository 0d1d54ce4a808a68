//! `*` and `?` wildcard matching, as policies use it in actions, resources
//! and the `...Like` condition operators.
//!
//! The matcher remembers only the most recent `*` and retries from there,
//! never from earlier ones (a later `*` can absorb whatever an earlier one
//! would have), so it takes at most O(pattern × value) steps and no
//! exponential backtracking, whatever the pattern.
//!
//! O(pattern × value) is still quadratic, and a policy's patterns are many
//! and can be long (a 32 KB key policy; policy variables such as
//! `${kms:EncryptionContext:k}` insert up to 8 KB of the request into each
//! pattern that names them). So one decision's matching is bounded as a
//! whole: a [`Budget`] holds the steps of one decision, and once they are
//! spent every further match answers `false` and the budget says it ran
//! out, which the evaluator turns into a denial (never into an allow).

use std::cell::Cell;

/// How many matcher steps one policy decision may take: a few
/// milliseconds of one core in a release build. A step is a value
/// character examined by the matcher, or one comparison of a request value
/// with a condition value (`evaluate_kms`); a character copied into a symbol pattern (what
/// policy variables insert, a value matched against such a pattern) costs
/// the bytes its [`Sym`] takes, so the patterns one decision holds stay
/// under `DECISION_STEPS` bytes (4 MB) however many variables a policy
/// has. A realistic decision takes
/// a few hundred to a few thousand; even a 32 KB document of plain
/// patterns against an 8 KB encryption context stays far below this unless
/// its patterns are built to force the quadratic case.
pub(crate) const DECISION_STEPS: u64 = 4_000_000;

/// The matching steps one decision may still take. Passed down by
/// reference (not kept in a thread-local, whose lookups cost more than the
/// short matches of a typical request).
pub(crate) struct Budget {
    left: Cell<u64>,
    exhausted: Cell<bool>,
}

impl Budget {
    /// A budget of `steps`.
    pub(crate) fn new(steps: u64) -> Budget {
        Budget {
            left: Cell::new(steps),
            exhausted: Cell::new(false),
        }
    }

    /// A budget that never runs out, for matching outside a decision.
    pub(crate) fn unlimited() -> Budget {
        Budget::new(u64::MAX)
    }

    /// Takes `n` steps; `false` (and the budget marked exhausted) when
    /// fewer are left.
    pub(crate) fn spend(&self, n: u64) -> bool {
        let left = self.left.get();
        if n > left {
            self.left.set(0);
            self.exhausted.set(true);
            return false;
        }
        self.left.set(left - n);
        true
    }

    /// Takes the steps of copying `chars` characters into [`Sym`]s.
    pub(crate) fn spend_copy(&self, chars: usize) -> bool {
        let bytes = chars.saturating_mul(std::mem::size_of::<Sym>());
        self.spend(u64::try_from(bytes).unwrap_or(u64::MAX))
    }

    /// Whether matching was cut short: some match answered `false` without
    /// finishing, so the decision must not rely on what it saw.
    pub(crate) fn exhausted(&self) -> bool {
        self.exhausted.get()
    }
}

/// Whether `action` (e.g. `kms:Encrypt`) matches the policy action pattern
/// `pattern` (e.g. `kms:*`, `kms:Re*`, `*`). ASCII case-insensitive, as AWS
/// matches actions
/// (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html>).
pub fn action_matches(pattern: &str, action: &str) -> bool {
    glob(pattern, action, true, &Budget::unlimited())
}

/// [`action_matches`] within a decision's budget.
pub(crate) fn action_matches_within(pattern: &str, action: &str, budget: &Budget) -> bool {
    glob(pattern, action, true, budget)
}

/// Whether `value` matches `pattern` where `*` is any run of characters and
/// `?` any one character; case-sensitive, as `StringLike` and ARN patterns
/// are.
pub fn wildcard_matches(pattern: &str, value: &str) -> bool {
    glob(pattern, value, false, &Budget::unlimited())
}

/// [`wildcard_matches`] within a decision's budget.
pub(crate) fn wildcard_matches_within(pattern: &str, value: &str, budget: &Budget) -> bool {
    glob(pattern, value, false, budget)
}

fn glob(pattern: &str, value: &str, ignore_case: bool, budget: &Budget) -> bool {
    // ASCII (every action and nearly every ARN) is matched on bytes without
    // allocating, since the evaluator calls this for every statement of
    // every request; anything else on chars.
    if pattern.is_ascii() && value.is_ascii() {
        let same = |a: &u8, b: &u8| {
            if ignore_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        glob_slices(
            pattern.as_bytes(),
            value.as_bytes(),
            &b'*',
            &b'?',
            same,
            budget,
        )
    } else {
        let p: Vec<char> = pattern.chars().collect();
        let v: Vec<char> = value.chars().collect();
        let same = |a: &char, b: &char| {
            if ignore_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        glob_slices(&p, &v, &'*', &'?', same, budget)
    }
}

/// The matcher over any symbols: `star` is any run, `one` any one symbol.
/// Its steps are counted locally and taken from `budget` once, at the end
/// or when they would exceed it.
fn glob_slices<T: PartialEq>(
    p: &[T],
    v: &[T],
    star_sym: &T,
    one: &T,
    same: impl Fn(&T, &T) -> bool,
    budget: &Budget,
) -> bool {
    let left = budget.left.get();
    let mut steps: u64 = 0;
    let (mut pi, mut vi) = (0usize, 0usize);
    // The position after the last `*` seen, and where in `value` it started.
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        steps += 1;
        if steps > left {
            budget.spend(steps);
            return false;
        }
        if pi < p.len() && (p[pi] == *one || (p[pi] != *star_sym && same(&p[pi], &v[vi]))) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == *star_sym {
            star = Some((pi + 1, vi));
            pi += 1;
        } else if let Some((after_star, start)) = star {
            // Let the last `*` absorb one more character and retry.
            pi = after_star;
            vi = start + 1;
            star = Some((after_star, start + 1));
        } else {
            break;
        }
    }
    budget.left.set(left - steps);
    vi == v.len() && p[pi..].iter().all(|c| c == star_sym)
}

/// One symbol of a pattern whose wildcards are known apart from literal
/// `*` and `?` (policy variables such as `${*}` insert literal ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sym {
    /// This character.
    Char(char),
    /// `*`: any run of characters.
    Any,
    /// `?`: any one character.
    One,
}

/// [`wildcard_matches`] for a pattern already split into symbols.
pub(crate) fn symbols_match(pattern: &[Sym], value: &str, budget: &Budget) -> bool {
    // The copy of the value is work too.
    if !budget.spend_copy(value.len()) {
        return false;
    }
    let v: Vec<Sym> = value.chars().map(Sym::Char).collect();
    glob_slices(pattern, &v, &Sym::Any, &Sym::One, |a, b| a == b, budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_match_case_insensitively_with_wildcards() {
        assert!(action_matches("*", "kms:Encrypt"));
        assert!(action_matches("kms:*", "kms:Encrypt"));
        assert!(action_matches("KMS:encrypt", "kms:Encrypt"));
        assert!(action_matches("kms:ReEncrypt*", "kms:ReEncryptFrom"));
        assert!(action_matches(
            "kms:GenerateDataKey*",
            "kms:GenerateDataKey"
        ));
        assert!(action_matches("kms:Generate?ataKey", "kms:GenerateDataKey"));
        assert!(action_matches("kms:*Key*", "kms:DescribeKey"));
        assert!(!action_matches("kms:Encrypt", "kms:Decrypt"));
        assert!(!action_matches("kms:Encrypt", "kms:EncryptX"));
        assert!(!action_matches("kms:?", "kms:"));
        assert!(!action_matches("kms:Describe*", "iam:DescribeKey"));
        assert!(!action_matches("", "kms:Encrypt"));
        assert!(action_matches("", ""));
        assert!(action_matches("**", ""));
        assert!(!action_matches("?", ""));
    }

    #[test]
    fn like_matching_is_case_sensitive() {
        assert!(wildcard_matches(
            "arn:aws:kms:*:111122223333:key/*",
            "arn:aws:kms:us-east-1:111122223333:key/abc"
        ));
        assert!(!wildcard_matches("Finance*", "finance-1"));
        assert!(wildcard_matches("a*b*c", "axxbyyc"));
        assert!(!wildcard_matches("a*b*c", "axxbyy"));
        assert!(wildcard_matches("a*?c", "abc"));
        assert!(wildcard_matches("é?", "éa"));
    }

    #[test]
    fn a_spent_budget_stops_matching_and_says_so() {
        // `*` + 1,000 `a`s + `b` against 3,000 `a`s: about 2 million steps.
        let pattern = format!("*{}b", "a".repeat(1_000));
        let value = "a".repeat(3_000);
        let matching = format!("*{}", "a".repeat(1_000));
        let budget = Budget::new(3_000_000);
        assert!(!wildcard_matches_within(&pattern, &value, &budget));
        assert!(!budget.exhausted(), "one such match fits");
        assert!(!wildcard_matches_within(&pattern, &value, &budget));
        assert!(budget.exhausted(), "two do not");
        // Spent: even a match that holds answers no now.
        assert!(!wildcard_matches_within(&matching, &value, &budget));
        assert!(!action_matches_within("*", "kms:Encrypt", &budget));
        let symbols: Vec<Sym> = vec![Sym::Any];
        assert!(!symbols_match(&symbols, "x", &budget));
        // Another budget, and matching outside a decision, are unaffected.
        assert!(wildcard_matches_within(
            &matching,
            &value,
            &Budget::new(DECISION_STEPS)
        ));
        for _ in 0..3 {
            assert!(!wildcard_matches(&pattern, &value));
        }
        assert!(wildcard_matches(&matching, &value));
        // Copies count by the bytes they take.
        let budget = Budget::new(10 * std::mem::size_of::<Sym>() as u64);
        assert!(budget.spend_copy(10));
        assert!(!budget.exhausted());
        assert!(!budget.spend(1));
        assert!(budget.exhausted());
    }

    #[test]
    fn hostile_patterns_finish_in_bounded_time() {
        // `*a*a*a...*b` against a long run of `a`s is exponential for a naive
        // backtracking matcher; this one finishes it at once.
        let pattern = format!("{}b", "*a".repeat(2_000));
        let value = "a".repeat(20_000);
        assert!(!action_matches(&pattern, &value));
        assert!(action_matches(&format!("{}*", "*a".repeat(2_000)), &value));
        let pattern = format!("{}b", "*".repeat(5_000));
        assert!(!wildcard_matches(&pattern, &value));
        let pattern = "a?".repeat(1_000) + "*" + &"?a".repeat(1_000);
        assert!(wildcard_matches(&pattern, &"a".repeat(4_000)));
    }
}
