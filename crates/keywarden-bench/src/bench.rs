//! A benchmark run: set up the target, fill the Decrypt pool, then warm up
//! and measure at each concurrency level.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keywarden_core::key_spec::KeySpec;
use tempfile::TempDir;
use zeroize::Zeroizing;

use crate::client::{call_once, Endpoint, Signer};
use crate::database;
use crate::keys;
use crate::load::{open_workers, run_phase, NodeTarget, PhaseSpec, PhaseStats, Plan, Stop};
use crate::mix::Op;
use crate::procfs::{self, Pid};
use crate::raw;
use crate::report::{
    self, CpuUse, DatabaseInfo, Latency, NodeInfo, NodeRow, OpRow, PostgresRow, Report, Row,
    ServerRow, TargetInfo,
};
use crate::softhsm;
use crate::spawn::{self, ServerProcess};
use crate::RunArgs;

/// Key id sent when no key was created or given.
const PLACEHOLDER_KEY: &str = "alias/keywarden-bench";
const DEFAULT_DURATION_S: f64 = 10.0;
/// A sanity limit for --nodes.
const MAX_NODES: usize = 64;

/// One server the load goes to.
struct Node {
    endpoint: Endpoint,
    signer: Signer,
    /// For CPU time and memory; unknown for an --endpoint without
    /// --server-pid.
    pid: Option<u32>,
}

/// The PostgreSQL database of a `--database-url` or `--spawn-postgres` run.
struct Database {
    /// Without password or query.
    url_redacted: String,
    spawned: bool,
    /// The server settings the bench chose, when it started the cluster.
    settings: Option<&'static str>,
    /// The cluster of --spawn-postgres; dropping it stops it.
    _cluster: Option<database::SpawnedPostgres>,
}

/// The database --spawn-postgres creates.
const SPAWNED_DATABASE: &str = "keywarden_bench";

/// What keywarden-testpg starts its clusters with (tuned for tests, not
/// durability); said in the report so its numbers are read with it.
const TESTPG_SETTINGS: &str =
    "fsync=off synchronous_commit=off full_page_writes=off shared_buffers=16MB max_connections=300";

/// The server(s) under load.
struct Target {
    kind: &'static str,
    /// At least one; the first is the one setup requests go to.
    nodes: Vec<Node>,
    key_id: String,
    /// The postmaster, for PostgreSQL's CPU time.
    postgres_pid: Option<u32>,
    /// Dropped (stopped) before the database and the data dir below.
    servers: Vec<ServerProcess>,
    database: Option<Database>,
    _data_dir: Option<TempDir>,
}

impl Target {
    /// The pids of all nodes, when every one is known.
    fn node_pids(&self) -> Option<Vec<u32>> {
        self.nodes.iter().map(|n| n.pid).collect()
    }
}

fn check_args(args: &RunArgs) -> Result<()> {
    let positive = |name: &str, x: f64| -> Result<()> {
        if !(x.is_finite() && x > 0.0) {
            bail!("{name} must be a positive number of seconds");
        }
        Ok(())
    };
    if let Some(d) = args.duration {
        positive("--duration", d)?;
    }
    positive("--timeout", args.timeout)?;
    if !(args.warmup.is_finite() && args.warmup >= 0.0) {
        bail!("--warmup must be zero or a positive number of seconds");
    }
    if args.requests == Some(0) {
        bail!("--requests must be at least 1");
    }
    if args.concurrency == 0 || args.sweep.iter().flatten().any(|&c| c == 0) {
        bail!("concurrency levels must be at least 1");
    }
    if args.sweep.as_ref().is_some_and(|s| s.is_empty()) {
        bail!("--sweep needs at least one level");
    }
    if args.server_cpus.is_some() && args.spawn.is_none() && !args.spawn_baseline {
        bail!("--server-cpus only applies with --spawn or --spawn-baseline (pin an --endpoint server yourself)");
    }
    if args.hsm && !(1..=64).contains(&args.hsm_sessions) {
        bail!("--hsm-sessions must be 1-64 (keywarden's limit for a custom key store)");
    }
    if !(1..=MAX_NODES).contains(&args.nodes) {
        bail!("--nodes must be 1-{MAX_NODES}");
    }
    let database = args.database_url.is_some() || args.spawn_postgres;
    if (args.nodes > 1 || database) && args.spawn.is_none() {
        bail!("--nodes, --database-url and --spawn-postgres apply only with --spawn");
    }
    if args.nodes > 1 && !database {
        bail!(
            "--nodes {} needs a database the nodes share: --database-url URL or --spawn-postgres",
            args.nodes
        );
    }
    if let Some(url) = &args.database_url {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!(
                "--database-url {}: expected postgres://user@host:port/db",
                database::redact_url(url)
            );
        }
    }
    if args.postgres_pid.is_some() && args.spawn.is_some() && args.database_url.is_none() {
        bail!("--postgres-pid names the postmaster of the --database-url database (or of an --endpoint server's)");
    }
    if !(args.raw_duration.is_finite() && args.raw_duration >= 0.0) {
        bail!("--raw-duration must be zero or a positive number of seconds");
    }
    keys::check_mix(args.key_spec, &args.mix)?;
    if args.mix.contains(Op::Decrypt) && args.pool_size == 0 {
        bail!("the mix has Decrypt, so --pool-size must be at least 1");
    }
    Ok(())
}

fn keywarden_log_env() -> String {
    std::env::var("KEYWARDEN_LOG").unwrap_or_else(|_| "warn".to_owned())
}

/// The custom key store id `--hsm` configures.
const HSM_STORE_ID: &str = "cks-bench";

/// CreateKey: a software key, or with `store` an HSM key in that custom
/// key store; with `policy`, that key policy (else the default one); of
/// `spec` with the usage the bench gives that spec.
async fn create_key(
    endpoint: &Endpoint,
    signer: &Signer,
    timeout: Duration,
    store: Option<&str>,
    policy: Option<&str>,
    spec: KeySpec,
) -> Result<String> {
    let mut body = match store {
        None => serde_json::json!({"Description": "keywarden-bench"}),
        Some(id) => serde_json::json!({
            "Description": "keywarden-bench",
            "Origin": "AWS_CLOUDHSM",
            "CustomKeyStoreId": id,
        }),
    };
    if let Some(policy) = policy {
        body["Policy"] = serde_json::Value::String(policy.to_owned());
    }
    if !spec.is_symmetric_default() {
        let usage = keys::key_usage(spec)
            .with_context(|| format!("the bench creates no key of spec {spec}"))?;
        body["KeySpec"] = spec.as_str().into();
        body["KeyUsage"] = usage.as_str().into();
    }
    let v = call_once(endpoint, signer, "TrentService.CreateKey", &body, timeout).await?;
    v["KeyMetadata"]["KeyId"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("CreateKey answered without KeyMetadata.KeyId: {v}"))
}

/// Starts the keywarden node(s) of `--spawn` on a fresh data dir (and
/// database), creates an account and a key.
async fn setup_spawn(args: &RunArgs, program: PathBuf, timeout: Duration) -> Result<Target> {
    if !program.exists() {
        bail!(
            "{} does not exist: build it (cargo build --release --bin keywarden) or give --spawn PATH",
            program.display()
        );
    }
    let data_dir = tempfile::Builder::new()
        .prefix("keywarden-bench-")
        .tempdir()
        .context("creating a temporary data dir")?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(data_dir.path(), std::fs::Permissions::from_mode(0o700))
            .context("making the data dir private")?;
    }
    let (database_url, database, postgres_pid) = if args.spawn_postgres {
        eprintln!("starting a PostgreSQL cluster (keywarden-testpg)");
        let pg = database::spawn_postgres(SPAWNED_DATABASE)?;
        let url = pg.url.clone();
        let pid = pg.postmaster_pid;
        let database = Database {
            url_redacted: database::redact_url(&url),
            spawned: true,
            settings: Some(TESTPG_SETTINGS),
            _cluster: Some(pg),
        };
        (Some(url), Some(database), Some(pid))
    } else if let Some(url) = &args.database_url {
        if let Some(pid) = args.postgres_pid {
            procfs::tree_cpu(pid)
                .with_context(|| format!("--postgres-pid {pid}: cannot read its CPU time"))?;
        }
        let database = Database {
            url_redacted: database::redact_url(url),
            spawned: false,
            settings: None,
            _cluster: None,
        };
        (
            Some(Zeroizing::new(url.clone())),
            Some(database),
            args.postgres_pid,
        )
    } else {
        (None, None, None)
    };

    let log = keywarden_log_env();
    let server_args: Vec<std::ffi::OsString> = vec![
        "serve".into(),
        "--data-dir".into(),
        data_dir.path().into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--region".into(),
        args.region.clone().into(),
    ];
    // The URL goes in the environment (out of `ps` and of the printed
    // command); without one, an inherited variable must not turn an
    // embedded run into a PostgreSQL one.
    let mut envs: Vec<(&str, Option<String>)> = vec![
        ("KEYWARDEN_LOG", Some(log)),
        (
            database::URL_ENV,
            database_url.as_ref().map(|u| u.as_str().to_owned()),
        ),
    ];
    // The bench measures the server, not the per-account quotas
    // (docs/limits.md): one account drives every node at full speed.
    let mut config_text = String::from("[limits]\ncrypto_per_second = 0\nmanage_per_second = 0\n");
    let store = if args.hsm {
        let token = softhsm::Token::create(&data_dir.path().join("softhsm"))?;
        config_text.push_str(&token.keywarden_config(HSM_STORE_ID, args.hsm_sessions));
        envs.push((
            "SOFTHSM2_CONF",
            Some(token.conf.to_string_lossy().into_owned()),
        ));
        Some(HSM_STORE_ID)
    } else {
        None
    };
    let envs: Vec<(&str, Option<&str>)> = envs.iter().map(|(k, v)| (*k, v.as_deref())).collect();
    // One after the other: the first node creates the root key in the data
    // dir (and the schema), the others start on the same dir and so the same
    // root key. Each node has its own configuration file, for its own audit
    // file (one audit file has one writer).
    let mut servers = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes {
        let config = data_dir
            .path()
            .join(format!("keywarden-node{}.toml", i + 1));
        let audit = data_dir.path().join(format!("audit-node{}.log", i + 1));
        let text = format!(
            "{config_text}\n[audit]\npath = {}\n",
            // A JSON string is a valid TOML basic string.
            serde_json::Value::from(audit.to_string_lossy())
        );
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let mut node_args = server_args.clone();
        node_args.extend(["--config".into(), config.into()]);
        let server = ServerProcess::start(&program, &node_args, args.server_cpus.as_deref(), &envs)
            .with_context(|| format!("starting node {} of {}", i + 1, args.nodes))?;
        servers.push(server);
    }
    let issued = spawn::create_account(
        &program,
        data_dir.path(),
        &args.region,
        database_url.as_ref().map(|u| u.as_str()),
    )?;
    let mut nodes = Vec::with_capacity(servers.len());
    for server in &servers {
        let endpoint = Endpoint::resolve(&server.url).await?;
        let signer = Signer::new(
            &endpoint,
            &issued.access_key_id,
            &issued.secret_access_key,
            &args.region,
        );
        nodes.push(Node {
            endpoint,
            signer,
            pid: Some(server.pid),
        });
    }
    // `--key-policy`: the document, with `ACCOUNT_ID` standing for the
    // account just created.
    let policy = match &args.key_policy {
        None => None,
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading --key-policy {}", path.display()))?
                .replace("ACCOUNT_ID", issued.account_id.as_str()),
        ),
    };
    let key_id = create_key(
        &nodes[0].endpoint,
        &nodes[0].signer,
        timeout,
        store,
        policy.as_deref(),
        args.key_spec,
    )
    .await
    .with_context(|| format!("creating a key in account {}", issued.account_id))?;
    Ok(Target {
        kind: if store.is_some() {
            "spawn-hsm"
        } else {
            "spawn"
        },
        nodes,
        key_id,
        postgres_pid,
        servers,
        database,
        _data_dir: Some(data_dir),
    })
}

async fn setup_target(args: &RunArgs, timeout: Duration) -> Result<Target> {
    if let Some(path) = &args.spawn {
        let program: PathBuf = match path {
            Some(p) => p.clone(),
            None => spawn::default_keywarden_path()?,
        };
        setup_spawn(args, program, timeout).await
    } else if args.spawn_baseline {
        let exe = std::env::current_exe().context("locating keywarden-bench")?;
        let server = ServerProcess::start(
            &exe,
            &[
                "baseline-server".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
            ],
            args.server_cpus.as_deref(),
            &[],
        )?;
        let endpoint = Endpoint::resolve(&server.url).await?;
        // The baseline checks nothing, but requests are signed all the same so
        // the generator does the same work as against keywarden.
        let signer = Signer::new(
            &endpoint,
            "AKIDKEYWARDENBENCH00",
            "keywarden-bench-baseline-secret",
            &args.region,
        );
        Ok(Target {
            kind: "spawn-baseline",
            nodes: vec![Node {
                endpoint,
                signer,
                pid: Some(server.pid),
            }],
            key_id: args
                .key_id
                .clone()
                .unwrap_or_else(|| PLACEHOLDER_KEY.to_owned()),
            postgres_pid: None,
            servers: vec![server],
            database: None,
            _data_dir: None,
        })
    } else {
        let url = args
            .endpoint
            .as_deref()
            .context("give --spawn, --spawn-baseline or --endpoint")?;
        let (Some(akid), Some(secret)) = (&args.access_key_id, &args.secret_access_key) else {
            bail!("--endpoint needs --access-key-id and --secret-access-key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
        };
        let endpoint = Endpoint::resolve(url).await?;
        let signer = Signer::new(&endpoint, akid, secret, &args.region);
        let key_id = match (&args.key_id, args.no_create_key) {
            (Some(k), _) => k.clone(),
            (None, true) => PLACEHOLDER_KEY.to_owned(),
            (None, false) => {
                create_key(&endpoint, &signer, timeout, None, None, args.key_spec).await?
            }
        };
        if let Some(pid) = args.server_pid {
            procfs::cpu_ticks(Pid::Id(pid))
                .with_context(|| format!("--server-pid {pid}: cannot read its CPU time"))?;
        }
        if let Some(pid) = args.postgres_pid {
            procfs::tree_cpu(pid)
                .with_context(|| format!("--postgres-pid {pid}: cannot read its CPU time"))?;
        }
        Ok(Target {
            kind: "endpoint",
            nodes: vec![Node {
                endpoint,
                signer,
                pid: args.server_pid,
            }],
            key_id,
            postgres_pid: args.postgres_pid,
            servers: Vec::new(),
            database: None,
            _data_dir: None,
        })
    }
}

/// CPU ticks and memory at one instant.
struct Snapshot {
    at: Instant,
    generator_ticks: u64,
    machine_busy: u64,
    /// `(ticks, rss KiB)` of each node, when every node's pid is known.
    nodes: Option<Vec<(u64, u64)>>,
    postgres: Option<procfs::TreeCpu>,
}

fn snapshot(node_pids: Option<&[u32]>, postgres_pid: Option<u32>) -> Result<Snapshot> {
    let nodes = match node_pids {
        Some(pids) => {
            let mut nodes = Vec::with_capacity(pids.len());
            for &pid in pids {
                let ticks = procfs::cpu_ticks(Pid::Id(pid))
                    .with_context(|| format!("server pid {pid} (did it exit?)"))?
                    .total();
                let rss = procfs::rss_kib(Pid::Id(pid))?;
                nodes.push((ticks, rss));
            }
            Some(nodes)
        }
        None => None,
    };
    let postgres = match postgres_pid {
        Some(pid) => Some(
            procfs::tree_cpu(pid)
                .with_context(|| format!("postmaster pid {pid} (did PostgreSQL stop?)"))?,
        ),
        None => None,
    };
    Ok(Snapshot {
        generator_ticks: procfs::cpu_ticks(Pid::SelfProc)?.total(),
        machine_busy: procfs::machine_ticks()?.busy,
        nodes,
        postgres,
        at: Instant::now(),
    })
}

/// What the bench knows about the processes serving the load.
struct Processes<'a> {
    node_pids: Option<&'a [u32]>,
    postgres_pid: Option<u32>,
}

fn make_row(
    concurrency: usize,
    stats: &PhaseStats,
    warmup: Option<&PhaseStats>,
    (before, after): (&Snapshot, &Snapshot),
    processes: &Processes<'_>,
    clk_tck: u64,
) -> Row {
    let seconds = after.at.duration_since(before.at).as_secs_f64();
    let requests = stats.requests();
    let node_deltas: Option<Vec<(u64, u64, u64)>> = match (&before.nodes, &after.nodes) {
        (Some(b), Some(a)) if a.len() == b.len() => Some(
            b.iter()
                .zip(a)
                .map(|(&(t0, rss0), &(t1, rss1))| (t1.saturating_sub(t0), rss0, rss1))
                .collect(),
        ),
        _ => None,
    };
    // One node: exactly the single server's figures, as always. Several:
    // their sum.
    let server = node_deltas.as_ref().map(|d| ServerRow {
        cpu: CpuUse::new(d.iter().map(|x| x.0).sum(), clk_tck, requests, seconds),
        rss_kib_before: d.iter().map(|x| x.1).sum(),
        rss_kib_after: d.iter().map(|x| x.2).sum(),
    });
    let nodes = match (&node_deltas, processes.node_pids) {
        (Some(d), Some(pids)) if d.len() > 1 => Some(
            d.iter()
                .zip(pids)
                .enumerate()
                .map(|(i, (&(ticks, rss0, rss1), &pid))| {
                    let node_requests = stats.node_requests(i);
                    NodeRow {
                        node: i + 1,
                        pid,
                        requests: node_requests,
                        cpu: CpuUse::new(ticks, clk_tck, node_requests, seconds),
                        rss_kib_before: rss0,
                        rss_kib_after: rss1,
                    }
                })
                .collect(),
        ),
        _ => None,
    };
    let postgres = match (before.postgres, after.postgres, processes.postgres_pid) {
        (Some(b), Some(a), Some(pid)) => Some(PostgresRow {
            postmaster_pid: pid,
            cpu: CpuUse::new(a.ticks.saturating_sub(b.ticks), clk_tck, requests, seconds),
            processes_before: b.processes,
            processes_after: a.processes,
        }),
        _ => None,
    };
    let keywarden_plus_postgres = match (&server, &postgres) {
        (Some(srv), Some(pg)) => Some(CpuUse::new(
            srv.cpu.ticks + pg.cpu.ticks,
            clk_tck,
            requests,
            seconds,
        )),
        _ => None,
    };
    let ops = stats
        .per_op
        .iter()
        .map(|(op, s)| {
            (
                op.name().to_owned(),
                OpRow {
                    requests: s.ok + s.errors,
                    errors: s.errors,
                    latency_us: Latency::from_nanos(&s.latency),
                },
            )
        })
        .collect();
    let generator_ticks = after.generator_ticks.saturating_sub(before.generator_ticks);
    let machine_ticks = after.machine_busy.saturating_sub(before.machine_busy);
    let cores = |ticks: u64| {
        if seconds > 0.0 {
            (ticks as f64 / clk_tck as f64 / seconds * 100.0).round() / 100.0
        } else {
            0.0
        }
    };
    let postgres_ticks = postgres.as_ref().map_or(0, |pg| pg.cpu.ticks);
    let other_load_cores = server.as_ref().map(|srv| {
        cores(machine_ticks.saturating_sub(srv.cpu.ticks + postgres_ticks + generator_ticks))
    });
    Row {
        concurrency,
        requests,
        ok: stats.ok(),
        errors: stats.errors(),
        duration_s: (seconds * 1000.0).round() / 1000.0,
        requests_per_s: if seconds > 0.0 {
            (requests as f64 / seconds * 10.0).round() / 10.0
        } else {
            0.0
        },
        latency_us: Latency::from_nanos(&stats.latency()),
        ops,
        errors_by_type: stats.api_errors.clone(),
        transport_errors: stats.transport_errors.clone(),
        reconnects: stats.reconnects + warmup.map_or(0, |w| w.reconnects),
        warmup_requests: warmup.map_or(0, PhaseStats::requests),
        warmup_errors: warmup.map_or(0, PhaseStats::errors),
        server,
        nodes,
        postgres,
        keywarden_plus_postgres,
        server_overhead_us_per_request: None,
        generator: CpuUse::new(generator_ticks, clk_tck, requests, seconds),
        machine_busy_cores: cores(machine_ticks),
        other_load_cores,
        sample_error: stats
            .sample_error
            .clone()
            .or_else(|| warmup.and_then(|w| w.sample_error.clone())),
    }
}

/// Runs the benchmark; `Ok(false)` when --fail-on-error applies.
pub async fn main(args: RunArgs) -> Result<bool> {
    check_args(&args)?;
    tokio::select! {
        result = run(&args) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}

async fn run(args: &RunArgs) -> Result<bool> {
    let command = report::command_line(database::redact_args(std::env::args()));
    let timeout = Duration::from_secs_f64(args.timeout);
    let clk_tck = procfs::clock_ticks_per_second();
    let mut target = setup_target(args, timeout).await?;
    let node_pids = target.node_pids();
    let processes = Processes {
        node_pids: node_pids.as_deref(),
        postgres_pid: target.postgres_pid,
    };
    let server_pid = target.nodes[0].pid;

    let generator_cpus = procfs::cpus_allowed_list(Pid::SelfProc)?;
    let postgres_cpus = match target.postgres_pid {
        Some(pid) => Some(procfs::cpus_allowed_list(Pid::Id(pid))?),
        None => None,
    };
    // --server-cpus pins every node alike, so the first one stands for all.
    let server_cpus = match server_pid {
        Some(pid) => Some(procfs::cpus_allowed_list(Pid::Id(pid))?),
        None => None,
    };
    let pinning = match &server_cpus {
        Some(s) => Some(procfs::compare_affinity(&generator_cpus, s)?),
        None => None,
    };
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let levels = args.sweep.clone().unwrap_or_else(|| vec![args.concurrency]);
    let (stop, stop_json) = match (args.requests, args.duration) {
        (Some(n), _) => (Stop::Requests(n), serde_json::json!({ "requests": n })),
        (None, d) => {
            let d = d.unwrap_or(DEFAULT_DURATION_S);
            (
                Stop::After(Duration::from_secs_f64(d)),
                serde_json::json!({ "duration_s": d }),
            )
        }
    };

    println!("keywarden-bench");
    println!("command:   {command}");
    let first = &target.nodes[0];
    match (target.servers.as_slice(), first.pid) {
        ([server], Some(pid)) => println!(
            "target:    {} at {} (pid {pid}): {}",
            target.kind, first.endpoint.url, server.description
        ),
        ([], Some(pid)) => println!("target:    {} (server pid {pid})", first.endpoint.url),
        ([], None) => println!(
            "target:    {} (no server pid: no server CPU or memory figures)",
            first.endpoint.url
        ),
        (servers, _) => {
            println!(
                "target:    {}, {} nodes (each connection bound to one, round-robin):",
                target.kind,
                servers.len()
            );
            for (i, server) in servers.iter().enumerate() {
                println!(
                    "           node {} at {} (pid {}): {}",
                    i + 1,
                    server.url,
                    server.pid,
                    server.description
                );
            }
        }
    }
    if let Some(db) = &target.database {
        println!(
            "database:  PostgreSQL {} ({}); {}",
            db.url_redacted,
            if db.spawned {
                "started by the bench"
            } else {
                "given"
            },
            match (target.postgres_pid, &postgres_cpus) {
                (Some(pid), Some(cpus)) => format!(
                    "postmaster pid {pid}, cpus {cpus}{}",
                    db.settings
                        .map(|s| format!("; keywarden-testpg settings: {s}"))
                        .unwrap_or_default()
                ),
                _ => "postmaster pid unknown: no PostgreSQL CPU figures (give --postgres-pid)"
                    .to_owned(),
            }
        );
    } else if let Some(pid) = target.postgres_pid {
        println!(
            "database:  PostgreSQL postmaster pid {pid}, cpus {}",
            postgres_cpus.as_deref().unwrap_or("unknown")
        );
    }
    println!("mix:       {}", args.mix);
    println!(
        "key:       {} ({}{})",
        target.key_id,
        args.key_spec,
        keys::key_usage(args.key_spec)
            .map(|u| format!(", {u}"))
            .unwrap_or_default()
    );
    if let Some(op) = raw::raw_op(&args.mix) {
        let alg = match op {
            Op::Sign => keys::signing_algorithm(args.key_spec).map(|a| a.as_str()),
            _ => keys::mac_algorithm(args.key_spec).map(|a| a.as_str()),
        };
        println!(
            "message:   {op}: {} over a fresh random {}-byte message each request{}",
            alg.unwrap_or("?"),
            keys::MESSAGE_BYTES,
            if op == Op::Sign {
                " (MessageType RAW)"
            } else {
                ""
            }
        );
    }
    match stop {
        Stop::After(d) => println!(
            "window:    {:.3} s per level after {} s of warm-up",
            d.as_secs_f64(),
            args.warmup
        ),
        Stop::Requests(n) => println!(
            "window:    {n} requests per level after {} s of warm-up",
            args.warmup
        ),
    }
    println!(
        "cpus:      generator {generator_cpus} ({threads} runtime threads); server {}{}",
        server_cpus.as_deref().unwrap_or("unknown"),
        pinning
            .map(|p| format!(": {}", p.describe()))
            .unwrap_or_default()
    );
    println!("clock:     CLK_TCK {clk_tck}; CPU per request = (utime+stime ticks in the window) x 1e6 / CLK_TCK / requests");
    if node_pids.as_ref().is_some_and(|p| p.len() > 1) {
        println!("           srv = the sum over all nodes, per request of the whole window");
    }
    if target.postgres_pid.is_some() {
        println!("           postgres = the postmaster and its live descendants (found by ppid in /proc) with their");
        println!("           cutime+cstime, so backends that exited and were reaped in the window count too");
    }

    let mut plan = Plan::new(
        target
            .nodes
            .iter()
            .map(|n| NodeTarget {
                signer: n.signer.clone(),
                addr: n.endpoint.addr,
            })
            .collect(),
        args.mix.clone(),
        &target.key_id,
        args.key_spec,
        timeout,
    );
    let mut total_errors = 0u64;

    if args.mix.contains(Op::Decrypt) {
        eprintln!(
            "filling the Decrypt pool: {} GenerateDataKey requests",
            args.pool_size
        );
        let workers = open_workers(args.pool_size.min(4), &plan).await?;
        let (_, stats) = run_phase(
            workers,
            Arc::new(plan.clone()),
            PhaseSpec {
                stop: Stop::Requests(args.pool_size as u64),
                only: Some(Op::GenerateDataKey),
                collect_pool: true,
            },
        )
        .await?;
        total_errors += stats.errors();
        if stats.pool.is_empty() {
            bail!(
                "could not make any ciphertext for Decrypt: {}",
                stats
                    .sample_error
                    .as_deref()
                    .unwrap_or("GenerateDataKey answers had no CiphertextBlob")
            );
        }
        plan.pool = stats.pool;
    }
    let plan = Arc::new(plan);

    let mut rows: Vec<Row> = Vec::new();
    let multi_op = args.mix.entries().len() > 1;
    println!();
    println!("{}", report::TABLE_HEADER);
    for &concurrency in &levels {
        let mut workers = open_workers(concurrency, &plan).await?;
        let mut warm = None;
        if args.warmup > 0.0 {
            let (w, stats) = run_phase(
                workers,
                plan.clone(),
                PhaseSpec {
                    stop: Stop::After(Duration::from_secs_f64(args.warmup)),
                    only: None,
                    collect_pool: false,
                },
            )
            .await?;
            workers = w;
            total_errors += stats.errors();
            warm = Some(stats);
        }
        let before = snapshot(processes.node_pids, processes.postgres_pid)?;
        let (workers, stats) = run_phase(
            workers,
            plan.clone(),
            PhaseSpec {
                stop,
                only: None,
                collect_pool: false,
            },
        )
        .await?;
        let after = snapshot(processes.node_pids, processes.postgres_pid)?;
        drop(workers);
        total_errors += stats.errors();
        let row = make_row(
            concurrency,
            &stats,
            warm.as_ref(),
            (&before, &after),
            &processes,
            clk_tck,
        );
        println!("{}", report::table_row(&row));
        rows.push(row);
    }

    // The raw library operation, while the server idles (its CPU is
    // measured only inside the windows above).
    let raw = match raw::raw_op(&args.mix) {
        Some(op) if args.raw_duration > 0.0 && target.kind != "spawn-baseline" => {
            eprintln!(
                "measuring the raw {op} ({}) through keywarden-crypto for {} s",
                args.key_spec, args.raw_duration
            );
            let raw = raw::measure(
                op,
                args.key_spec,
                Duration::from_secs_f64(args.raw_duration),
                clk_tck,
            )?;
            for row in &mut rows {
                row.server_overhead_us_per_request = row
                    .server
                    .as_ref()
                    .map(|srv| raw::overhead_us(srv.cpu.us_per_request, &raw));
            }
            Some(raw)
        }
        _ => None,
    };
    if let Some(raw) = &raw {
        println!();
        println!(
            "raw:       {} {} {} over {} bytes through keywarden-crypto in this process, one thread, {} s: {} ops, {:.2} µs CPU/op ({})",
            raw.operation,
            raw.key_spec,
            raw.algorithm,
            raw.message_bytes,
            raw.wall_s,
            raw.ops,
            raw.us_per_op,
            raw.clock
        );
        println!("{}", report::RAW_HEADER);
        for row in &rows {
            println!("{}", report::raw_row(row, raw));
        }
    }

    println!();
    for row in &rows {
        print!("{}", report::row_details(row, multi_op));
        if let Some(srv) = &row.server {
            if srv.cpu.ticks < 100 {
                println!(
                    "    note: only {} server CPU ticks in the window; measure longer for a precise CPU/request",
                    srv.cpu.ticks
                );
            }
        }
        if let Some(pg) = &row.postgres {
            if pg.cpu.ticks < 100 {
                // Each process's counters are whole ticks, so the delta of
                // each may be short by up to one.
                println!(
                    "    note: only {} PostgreSQL CPU ticks in the window over {} processes; its CPU/request is below {:.2} µs, not measured precisely",
                    pg.cpu.ticks,
                    pg.processes_after.max(pg.processes_before),
                    CpuUse::new(
                        pg.cpu.ticks + pg.processes_after.max(pg.processes_before) as u64,
                        clk_tck,
                        row.requests,
                        row.duration_s
                    )
                    .us_per_request
                );
            }
        }
    }

    let server_exit = match target.servers.as_mut_slice() {
        [] => None,
        [server] => Some(server.stop()),
        servers => Some(
            servers
                .iter_mut()
                .enumerate()
                .map(|(i, s)| format!("node {}: {}", i + 1, s.stop()))
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    if let Some(exit) = &server_exit {
        println!("server:    {exit}");
    }
    if total_errors > 0 {
        println!("FAILED REQUESTS: {total_errors} (pool fill, warm-ups and measurements together)");
    }

    let report = Report {
        command,
        mix: args.mix.to_string(),
        key_spec: args.key_spec.as_str().to_owned(),
        raw,
        target: TargetInfo {
            kind: target.kind.to_owned(),
            endpoint: target.nodes[0].endpoint.url.clone(),
            server_command: target.servers.first().map(|s| s.description.clone()),
            server_pid,
            key_id: target.key_id.clone(),
            region: args.region.clone(),
            nodes: (target.servers.len() > 1).then(|| {
                target
                    .servers
                    .iter()
                    .map(|s| NodeInfo {
                        endpoint: s.url.clone(),
                        pid: s.pid,
                        server_command: s.description.clone(),
                    })
                    .collect()
            }),
            database: target.database.as_ref().map(|db| DatabaseInfo {
                url: db.url_redacted.clone(),
                spawned: db.spawned,
                settings: db.settings.map(str::to_owned),
                postmaster_pid: target.postgres_pid,
                postgres_cpus_allowed: postgres_cpus.clone(),
            }),
        },
        clk_tck,
        generator_cpus_allowed: generator_cpus,
        server_cpus_allowed: server_cpus,
        pinning: match pinning {
            Some(procfs::Pinning::Apart) => "apart",
            Some(procfs::Pinning::Overlapping) => "overlapping",
            Some(procfs::Pinning::Shared) => "shared",
            None => "unknown",
        }
        .to_owned(),
        generator_threads: threads,
        warmup_s: args.warmup,
        stop: stop_json,
        decrypt_pool_size: plan.pool.len(),
        rows,
        total_errors,
        server_exit,
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    drop(target);
    Ok(!(args.fail_on_error && total_errors > 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn check(args: &[&str]) -> Result<()> {
        let cli = crate::Cli::try_parse_from(args.iter().copied()).unwrap();
        check_args(&cli.run)
    }

    #[test]
    fn checks_multi_node_arguments() {
        check(&["kb", "--spawn"]).unwrap();
        check(&["kb", "--spawn", "--nodes", "2", "--spawn-postgres"]).unwrap();
        check(&[
            "kb",
            "--spawn",
            "--nodes",
            "3",
            "--database-url",
            "postgres://h/d",
        ])
        .unwrap();
        check(&[
            "kb",
            "--spawn",
            "--database-url",
            "postgresql://u@h:1/d",
            "--postgres-pid",
            "9",
        ])
        .unwrap();
        check(&["kb", "--endpoint", "http://h:1", "--postgres-pid", "9"]).unwrap();

        let err = |args: &[&str]| check(args).unwrap_err().to_string();
        assert!(err(&["kb", "--spawn", "--nodes", "2"])
            .contains("--database-url URL or --spawn-postgres"));
        assert!(err(&["kb", "--spawn", "--nodes", "0"]).contains("--nodes"));
        assert!(err(&["kb", "--spawn-baseline", "--nodes", "2"]).contains("only with --spawn"));
        assert!(
            err(&["kb", "--endpoint", "http://h:1", "--nodes", "2"]).contains("only with --spawn")
        );
        assert!(err(&["kb", "--spawn", "--postgres-pid", "9"]).contains("--database-url"));
        // The URL in an error is redacted.
        let e = err(&["kb", "--spawn", "--database-url", "mysql://u:hunter2@h/d"]);
        assert!(
            e.contains("mysql://u:***@h/d") && !e.contains("hunter2"),
            "{e}"
        );
    }
}
