//! The workers: one task per connection, issuing requests back to back.
//!
//! A run is a sequence of *phases* (pool fill, warm-up, measurement). A phase
//! hands each worker to its own task and ends when every task has returned
//! (after the deadline or the last request ticket), so nothing is in flight
//! between phases: the CPU counters read between two phases cover exactly
//! the requests of the phase in between.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use hdrhistogram::Histogram;

use keywarden_core::key_spec::KeySpec;

use crate::client::{error_message, error_type, Conn, Counts, Signer, TransportError};
use crate::keys;
use crate::mix::{Mix, Op};

/// One server to send requests to, with a signer for its `Host`.
#[derive(Clone)]
pub struct NodeTarget {
    pub signer: Signer,
    pub addr: SocketAddr,
}

/// Everything a worker needs to build requests; shared read-only.
#[derive(Clone)]
pub struct Plan {
    /// At least one; worker `i` sends to node `i % nodes.len()`.
    pub nodes: Vec<NodeTarget>,
    pub mix: Mix,
    /// The key id as a JSON string literal (quotes included).
    pub key_id_json: String,
    /// Base64 ciphertexts for Decrypt.
    pub pool: Vec<String>,
    pub timeout: Duration,
    /// Sign's `SigningAlgorithm` for the key's spec (empty when the spec
    /// cannot sign: `keys::check_mix` refuses such a mix first).
    pub signing_algorithm: &'static str,
    /// GenerateMac's `MacAlgorithm` (likewise).
    pub mac_algorithm: &'static str,
}

impl Plan {
    /// `nodes` must not be empty; `key_spec` is the key's spec.
    pub fn new(
        nodes: Vec<NodeTarget>,
        mix: Mix,
        key_id: &str,
        key_spec: KeySpec,
        timeout: Duration,
    ) -> Plan {
        assert!(!nodes.is_empty(), "a plan needs at least one node");
        Plan {
            nodes,
            mix,
            key_id_json: serde_json::Value::from(key_id).to_string(),
            pool: Vec::new(),
            timeout,
            signing_algorithm: keys::signing_algorithm(key_spec).map_or("", |a| a.as_str()),
            mac_algorithm: keys::mac_algorithm(key_spec).map_or("", |a| a.as_str()),
        }
    }

    /// The JSON body of one request.
    pub fn body(&self, op: Op, rng: &mut fastrand::Rng) -> Bytes {
        let key = &self.key_id_json;
        let body = match op {
            Op::GenerateDataKey | Op::GenerateDataKeyWithoutPlaintext => {
                format!(r#"{{"KeyId":{key},"KeySpec":"AES_256"}}"#)
            }
            Op::DescribeKey => format!(r#"{{"KeyId":{key}}}"#),
            Op::Encrypt => {
                let mut plaintext = [0u8; 32];
                rng.fill(&mut plaintext);
                let b64 = base64::engine::general_purpose::STANDARD.encode(plaintext);
                format!(r#"{{"KeyId":{key},"Plaintext":"{b64}"}}"#)
            }
            Op::Decrypt => {
                // Base64 needs no JSON escaping.
                let blob = &self.pool[rng.usize(..self.pool.len())];
                format!(r#"{{"CiphertextBlob":"{blob}"}}"#)
            }
            Op::Sign => {
                let message = random_message(rng);
                let alg = self.signing_algorithm;
                format!(
                    r#"{{"KeyId":{key},"Message":"{message}","MessageType":"RAW","SigningAlgorithm":"{alg}"}}"#
                )
            }
            Op::GenerateMac => {
                let message = random_message(rng);
                let alg = self.mac_algorithm;
                format!(r#"{{"KeyId":{key},"Message":"{message}","MacAlgorithm":"{alg}"}}"#)
            }
        };
        Bytes::from(body)
    }
}

/// A fresh random `keys::MESSAGE_BYTES`-byte message, in base64.
fn random_message(rng: &mut fastrand::Rng) -> String {
    let mut message = [0u8; keys::MESSAGE_BYTES];
    rng.fill(&mut message);
    base64::engine::general_purpose::STANDARD.encode(message)
}

/// Latency and outcome counts of one operation.
#[derive(Clone)]
pub struct OpStats {
    pub ok: u64,
    pub errors: u64,
    /// Latency of successful requests in nanoseconds.
    pub latency: Histogram<u64>,
}

impl OpStats {
    fn new() -> OpStats {
        OpStats {
            ok: 0,
            errors: 0,
            latency: new_histogram(),
        }
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // Auto-resizing, 3 significant digits: memory grows with the largest
    // latency actually seen.
    Histogram::new(3).expect("3 significant figures is a valid histogram precision")
}

/// What a phase produced.
pub struct PhaseStats {
    pub per_op: Vec<(Op, OpStats)>,
    /// API errors (an HTTP response other than 200) by `__type`.
    pub api_errors: Counts,
    /// Requests that got no response, by kind.
    pub transport_errors: Counts,
    /// Connections opened again after one broke.
    pub reconnects: u64,
    /// Requests issued (successful + failed) per node index.
    pub per_node: Vec<u64>,
    /// CiphertextBlobs collected (pool fill only).
    pub pool: Vec<String>,
    /// One error message, to show what went wrong.
    pub sample_error: Option<String>,
}

impl PhaseStats {
    fn new() -> PhaseStats {
        PhaseStats {
            per_op: Vec::new(),
            api_errors: Counts::new(),
            transport_errors: Counts::new(),
            reconnects: 0,
            per_node: Vec::new(),
            pool: Vec::new(),
            sample_error: None,
        }
    }

    fn op(&mut self, op: Op) -> &mut OpStats {
        let i = match self.per_op.iter().position(|(o, _)| *o == op) {
            Some(i) => i,
            None => {
                self.per_op.push((op, OpStats::new()));
                self.per_op.len() - 1
            }
        };
        &mut self.per_op[i].1
    }

    fn node(&mut self, node: usize) -> &mut u64 {
        if self.per_node.len() <= node {
            self.per_node.resize(node + 1, 0);
        }
        &mut self.per_node[node]
    }

    /// Requests issued to node `node` (0-based).
    pub fn node_requests(&self, node: usize) -> u64 {
        self.per_node.get(node).copied().unwrap_or(0)
    }

    pub fn ok(&self) -> u64 {
        self.per_op.iter().map(|(_, s)| s.ok).sum()
    }

    pub fn errors(&self) -> u64 {
        self.api_errors.values().sum::<u64>() + self.transport_errors.values().sum::<u64>()
    }

    pub fn requests(&self) -> u64 {
        self.ok() + self.errors()
    }

    /// All operations' latencies together.
    pub fn latency(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for (_, s) in &self.per_op {
            all.add(&s.latency)
                .expect("auto-resizing histograms always merge");
        }
        all
    }

    fn transport_error(&mut self, op: Option<Op>, kind: TransportError) {
        if let Some(op) = op {
            self.op(op).errors += 1;
        }
        *self
            .transport_errors
            .entry(kind.name().to_owned())
            .or_default() += 1;
        if self.sample_error.is_none() {
            self.sample_error = Some(format!("transport error: {}", kind.name()));
        }
    }

    pub fn merge(&mut self, other: PhaseStats) {
        for (op, s) in other.per_op {
            let mine = self.op(op);
            mine.ok += s.ok;
            mine.errors += s.errors;
            mine.latency
                .add(&s.latency)
                .expect("auto-resizing histograms always merge");
        }
        for (k, v) in other.api_errors {
            *self.api_errors.entry(k).or_default() += v;
        }
        for (k, v) in other.transport_errors {
            *self.transport_errors.entry(k).or_default() += v;
        }
        self.reconnects += other.reconnects;
        for (node, n) in other.per_node.into_iter().enumerate() {
            *self.node(node) += n;
        }
        self.pool.extend(other.pool);
        if self.sample_error.is_none() {
            self.sample_error = other.sample_error;
        }
    }
}

/// When a phase ends.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    After(Duration),
    Requests(u64),
}

/// What a phase does.
#[derive(Clone, Copy, Debug)]
pub struct PhaseSpec {
    pub stop: Stop,
    /// Issue only this operation instead of the mix.
    pub only: Option<Op>,
    /// Keep the CiphertextBlob of successful responses.
    pub collect_pool: bool,
}

struct Control {
    stop: AtomicBool,
    issued: AtomicU64,
    limit: Option<u64>,
}

impl Control {
    /// Whether the worker may issue one more request.
    fn next_ticket(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        match self.limit {
            Some(limit) => self.issued.fetch_add(1, Ordering::Relaxed) < limit,
            None => true,
        }
    }
}

/// One connection and the task state that drives it.
pub struct Worker {
    conn: Option<Conn>,
    rng: fastrand::Rng,
    /// Index into `Plan::nodes`: the worker's connection always goes there.
    node: usize,
}

/// The node worker `i` of `workers` is bound to, round-robin, so each node
/// gets `workers / nodes` connections (the first ones one more when it does
/// not divide).
pub fn node_of(i: usize, nodes: usize) -> usize {
    i % nodes.max(1)
}

/// Opens `n` connections (concurrently), bound to the plan's nodes
/// round-robin; fails if any cannot be opened.
pub async fn open_workers(n: usize, plan: &Plan) -> Result<Vec<Worker>> {
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let node = node_of(i, plan.nodes.len());
        let addr = plan.nodes[node].addr;
        tasks.push((node, tokio::spawn(Conn::open(addr, plan.timeout))));
    }
    let mut workers = Vec::with_capacity(n);
    for (node, task) in tasks {
        let conn = task
            .await
            .context("connection task panicked")?
            .map_err(|e| {
                anyhow!(
                    "cannot connect to {} (node {}): {}",
                    plan.nodes[node].addr,
                    node + 1,
                    e.name()
                )
            })?;
        workers.push(Worker {
            conn: Some(conn),
            rng: fastrand::Rng::new(),
            node,
        });
    }
    Ok(workers)
}

impl Worker {
    async fn run(&mut self, plan: &Plan, spec: PhaseSpec, control: &Control) -> PhaseStats {
        let mut stats = PhaseStats::new();
        let node = &plan.nodes[self.node];
        while control.next_ticket() {
            let op = spec.only.unwrap_or_else(|| plan.mix.pick(&mut self.rng));
            *stats.node(self.node) += 1;
            let conn = match &mut self.conn {
                Some(conn) if !conn.is_closed() => conn,
                _ => {
                    // The server closed the connection (or an earlier request
                    // broke it): open another one and count it.
                    stats.reconnects += 1;
                    match Conn::open(node.addr, plan.timeout).await {
                        Ok(conn) => self.conn.insert(conn),
                        Err(kind) => {
                            self.conn = None;
                            stats.transport_error(Some(op), kind);
                            // Don't spin on a server that refuses connections.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    }
                }
            };
            let body = plan.body(op, &mut self.rng);
            let request = match node.signer.request(op.target(), body) {
                Ok(r) => r,
                Err(e) => {
                    stats.transport_error(Some(op), TransportError::Sign);
                    stats.sample_error.get_or_insert_with(|| format!("{e:#}"));
                    continue;
                }
            };
            let started = Instant::now();
            let result = conn.send(request, plan.timeout).await;
            let elapsed = started.elapsed();
            match result {
                Ok(response) if response.status == 200 => {
                    let s = stats.op(op);
                    s.ok += 1;
                    let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX).max(1);
                    s.latency
                        .record(nanos)
                        .expect("auto-resizing histograms accept any value");
                    if spec.collect_pool {
                        if let Some(blob) = ciphertext_blob(&response.body) {
                            stats.pool.push(blob);
                        }
                    }
                }
                Ok(response) => {
                    stats.op(op).errors += 1;
                    let kind = error_type(response.status, &response.body);
                    if stats.sample_error.is_none() {
                        stats.sample_error = Some(format!(
                            "{op}: HTTP {} {kind}: {}",
                            response.status,
                            error_message(&response.body)
                        ));
                    }
                    *stats.api_errors.entry(kind).or_default() += 1;
                }
                Err(kind) => {
                    stats.transport_error(Some(op), kind);
                    // The connection's state is unknown: replace it.
                    self.conn = None;
                }
            }
        }
        stats
    }
}

fn ciphertext_blob(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Blob {
        #[serde(rename = "CiphertextBlob")]
        ciphertext_blob: String,
    }
    serde_json::from_slice::<Blob>(body)
        .ok()
        .map(|b| b.ciphertext_blob)
}

/// Runs one phase on all workers and gives them back with the merged stats.
pub async fn run_phase(
    workers: Vec<Worker>,
    plan: Arc<Plan>,
    spec: PhaseSpec,
) -> Result<(Vec<Worker>, PhaseStats)> {
    let control = Arc::new(Control {
        stop: AtomicBool::new(false),
        issued: AtomicU64::new(0),
        limit: match spec.stop {
            Stop::Requests(n) => Some(n),
            Stop::After(_) => None,
        },
    });
    let mut tasks = Vec::with_capacity(workers.len());
    for mut worker in workers {
        let plan = plan.clone();
        let control = control.clone();
        tasks.push(tokio::spawn(async move {
            let stats = worker.run(&plan, spec, &control).await;
            (worker, stats)
        }));
    }
    if let Stop::After(duration) = spec.stop {
        tokio::time::sleep(duration).await;
        control.stop.store(true, Ordering::Relaxed);
    }
    let mut workers = Vec::with_capacity(tasks.len());
    let mut total = PhaseStats::new();
    for task in tasks {
        let (worker, stats) = task.await.context("worker task panicked")?;
        workers.push(worker);
        total.merge(stats);
    }
    Ok((workers, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Endpoint;

    fn plan(mix: &str) -> Plan {
        plan_for(mix, KeySpec::SymmetricDefault)
    }

    fn plan_for(mix: &str, spec: KeySpec) -> Plan {
        let endpoint = Endpoint {
            url: "http://127.0.0.1:1".into(),
            authority: "127.0.0.1:1".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        let signer = Signer::new(&endpoint, "AKID", "secret", "us-east-1");
        let mut plan = Plan::new(
            vec![NodeTarget {
                signer,
                addr: endpoint.addr,
            }],
            mix.parse().unwrap(),
            "key\"1",
            spec,
            Duration::from_secs(1),
        );
        plan.pool = vec!["AAAA".into()];
        plan
    }

    #[test]
    fn bodies_are_json() {
        let plan = plan("Encrypt");
        let mut rng = fastrand::Rng::with_seed(1);
        for op in Op::ALL {
            let body = plan.body(op, &mut rng);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            match op {
                Op::Decrypt => assert_eq!(v["CiphertextBlob"], "AAAA"),
                _ => assert_eq!(v["KeyId"], "key\"1"),
            }
            if op == Op::Encrypt {
                let pt = base64::engine::general_purpose::STANDARD
                    .decode(v["Plaintext"].as_str().unwrap())
                    .unwrap();
                assert_eq!(pt.len(), 32);
            }
        }
    }

    #[test]
    fn sign_and_mac_bodies() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut rng = fastrand::Rng::with_seed(2);
        for (spec, alg) in [
            (KeySpec::EccNistP256, "ECDSA_SHA_256"),
            (KeySpec::Rsa2048, "RSASSA_PSS_SHA_256"),
            (KeySpec::MlDsa65, "ML_DSA_SHAKE_256"),
        ] {
            let plan = plan_for("Sign", spec);
            let body = plan.body(Op::Sign, &mut rng);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["KeyId"], "key\"1");
            assert_eq!(v["MessageType"], "RAW");
            assert_eq!(v["SigningAlgorithm"], alg, "{spec}");
            let message = b64.decode(v["Message"].as_str().unwrap()).unwrap();
            assert_eq!(message.len(), keys::MESSAGE_BYTES);
            assert_eq!(v.as_object().unwrap().len(), 4, "{v}");
        }
        let plan = plan_for("GenerateMac", KeySpec::Hmac256);
        let one = plan.body(Op::GenerateMac, &mut rng);
        let v: serde_json::Value = serde_json::from_slice(&one).unwrap();
        assert_eq!(v["KeyId"], "key\"1");
        assert_eq!(v["MacAlgorithm"], "HMAC_SHA_256");
        assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
        let message = b64.decode(v["Message"].as_str().unwrap()).unwrap();
        assert_eq!(message.len(), 256);
        // A fresh message each request.
        assert_ne!(plan.body(Op::GenerateMac, &mut rng), one);
    }

    #[test]
    fn merges_stats() {
        let mut a = PhaseStats::new();
        a.op(Op::Decrypt).ok = 2;
        a.op(Op::Decrypt).latency.record(1000).unwrap();
        a.api_errors.insert("ThrottlingException".into(), 1);
        *a.node(0) += 2;
        let mut b = PhaseStats::new();
        b.op(Op::Decrypt).ok = 3;
        b.op(Op::Decrypt).latency.record(3000).unwrap();
        b.op(Op::Encrypt).ok = 1;
        b.transport_error(Some(Op::Encrypt), TransportError::Timeout);
        b.api_errors.insert("ThrottlingException".into(), 2);
        *b.node(1) += 8;
        a.merge(b);
        assert_eq!(a.per_node, [2, 8]);
        assert_eq!(a.node_requests(1), 8);
        assert_eq!(a.node_requests(5), 0);
        assert_eq!(a.ok(), 6);
        assert_eq!(a.errors(), 4);
        assert_eq!(a.requests(), 10);
        assert_eq!(a.api_errors["ThrottlingException"], 3);
        assert_eq!(a.transport_errors["timeout"], 1);
        assert_eq!(a.latency().len(), 2);
        assert_eq!(a.op(Op::Encrypt).errors, 1);
    }

    #[test]
    fn extracts_ciphertext_blob() {
        assert_eq!(
            ciphertext_blob(br#"{"CiphertextBlob":"QUJD","KeyId":"k"}"#).as_deref(),
            Some("QUJD")
        );
        assert_eq!(ciphertext_blob(br#"{"KeyId":"k"}"#), None);
    }

    #[test]
    fn workers_spread_round_robin() {
        let bound: Vec<usize> = (0..16).map(|i| node_of(i, 2)).collect();
        assert_eq!(bound.iter().filter(|&&n| n == 0).count(), 8);
        assert_eq!(bound.iter().filter(|&&n| n == 1).count(), 8);
        assert_eq!(&bound[..4], [0, 1, 0, 1]);
        let three: Vec<usize> = (0..5).map(|i| node_of(i, 3)).collect();
        assert_eq!(three, [0, 1, 2, 0, 1]);
        assert!((0..4).all(|i| node_of(i, 1) == 0));
    }

    #[test]
    fn tickets_stop_at_the_limit() {
        let control = Control {
            stop: AtomicBool::new(false),
            issued: AtomicU64::new(0),
            limit: Some(3),
        };
        assert_eq!((0..10).filter(|_| control.next_ticket()).count(), 3);
        let control = Control {
            stop: AtomicBool::new(true),
            issued: AtomicU64::new(0),
            limit: None,
        };
        assert!(!control.next_ticket());
    }
}
