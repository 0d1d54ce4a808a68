//! The numbers of a run and how they are shown.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::Counts;
use crate::raw::RawOp;

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// From a histogram of nanoseconds.
    pub fn from_nanos(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| round2(ns as f64 / 1000.0);
        Latency {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p99_9: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: round2(h.mean() / 1000.0),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One operation's share of a row.
#[derive(Clone, Debug, Serialize)]
pub struct OpRow {
    pub requests: u64,
    pub errors: u64,
    pub latency_us: Latency,
}

/// CPU use of one process over the measured window.
#[derive(Clone, Debug, Serialize)]
pub struct CpuUse {
    /// utime + stime delta, in clock ticks.
    pub ticks: u64,
    /// ticks × 1e6 / CLK_TCK / requests.
    pub us_per_request: f64,
    /// CPU seconds per wall-clock second (1.0 = one core busy).
    pub cores: f64,
}

impl CpuUse {
    pub fn new(ticks: u64, clk_tck: u64, requests: u64, seconds: f64) -> CpuUse {
        let cpu_seconds = ticks as f64 / clk_tck as f64;
        CpuUse {
            ticks,
            us_per_request: if requests == 0 {
                0.0
            } else {
                round2(cpu_seconds * 1e6 / requests as f64)
            },
            cores: if seconds > 0.0 {
                round2(cpu_seconds / seconds)
            } else {
                0.0
            },
        }
    }
}

/// The server's side of a row.
#[derive(Clone, Debug, Serialize)]
pub struct ServerRow {
    pub cpu: CpuUse,
    pub rss_kib_before: u64,
    pub rss_kib_after: u64,
}

/// One keywarden node's share of a multi-node row.
#[derive(Clone, Debug, Serialize)]
pub struct NodeRow {
    /// 1-based, in start order.
    pub node: usize,
    pub pid: u32,
    /// Requests sent to this node in the window; `cpu.us_per_request` is
    /// per these.
    pub requests: u64,
    pub cpu: CpuUse,
    pub rss_kib_before: u64,
    pub rss_kib_after: u64,
}

/// PostgreSQL's side of a row: the postmaster and all its descendants.
#[derive(Clone, Debug, Serialize)]
pub struct PostgresRow {
    pub postmaster_pid: u32,
    /// utime+stime+cutime+cstime over the process tree, per request of the
    /// whole row (all nodes).
    pub cpu: CpuUse,
    /// Live processes in the tree at the start and the end of the window.
    pub processes_before: usize,
    pub processes_after: usize,
}

/// One concurrency level's measured window.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub concurrency: usize,
    /// Requests issued in the window (successful + failed).
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub duration_s: f64,
    /// requests / duration_s.
    pub requests_per_s: f64,
    /// Successful requests only.
    pub latency_us: Latency,
    pub ops: BTreeMap<String, OpRow>,
    /// HTTP error responses by `__type`.
    pub errors_by_type: Counts,
    /// Requests that got no response, by kind.
    pub transport_errors: Counts,
    pub reconnects: u64,
    pub warmup_requests: u64,
    pub warmup_errors: u64,
    /// Present when the server's pid is known. With several nodes: the sum
    /// over all of them (CPU ticks and RSS), per request of the row.
    pub server: Option<ServerRow>,
    /// With several nodes: each node's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeRow>>,
    /// When the postmaster's pid is known (--spawn-postgres, --postgres-pid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresRow>,
    /// `server` plus `postgres`: what a request costs the whole service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keywarden_plus_postgres: Option<CpuUse>,
    /// With Sign or GenerateMac: server CPU per request minus the raw
    /// library operation's CPU (`Report::raw`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_overhead_us_per_request: Option<f64>,
    pub generator: CpuUse,
    /// CPU time used on the whole machine in the window, in cores.
    pub machine_busy_cores: f64,
    /// Of that, what neither the server (all nodes), PostgreSQL (when its
    /// pid is known) nor the generator used (other processes, interrupts,
    /// the hypervisor's steal); `null` without a server pid. Above ~0.05 the
    /// machine was not quiet.
    pub other_load_cores: Option<f64>,
    /// One error message seen, if any.
    pub sample_error: Option<String>,
}

/// Where the load went.
#[derive(Clone, Debug, Serialize)]
pub struct TargetInfo {
    /// `spawn`, `spawn-baseline` or `endpoint`.
    pub kind: String,
    pub endpoint: String,
    /// The command that started the server, when the bench started it.
    pub server_command: Option<String>,
    pub server_pid: Option<u32>,
    pub key_id: String,
    pub region: String,
    /// With several nodes: every node (the first is `endpoint`/`server_pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeInfo>>,
    /// With --database-url or --spawn-postgres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseInfo>,
}

/// One spawned keywarden node.
#[derive(Clone, Debug, Serialize)]
pub struct NodeInfo {
    pub endpoint: String,
    pub pid: u32,
    pub server_command: String,
}

/// The PostgreSQL database the nodes share.
#[derive(Clone, Debug, Serialize)]
pub struct DatabaseInfo {
    /// The URL without password or query.
    pub url: String,
    /// Whether the bench started the cluster (--spawn-postgres).
    pub spawned: bool,
    /// Server settings of a cluster the bench started (keywarden-testpg's,
    /// tuned for tests: no fsync).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<String>,
    pub postmaster_pid: Option<u32>,
    pub postgres_cpus_allowed: Option<String>,
}

/// The whole run: what `--json FILE` holds.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub mix: String,
    /// The benchmark key's spec (`--key-spec`).
    pub key_spec: String,
    /// With Sign or GenerateMac in the mix: the same operation through
    /// keywarden-crypto in the generator, measured after the load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawOp>,
    pub target: TargetInfo,
    pub clk_tck: u64,
    pub generator_cpus_allowed: String,
    pub server_cpus_allowed: Option<String>,
    /// `apart`, `overlapping`, `shared` or `unknown`.
    pub pinning: String,
    pub generator_threads: usize,
    pub warmup_s: f64,
    /// `{"duration_s": x}` or `{"requests": n}` per level.
    pub stop: serde_json::Value,
    pub decrypt_pool_size: usize,
    pub rows: Vec<Row>,
    /// Failed requests over all rows, warm-ups and the pool fill included.
    pub total_errors: u64,
    pub server_exit: Option<String>,
}

/// Quotes a command-line argument for a POSIX shell when needed.
pub fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if safe {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

pub fn command_line(args: impl IntoIterator<Item = String>) -> String {
    args.into_iter()
        .map(|a| shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

pub const TABLE_HEADER: &str = "  conc   requests  errors    secs      req/s    p50 µs    p90 µs    p99 µs  p99.9 µs    max µs | srv µs/req srv cores | gen µs/req gen cores";

pub const RAW_HEADER: &str = "  conc | srv µs/req  raw µs/op  overhead µs/req |      req/s";

/// One line of the raw comparison: a level's server CPU per request beside
/// the raw operation's CPU.
pub fn raw_row(r: &Row, raw: &RawOp) -> String {
    let (srv, overhead) = match (&r.server, r.server_overhead_us_per_request) {
        (Some(srv), Some(o)) => (fmt_f(srv.cpu.us_per_request, 10, 1), fmt_f(o, 16, 1)),
        _ => (format!("{:>10}", "n/a"), format!("{:>16}", "n/a")),
    };
    format!(
        "{:>6} | {srv} {} {overhead} | {}",
        r.concurrency,
        fmt_f(raw.us_per_op, 10, 2),
        fmt_f(r.requests_per_s, 10, 1)
    )
}

fn fmt_f(x: f64, width: usize, decimals: usize) -> String {
    format!("{x:>width$.decimals$}")
}

/// One table line.
pub fn table_row(r: &Row) -> String {
    let l = &r.latency_us;
    let mut s = format!(
        "{:>6} {:>10} {:>7} {} {} {} {} {} {} {} |",
        r.concurrency,
        r.requests,
        r.errors,
        fmt_f(r.duration_s, 7, 2),
        fmt_f(r.requests_per_s, 10, 1),
        fmt_f(l.p50, 9, 1),
        fmt_f(l.p90, 9, 1),
        fmt_f(l.p99, 9, 1),
        fmt_f(l.p99_9, 9, 1),
        fmt_f(l.max, 9, 1),
    );
    match &r.server {
        Some(srv) => {
            let _ = write!(
                s,
                " {} {} |",
                fmt_f(srv.cpu.us_per_request, 10, 1),
                fmt_f(srv.cpu.cores, 9, 2)
            );
        }
        None => s.push_str("        n/a       n/a |"),
    }
    let _ = write!(
        s,
        " {} {}",
        fmt_f(r.generator.us_per_request, 10, 1),
        fmt_f(r.generator.cores, 9, 2)
    );
    s
}

/// Cores of other activity above which a row is flagged.
pub const OTHER_LOAD_WARNING: f64 = 0.05;

/// Whose CPU time the machine figure subtracts.
fn accounted(r: &Row) -> &'static str {
    if r.postgres.is_some() {
        "server, postgres and generator"
    } else {
        "server and generator"
    }
}

/// The lines under the table for one row: per operation, errors, memory.
pub fn row_details(r: &Row, multi_op: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "  concurrency {}:", r.concurrency);
    for n in r.nodes.iter().flatten() {
        let _ = writeln!(
            s,
            "    node {} (pid {}): {:>9} requests  {:>8.1} µs/req  {:.2} cores  RSS {:.1} MiB after",
            n.node,
            n.pid,
            n.requests,
            n.cpu.us_per_request,
            n.cpu.cores,
            n.rss_kib_after as f64 / 1024.0
        );
    }
    if let Some(pg) = &r.postgres {
        let _ = writeln!(
            s,
            "    postgres (postmaster {} + descendants, {} processes at the end): {:.1} µs/req, {:.2} cores, {} ticks",
            pg.postmaster_pid, pg.processes_after, pg.cpu.us_per_request, pg.cpu.cores, pg.cpu.ticks
        );
    }
    if let Some(total) = &r.keywarden_plus_postgres {
        let _ = writeln!(
            s,
            "    keywarden + postgres: {:.1} µs/req, {:.2} cores",
            total.us_per_request, total.cores
        );
    }
    if multi_op {
        for (op, o) in &r.ops {
            let _ = writeln!(
                s,
                "    {op:<32} {:>9} requests {:>6} errors   p50 {:>9.1} µs   p99 {:>9.1} µs   max {:>9.1} µs",
                o.requests, o.errors, o.latency_us.p50, o.latency_us.p99, o.latency_us.max
            );
        }
    }
    if r.errors == 0 {
        let _ = writeln!(s, "    errors: none");
    } else {
        for (kind, n) in &r.errors_by_type {
            let _ = writeln!(s, "    error {kind}: {n}");
        }
        for (kind, n) in &r.transport_errors {
            let _ = writeln!(s, "    transport error {kind}: {n}");
        }
        if let Some(e) = &r.sample_error {
            let _ = writeln!(s, "    e.g. {e}");
        }
    }
    if r.reconnects > 0 {
        let _ = writeln!(s, "    reconnects: {}", r.reconnects);
    }
    if r.warmup_errors > 0 {
        let _ = writeln!(
            s,
            "    warm-up: {} requests, {} errors",
            r.warmup_requests, r.warmup_errors
        );
    }
    if let Some(srv) = &r.server {
        let _ = writeln!(
            s,
            "    server: {} CPU ticks in the window; RSS {:.1} MiB before, {:.1} MiB after",
            srv.cpu.ticks,
            srv.rss_kib_before as f64 / 1024.0,
            srv.rss_kib_after as f64 / 1024.0
        );
    }
    match r.other_load_cores {
        // Clock-tick figures over a short window are noise.
        _ if r.duration_s < 1.0 => {}
        Some(other) if other > OTHER_LOAD_WARNING => {
            let _ = writeln!(
                s,
                "    WARNING: other load on the machine: {other:.2} cores busy outside {} (machine total {:.2}); latency and throughput are disturbed",
                accounted(r),
                r.machine_busy_cores
            );
        }
        Some(other) => {
            let _ = writeln!(
                s,
                "    machine: {:.2} cores busy, {other:.2} outside {}",
                r.machine_busy_cores,
                accounted(r)
            );
        }
        None => {
            let _ = writeln!(s, "    machine: {:.2} cores busy", r.machine_busy_cores);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("--mix"), "--mix");
        assert_eq!(
            shell_quote("GenerateDataKey=1,Decrypt=1"),
            "GenerateDataKey=1,Decrypt=1"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(
            command_line([
                "keywarden-bench".to_owned(),
                "--json".to_owned(),
                "x y".to_owned()
            ]),
            "keywarden-bench --json 'x y'"
        );
    }

    #[test]
    fn cpu_per_request() {
        // 250 ticks at 100/s = 2.5 CPU s over 10,000 requests = 250 µs each.
        let c = CpuUse::new(250, 100, 10_000, 5.0);
        assert_eq!(c.us_per_request, 250.0);
        assert_eq!(c.cores, 0.5);
        assert_eq!(CpuUse::new(5, 100, 0, 0.0).us_per_request, 0.0);
    }

    #[test]
    fn latency_from_histogram() {
        let mut h = crate::load::new_histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let l = Latency::from_nanos(&h);
        assert!((l.p50 - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99 - 990.0).abs() < 1.5, "{l:?}");
        assert!((l.max - 1000.0).abs() < 1.0, "{l:?}");
        assert_eq!(
            Latency::from_nanos(&crate::load::new_histogram()),
            Latency::default()
        );
    }
}
