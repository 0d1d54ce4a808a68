//! `*` and `?` wildcard matching, as policies use it in actions, resources
//! and the `...Like` condition operators.
//!
//! The matcher remembers only the most recent `*` and retries from there,
//! never from earlier ones (a later `*` can absorb whatever an earlier one
//! would have), so it takes at most O(pattern × value) steps and no
//! exponential backtracking, whatever the pattern.

/// Whether `action` (e.g. `kms:Encrypt`) matches the policy action pattern
/// `pattern` (e.g. `kms:*`, `kms:Re*`, `*`). ASCII case-insensitive, as AWS
/// matches actions
/// (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html>).
pub fn action_matches(pattern: &str, action: &str) -> bool {
    glob(pattern, action, true)
}

/// Whether `value` matches `pattern` where `*` is any run of characters and
/// `?` any one character; case-sensitive, as `StringLike` and ARN patterns
/// are.
pub fn wildcard_matches(pattern: &str, value: &str) -> bool {
    glob(pattern, value, false)
}

fn glob(pattern: &str, value: &str, ignore_case: bool) -> bool {
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
        glob_slices(pattern.as_bytes(), value.as_bytes(), &b'*', &b'?', same)
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
        glob_slices(&p, &v, &'*', &'?', same)
    }
}

/// The matcher over any symbols: `star` is any run, `one` any one symbol.
fn glob_slices<T: PartialEq>(
    p: &[T],
    v: &[T],
    star_sym: &T,
    one: &T,
    same: impl Fn(&T, &T) -> bool,
) -> bool {
    let (mut pi, mut vi) = (0usize, 0usize);
    // The position after the last `*` seen, and where in `value` it started.
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
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
            return false;
        }
    }
    p[pi..].iter().all(|c| c == star_sym)
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
pub(crate) fn symbols_match(pattern: &[Sym], value: &str) -> bool {
    let v: Vec<Sym> = value.chars().map(Sym::Char).collect();
    glob_slices(pattern, &v, &Sym::Any, &Sym::One, |a, b| a == b)
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
