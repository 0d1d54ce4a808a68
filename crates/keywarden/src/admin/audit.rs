//! `keywarden admin audit verify|query`: the node's audit log
//! (docs/audit.md). Both read the files only; `verify` needs the root key to
//! unseal the audit key.

use std::io::BufRead;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use keywarden_audit::{AuditKey, Query, Record};
use serde_json::json;

use crate::DataArgs;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit log's keyed hash chain and check it against its
    /// head: prints the record count, or the first bad record (line, seq,
    /// and whether it was edited, removed, reordered or the file
    /// truncated) and exits non-zero.
    Verify {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Print the records that match every filter given, as JSON lines.
    Query {
        #[command(flatten)]
        data: DataArgs,
        /// The account acted for (12 digits).
        #[arg(long)]
        account: Option<String>,
        /// A key as requested (id, ARN, alias) or its key ARN or key id.
        #[arg(long)]
        key: Option<String>,
        /// The operation (`Encrypt` or `TrentService.Encrypt`).
        #[arg(long)]
        operation: Option<String>,
        /// From this time (RFC 3339, or Unix milliseconds), inclusive.
        #[arg(long)]
        since: Option<String>,
        /// Up to this time (RFC 3339, or Unix milliseconds), exclusive.
        #[arg(long)]
        until: Option<String>,
        /// At most this many records (the first ones that match).
        #[arg(long)]
        limit: Option<usize>,
    },
}

pub async fn run(cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Verify { data } => verify(&data),
        AuditCommand::Query {
            data,
            account,
            key,
            operation,
            since,
            until,
            limit,
        } => {
            let query = Query {
                account,
                key,
                operation,
                since_ms: since.as_deref().map(parse_time).transpose()?,
                until_ms: until.as_deref().map(parse_time).transpose()?,
            };
            self::query(&data, &query, limit)
        }
    }
}

fn audit_path(data: &DataArgs) -> Result<std::path::PathBuf> {
    let config = crate::config::Config::load(data.config.as_deref())?;
    Ok(config.audit.path(&data.data_dir))
}

fn verify(data: &DataArgs) -> Result<()> {
    let config = crate::config::Config::load(data.config.as_deref())?;
    let path = config.audit.path(&data.data_dir);
    let root_key_path = data
        .root_key_file
        .clone()
        .unwrap_or_else(|| data.data_dir.join("root.key"));
    anyhow::ensure!(
        root_key_path.exists(),
        "no root key at {}",
        root_key_path.display()
    );
    let root = crate::setup::load_root(&config, &root_key_path)?.root;
    let key = AuditKey::load(
        &data.data_dir.join(crate::serve::AUDIT_KEY_FILE),
        root.as_ref(),
    )?;
    let report = keywarden_audit::verify(&path, &key)
        .with_context(|| format!("reading the audit log {}", path.display()))?;
    match report {
        Ok(v) => {
            outln!(
                "{}",
                json!({
                    "Status": "OK",
                    "File": path.display().to_string(),
                    "Records": v.records,
                    "RecordsBeyondHead": v.beyond_head,
                })
            );
            Ok(())
        }
        Err(p) => {
            outln!(
                "{}",
                json!({
                    "Status": "FAILED",
                    "File": path.display().to_string(),
                    "Line": p.line,
                    "Seq": p.seq,
                    "Problem": p.kind.as_str(),
                    "Detail": p.detail,
                })
            );
            let at = match p.seq {
                Some(seq) => format!("line {} (seq {seq})", p.line),
                None => format!("line {}", p.line),
            };
            bail!(
                "audit log {} does not verify at {at}: {}: {}",
                path.display(),
                p.kind.as_str(),
                p.detail
            )
        }
    }
}

fn query(data: &DataArgs, query: &Query, limit: Option<usize>) -> Result<()> {
    let path = audit_path(data)?;
    let file = std::fs::File::open(&path)
        .with_context(|| format!("opening the audit log {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    let mut printed = 0;
    for (n, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        if limit.is_some_and(|l| printed >= l) {
            break;
        }
        let line = line?;
        let Ok(record) = serde_json::from_slice::<Record>(&line) else {
            eprintln!("warning: line {} is not an audit record; skipped", n + 1);
            continue;
        };
        if query.matches(&record) {
            use std::io::Write as _;
            match out.write_all(&line).and_then(|()| out.write_all(b"\n")) {
                Ok(()) => printed += 1,
                // The reader went away (`| head`): it has what it wanted.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
    if let Err(e) = std::io::Write::flush(&mut out) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    Ok(())
}

/// RFC 3339 or Unix milliseconds.
fn parse_time(s: &str) -> Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| {
            format!("{s:?} is neither RFC 3339 (2024-05-01T12:00:00Z) nor Unix milliseconds")
        })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}
