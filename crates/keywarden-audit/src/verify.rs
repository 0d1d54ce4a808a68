//! [`verify`]: recompute the chain of an audit file and check it against
//! the head, naming the first problem by line and kind (edited, removed,
//! reordered, truncated, malformed, head).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::chain::{chain_of_line, head_path, parse_mac, read_head, AuditKey, Chain};
use crate::record::Record;

/// What [`verify`] found wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the audit file (0: the head file).
    pub line: usize,
    /// The seq that line claims, when it could be read.
    pub seq: Option<u64>,
    /// What is wrong.
    pub kind: ProblemKind,
    /// Details for the operator.
    pub detail: String,
}

/// Kinds of tampering (or damage) [`verify`] tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The line is not a record.
    Malformed,
    /// The record's mac does not match: its content or mac was changed.
    Edited,
    /// Records are missing before this line.
    Removed,
    /// The line is out of order.
    Reordered,
    /// The file ends before the head's last record, or mid-record.
    Truncated,
    /// The head file is missing or does not match the file.
    Head,
}

impl ProblemKind {
    /// A word for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Malformed => "malformed",
            ProblemKind::Edited => "edited",
            ProblemKind::Removed => "removed",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Truncated => "truncated",
            ProblemKind::Head => "head",
        }
    }
}

/// A chain that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records in the file.
    pub records: u64,
    /// Records after the head's (written, not yet in the head: a crash
    /// between the file's sync and the head's replacement).
    pub beyond_head: u64,
}

/// Recomputes the chain of the audit file at `path` with `key` and checks
/// it against the head; the first problem found, by line.
pub fn verify(path: &Path, key: &AuditKey) -> std::io::Result<Result<Verified, Problem>> {
    // First pass: every seq present, to tell a reordering from a removal.
    let mut seen = HashSet::new();
    for line in BufReader::new(File::open(path)?).split(b'\n') {
        if let Ok(r) = serde_json::from_slice::<Record>(&line?) {
            seen.insert(r.seq);
        }
    }
    let data = std::fs::read(path)?;
    let mut chain = Chain::START;
    let mut line_no = 0;
    for line in data.split_inclusive(|&b| b == b'\n') {
        line_no += 1;
        if !line.ends_with(b"\n") {
            return Ok(Err(Problem {
                line: line_no,
                seq: None,
                kind: ProblemKind::Truncated,
                detail: "the last line is an incomplete record".into(),
            }));
        }
        let text = &line[..line.len() - 1];
        let Ok(mut record) = serde_json::from_slice::<Record>(text) else {
            return Ok(Err(Problem {
                line: line_no,
                seq: None,
                kind: ProblemKind::Malformed,
                detail: "not an audit record (edited)".into(),
            }));
        };
        let seq = record.seq;
        let expected = chain.seq + 1;
        if seq != expected {
            let (kind, detail) = if seq > expected && seen.contains(&expected) {
                (
                    ProblemKind::Reordered,
                    format!("expected seq {expected} here, which appears later in the file"),
                )
            } else if seq > expected {
                (
                    ProblemKind::Removed,
                    format!("records {expected}..{} are missing", seq - 1),
                )
            } else {
                (
                    ProblemKind::Reordered,
                    format!("seq {seq} after seq {}", chain.seq),
                )
            };
            return Ok(Err(Problem {
                line: line_no,
                seq: Some(seq),
                kind,
                detail,
            }));
        }
        let mac = std::mem::take(&mut record.mac);
        let canonical = serde_json::to_vec(&record).expect("records serialise");
        let Some(mac_bytes) = parse_mac(&mac) else {
            return Ok(Err(Problem {
                line: line_no,
                seq: Some(seq),
                kind: ProblemKind::Edited,
                detail: "the mac is not 32 bytes of hex".into(),
            }));
        };
        if !key.verify(&chain.mac, &canonical, &mac_bytes) {
            return Ok(Err(Problem {
                line: line_no,
                seq: Some(seq),
                kind: ProblemKind::Edited,
                detail: "the mac does not match the record (its content was changed)".into(),
            }));
        }
        chain = Chain {
            seq,
            mac: mac_bytes,
        };
    }
    match read_head(&head_path(path))? {
        None if chain.seq > 0 => Ok(Err(Problem {
            line: 0,
            seq: None,
            kind: ProblemKind::Head,
            detail: format!("the head file {} is missing", head_path(path).display()),
        })),
        None => Ok(Ok(Verified {
            records: 0,
            beyond_head: 0,
        })),
        Some(head) if head.seq > chain.seq => Ok(Err(Problem {
            line: line_no + 1,
            seq: Some(chain.seq + 1),
            kind: ProblemKind::Truncated,
            detail: format!(
                "the head names seq {} but the file ends at seq {}: records {}..{} were cut",
                head.seq,
                chain.seq,
                chain.seq + 1,
                head.seq
            ),
        })),
        Some(head) => {
            // The head's record must be the one in the file.
            if head.seq > 0 && !head_matches(&data, head) {
                return Ok(Err(Problem {
                    line: 0,
                    seq: Some(head.seq),
                    kind: ProblemKind::Head,
                    detail: "the head's mac is not that record's mac".into(),
                }));
            }
            Ok(Ok(Verified {
                records: chain.seq,
                beyond_head: chain.seq - head.seq,
            }))
        }
    }
}

fn head_matches(data: &[u8], head: Chain) -> bool {
    data.split(|&b| b == b'\n')
        .filter_map(chain_of_line)
        .any(|c| c == head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::AuditKey;
    use crate::sink::Sink;
    use crate::test_support::{entry, write_chain};

    #[test]
    fn a_written_chain_verifies_and_continues_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (path, key) = write_chain(dir.path(), 6);
        assert_eq!(
            verify(&path, &key).unwrap(),
            Ok(Verified {
                records: 6,
                beyond_head: 0
            })
        );
        // Another key does not verify.
        let other = AuditKey::from_bytes(&[8; 32]);
        assert_eq!(
            verify(&path, &other).unwrap().unwrap_err().kind,
            ProblemKind::Edited
        );
        // Reopened, the chain continues.
        let mut sink = Sink::new(path.clone(), AuditKey::from_bytes(&[7; 32]));
        sink.flush(&[entry(7)]).unwrap();
        assert_eq!(verify(&path, &key).unwrap().unwrap().records, 7);
    }

    fn tampered(edit: impl Fn(&mut Vec<String>)) -> Problem {
        let dir = tempfile::tempdir().unwrap();
        let (path, key) = write_chain(dir.path(), 6);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        edit(&mut lines);
        let mut out = lines.join("\n");
        if !lines.is_empty() {
            out.push('\n');
        }
        std::fs::write(&path, out).unwrap();
        verify(&path, &key).unwrap().unwrap_err()
    }

    #[test]
    fn every_tampering_is_found_where_it_is() {
        let p = tampered(|l| l[2] = l[2].replace("req-3", "req-X"));
        assert_eq!((p.kind, p.line, p.seq), (ProblemKind::Edited, 3, Some(3)));
        let p = tampered(|l| {
            l.remove(2);
        });
        assert_eq!((p.kind, p.line, p.seq), (ProblemKind::Removed, 3, Some(4)));
        let p = tampered(|l| l.swap(2, 3));
        assert_eq!(
            (p.kind, p.line, p.seq),
            (ProblemKind::Reordered, 3, Some(4))
        );
        let p = tampered(|l| {
            l.pop();
        });
        assert_eq!(
            (p.kind, p.line, p.seq),
            (ProblemKind::Truncated, 6, Some(6))
        );
        let p = tampered(|l| l[5].truncate(10));
        assert_eq!((p.kind, p.line), (ProblemKind::Malformed, 6));
    }
}
