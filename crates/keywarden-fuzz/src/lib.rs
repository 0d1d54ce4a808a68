//! Fuzzing on the stable toolchain, as ordinary `cargo test` tests.
//!
//! libFuzzer (cargo-fuzz) needs nightly; this is a coverage-less mutational
//! fuzzer built on proptest, which the workspace already uses for its
//! property tests. A target is a seed corpus of real inputs (valid
//! requests, real blobs and messages), a strategy that derives inputs from
//! it (random bytes, byte-level mutations of a seed, structural mutations
//! of a JSON seed) and a property checked on each input. [`run`] repeats
//! batches of cases until the target's time budget is spent; a failing
//! case is shrunk by proptest to a small input and reported with the seed
//! that reproduces the run.
//!
//! - `KEYWARDEN_FUZZ_SECS`: seconds per target (default 3; fractions
//!   allowed). A long run: `KEYWARDEN_FUZZ_SECS=600 cargo test --release
//!   -p <crate> --test fuzz_<target>`.
//! - `KEYWARDEN_FUZZ_SEED`: the run's random seed (printed by every run and
//!   in every failure), to replay a run.
//!
//! A failure found this way becomes a regression test in the target's file
//! (a plain `#[test]` on the shrunk input).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseResult, TestRng, TestRunner};
use serde_json::Value;

/// Cases per proptest batch; the budget is checked between batches.
const BATCH: u32 = 32;
/// Default seconds per target.
const DEFAULT_SECS: f64 = 3.0;

/// The time each target runs: `KEYWARDEN_FUZZ_SECS` or 3 s.
pub fn budget() -> Duration {
    let secs = std::env::var("KEYWARDEN_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(DEFAULT_SECS);
    Duration::from_secs_f64(secs)
}

fn run_seed() -> u64 {
    if let Some(seed) = std::env::var("KEYWARDEN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return seed;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// Runs `property` on inputs from `strategy` for [`budget`] (at least one
/// batch). Panics with the shrunk failing input and the run's seed when
/// the property fails or panics.
pub fn run<S>(name: &str, strategy: S, property: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
    S::Value: fmt::Debug,
{
    let budget = budget();
    let seed = run_seed();
    let start = Instant::now();
    let mut batch: u64 = 0;
    while batch == 0 || start.elapsed() < budget {
        let mut rng_seed = [0u8; 32];
        rng_seed[..8].copy_from_slice(&seed.to_le_bytes());
        rng_seed[8..16].copy_from_slice(&batch.to_le_bytes());
        let config = Config {
            cases: BATCH,
            failure_persistence: None,
            max_shrink_time: 30_000,
            ..Config::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &rng_seed));
        if let Err(e) = runner.run(&strategy, &property) {
            panic!(
                "fuzz target {name} failed (replay with KEYWARDEN_FUZZ_SEED={seed}; \
                 batch {batch}): {e}"
            );
        }
        batch += 1;
    }
    eprintln!(
        "fuzz target {name}: {} cases in {:.1} s (KEYWARDEN_FUZZ_SEED={seed})",
        batch * u64::from(BATCH),
        start.elapsed().as_secs_f64()
    );
}

/// Bytes shown as an escaped string in failure reports.
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

/// One byte-level edit. Positions are [`Index`]es, resolved against the
/// input's length when applied, so they shrink and never go out of range.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flip one bit.
    FlipBit(Index, u8),
    /// Overwrite one byte.
    SetByte(Index, u8),
    /// Overwrite with an "interesting" integer (0, -1, boundaries), 1-4
    /// bytes, big-endian.
    Interesting(Index, u8, u32),
    /// Insert bytes.
    Insert(Index, Vec<u8>),
    /// Remove up to `n` bytes.
    Delete(Index, u16),
    /// Cut the input here.
    Truncate(Index),
    /// Copy a run of the input to another place.
    Duplicate(Index, u16, Index),
}

const INTERESTING: [u32; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        2 => (any::<Index>(), 1u8..=4, 0..INTERESTING.len())
            .prop_map(|(i, w, v)| Mutation::Interesting(i, w, INTERESTING[v])),
        2 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => (any::<Index>(), 1u16..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), 1u16..64, any::<Index>())
            .prop_map(|(a, n, b)| Mutation::Duplicate(a, n, b)),
    ]
}

/// One to eight byte-level edits.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    mutations_in(1..8)
}

/// A number of byte-level edits in `count` (which may include zero).
pub fn mutations_in(count: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), count)
}

fn at(i: &Index, len: usize) -> usize {
    i.index(len + 1)
}

/// Applies `mutations` to a copy of `input`.
pub fn apply(input: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = input.to_vec();
    for m in mutations {
        let len = out.len();
        match m {
            Mutation::FlipBit(i, bit) if len > 0 => out[i.index(len)] ^= 1 << (bit % 8),
            Mutation::SetByte(i, b) if len > 0 => out[i.index(len)] = *b,
            Mutation::Interesting(i, width, value) if len > 0 => {
                let p = i.index(len);
                let bytes = value.to_be_bytes();
                let w = usize::from(*width).clamp(1, 4);
                for (k, b) in bytes[4 - w..].iter().enumerate() {
                    if let Some(slot) = out.get_mut(p + k) {
                        *slot = *b;
                    }
                }
            }
            Mutation::Insert(i, bytes) => {
                let p = at(i, len);
                out.splice(p..p, bytes.iter().copied());
            }
            Mutation::Delete(i, n) if len > 0 => {
                let p = i.index(len);
                let end = (p + usize::from(*n)).min(len);
                out.drain(p..end);
            }
            Mutation::Truncate(i) => out.truncate(at(i, len)),
            Mutation::Duplicate(from, n, to) if len > 0 => {
                let p = from.index(len);
                let end = (p + usize::from(*n)).min(len);
                let run = out[p..end].to_vec();
                let q = at(to, len);
                out.splice(q..q, run);
            }
            _ => {}
        }
    }
    out
}

/// Inputs derived from `seeds`: mostly a mutated seed, sometimes an
/// unchanged seed, sometimes random bytes (up to `max_random` long). Yields
/// the seed's index (`None` for random bytes) and the bytes.
pub fn bytes_from_seeds(
    seeds: Vec<Vec<u8>>,
    max_random: usize,
) -> impl Strategy<Value = (Option<usize>, Bytes)> {
    assert!(!seeds.is_empty(), "a fuzz target needs at least one seed");
    let n = seeds.len();
    let mutated =
        (0..n, mutations()).prop_map(move |(s, m)| (Some(s), Bytes(apply(&seeds[s], &m))));
    prop_oneof![
        8 => mutated,
        1 => proptest::collection::vec(any::<u8>(), 0..max_random.max(1))
            .prop_map(|b| (None, Bytes(b))),
    ]
}

/// A structural edit of a JSON document. Nodes are numbered in pre-order;
/// [`Index`]es resolve against the document's node count.
#[derive(Debug, Clone)]
pub enum JsonMutation {
    /// Replace a node with a value.
    Replace(Index, Value),
    /// Remove a member of an object node (no-op on other nodes).
    RemoveMember(Index, Index),
    /// Add or overwrite a member of an object node.
    SetMember(Index, Index, Value),
    /// Wrap a node in `depth` arrays or objects.
    Nest(Index, u16, bool),
}

/// Values that break decoders: wrong types, limits, odd strings.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![
            0i64,
            -1,
            1,
            7,
            8,
            16,
            32,
            64,
            1024,
            1025,
            4096,
            6144,
            6145,
            i64::MIN,
            i64::MAX
        ])
        .prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        "[A-Za-z0-9+/=]{0,64}".prop_map(Value::String),
        prop::sample::select(vec![
            "",
            "=",
            "====",
            "AA==",
            "AAAA",
            "!!!!",
            "alias/",
            "alias/aws/ebs",
            "alias/x",
            "arn:aws:kms:us-east-1:111122223333:key/",
            "arn:aws:kms:::alias/x",
            "00000000-0000-0000-0000-000000000000",
            "SYMMETRIC_DEFAULT",
            "AES_256",
            "AES_128",
            "\u{0}",
            "\u{feff}",
            "\u{10ffff}",
            "ENCRYPT_DECRYPT",
            "EXTERNAL",
            "AWS_KMS",
            "RSAES_OAEP_SHA_256",
            "RSA_2048",
            "Decrypt",
            "Encrypt",
            "GenerateDataKey",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        (0usize..9000).prop_map(|n| Value::String("A".repeat(n))),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_mutation() -> impl Strategy<Value = JsonMutation> {
    prop_oneof![
        3 => (any::<Index>(), json_value()).prop_map(|(i, v)| JsonMutation::Replace(i, v)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, k)| JsonMutation::RemoveMember(i, k)),
        3 => (any::<Index>(), any::<Index>(), json_value())
            .prop_map(|(i, k, v)| JsonMutation::SetMember(i, k, v)),
        1 => (any::<Index>(), 1u16..300, any::<bool>())
            .prop_map(|(i, d, o)| JsonMutation::Nest(i, d, o)),
    ]
}

/// One to four structural edits.
pub fn json_mutations() -> impl Strategy<Value = Vec<JsonMutation>> {
    proptest::collection::vec(json_mutation(), 1..4)
}

fn node_count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(node_count).sum(),
        Value::Object(o) => o.values().map(node_count).sum(),
        _ => 0,
    }
}

fn nth_node(v: &mut Value, n: usize) -> Option<&mut Value> {
    if n == 0 {
        return Some(v);
    }
    let mut n = n - 1;
    let children: Box<dyn Iterator<Item = &mut Value>> = match v {
        Value::Array(a) => Box::new(a.iter_mut()),
        Value::Object(o) => Box::new(o.values_mut()),
        _ => return None,
    };
    for child in children {
        let k = node_count(child);
        if n < k {
            return nth_node(child, n);
        }
        n -= k;
    }
    None
}

/// Every member name in a document (the names a mutation may add).
pub fn member_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|c| member_names(c, out)),
        Value::Object(o) => {
            for (k, c) in o {
                if !out.contains(k) {
                    out.push(k.clone());
                }
                member_names(c, out);
            }
        }
        _ => {}
    }
}

/// Applies structural edits to a copy of `doc`; `names` are the member
/// names `SetMember` chooses from (plus one unknown name).
pub fn apply_json(doc: &Value, mutations: &[JsonMutation], names: &[String]) -> Value {
    let mut doc = doc.clone();
    for m in mutations {
        let count = node_count(&doc);
        match m {
            JsonMutation::Replace(i, value) => {
                if let Some(node) = nth_node(&mut doc, i.index(count)) {
                    *node = value.clone();
                }
            }
            JsonMutation::RemoveMember(i, k) => {
                if let Some(Value::Object(o)) = nth_node(&mut doc, i.index(count)) {
                    if !o.is_empty() {
                        let key = o.keys().nth(k.index(o.len())).cloned();
                        if let Some(key) = key {
                            o.remove(&key);
                        }
                    }
                }
            }
            JsonMutation::SetMember(i, k, value) => {
                if let Some(Value::Object(o)) = nth_node(&mut doc, i.index(count)) {
                    let name = names
                        .get(k.index(names.len() + 1))
                        .cloned()
                        .unwrap_or_else(|| "UnknownMember".to_owned());
                    o.insert(name, value.clone());
                }
            }
            JsonMutation::Nest(i, depth, object) => {
                if let Some(node) = nth_node(&mut doc, i.index(count)) {
                    let mut v = node.take();
                    for _ in 0..*depth {
                        v = if *object {
                            Value::Object([("a".to_owned(), v)].into_iter().collect())
                        } else {
                            Value::Array(vec![v])
                        };
                    }
                    *node = v;
                }
            }
        }
    }
    doc
}

/// Inputs derived from JSON seeds: structurally mutated documents,
/// sometimes with byte-level mutations on top of their text, sometimes
/// random bytes. Yields the seed's index (`None` for random bytes) and the
/// bytes.
pub fn json_from_seeds(seeds: Vec<Value>) -> impl Strategy<Value = (Option<usize>, Bytes)> {
    assert!(!seeds.is_empty(), "a fuzz target needs at least one seed");
    let mut names = Vec::new();
    for s in &seeds {
        member_names(s, &mut names);
    }
    let n = seeds.len();
    let texts: Vec<Vec<u8>> = seeds
        .iter()
        .map(|s| serde_json::to_vec(s).expect("JSON seeds serialise"))
        .collect();
    let structural = (0..n, json_mutations(), any::<bool>(), mutations()).prop_map(
        move |(s, jm, bytes_too, bm)| {
            let text =
                serde_json::to_vec(&apply_json(&seeds[s], &jm, &names)).expect("values serialise");
            let text = if bytes_too { apply(&text, &bm) } else { text };
            (Some(s), Bytes(text))
        },
    );
    prop_oneof![
        6 => structural,
        2 => bytes_from_seeds(texts, 256),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest! {
        #[test]
        fn mutations_never_panic(input in proptest::collection::vec(any::<u8>(), 0..64), m in mutations()) {
            let _ = apply(&input, &m);
        }

        #[test]
        fn json_mutations_never_panic(m in json_mutations()) {
            let doc = serde_json::json!({"A": [1, {"B": "x"}], "C": {}});
            let names = vec!["A".to_owned(), "Z".to_owned()];
            let out = apply_json(&doc, &m, &names);
            serde_json::to_vec(&out).unwrap();
        }
    }

    #[test]
    fn nth_node_walks_in_pre_order() {
        let mut doc = serde_json::json!({"a": [1, 2], "b": 3});
        assert_eq!(node_count(&doc), 5);
        assert_eq!(nth_node(&mut doc, 2).cloned(), Some(Value::from(1)));
        assert_eq!(nth_node(&mut doc, 4).cloned(), Some(Value::from(3)));
        assert!(nth_node(&mut doc, 5).is_none());
    }
}
