//! The audit file on disk: one writer per file (an advisory lock), a torn
//! last line cut on open, the chain continued from the furthest of memory,
//! the head and the file, and batches appended, `fdatasync`ed and then
//! recorded in the head.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use crate::chain::{
    chain_of_line, head_path, read_head, sync_parent, write_atomically, AuditKey, Chain, HeadFile,
};
use crate::record::Entry;

/// Reads the last complete line of `file` (length `len`): its chain link
/// and the length up to and including its newline (anything after it is a
/// torn write).
fn read_tail(file: &mut File, len: u64) -> std::io::Result<(Option<Chain>, u64)> {
    if len == 0 {
        return Ok((None, 0));
    }
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::with_capacity((len - start) as usize);
        Read::by_ref(file).take(len - start).read_to_end(&mut buf)?;
        let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
            if start == 0 {
                // Not one complete line.
                return Ok((None, 0));
            }
            window *= 2;
            continue;
        };
        let complete = start + last_nl as u64 + 1;
        let before = &buf[..last_nl];
        match before.iter().rposition(|&b| b == b'\n') {
            Some(prev_nl) => {
                return Ok((chain_of_line(&before[prev_nl + 1..]), complete));
            }
            None if start == 0 => return Ok((chain_of_line(before), complete)),
            None => window *= 2,
        }
    }
}

/// Why an audit file that another process writes is refused.
const AUDIT_FILE_IN_USE: &str =
    "the audit file is in use by another keywarden process; give each node its own [audit] path";

/// Where the writer writes, and the chain's durable end.
pub(crate) struct Sink {
    /// The audit file.
    pub(crate) path: PathBuf,
    head: PathBuf,
    key: AuditKey,
    file: Option<(File, (u64, u64))>,
    /// Length of the file's durable, complete lines.
    good_len: u64,
    /// The last durable record.
    chain: Chain,
    head_dirty: bool,
}

impl Sink {
    /// The sink of the audit file at `path`, not opened yet.
    pub(crate) fn new(path: PathBuf, key: AuditKey) -> Sink {
        Sink {
            head: head_path(&path),
            path,
            key,
            file: None,
            good_len: 0,
            chain: Chain::START,
            head_dirty: false,
        }
    }

    /// Opens (creating) the audit file: a torn last line is cut, and the
    /// chain continues from the furthest of memory, the head and the file's
    /// last record.
    pub(crate) fn open(&mut self) -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)?;
        // One writer per audit file: two processes appending to one file
        // would interleave two chains (an advisory lock on the open file,
        // released when it is closed).
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    AUDIT_FILE_IN_USE,
                ))
            }
            // A file system without locks (some network and FUSE file
            // systems): the file is still written, as before locks existed.
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot lock the audit file (file system without locks?); make sure no other process writes it");
            }
        }
        sync_parent(&self.path)?;
        let meta = file.metadata()?;
        let len = if meta.is_file() { meta.len() } else { 0 };
        let (tail, complete) = read_tail(&mut file, len)?;
        if complete < len {
            tracing::warn!(path = %self.path.display(), cut = len - complete, "the audit file ended in an incomplete record (a torn write); cut");
            file.set_len(complete)?;
        }
        let head = read_head(&self.head)?;
        let file_seq = tail.map_or(0, |c| c.seq);
        for candidate in [tail, head].into_iter().flatten() {
            if candidate.seq > self.chain.seq {
                self.chain = candidate;
            }
        }
        if file_seq < self.chain.seq {
            tracing::error!(path = %self.path.display(), file_seq, chain_seq = self.chain.seq, "the audit file ends before the chain's last durable record: records are missing (verify reports them); continuing the chain");
        }
        self.good_len = complete;
        self.file = Some((file, (meta.dev(), meta.ino())));
        Ok(())
    }

    /// Writes `pending` (linking them from the durable end), fdatasyncs,
    /// then replaces the head. On error nothing of `pending` counts as
    /// written, and the next attempt cuts what a failed one left.
    pub(crate) fn flush(&mut self, pending: &[Entry]) -> std::io::Result<()> {
        if self.file.is_none() {
            self.open()?;
        }
        let (file, ident) = self.file.as_mut().expect("opened");
        // A removed or replaced file would swallow writes unseen.
        let current = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        if current.ok() != Some(*ident) {
            self.file = None;
            return Err(std::io::Error::other(
                "the audit file was removed or replaced",
            ));
        }
        if !pending.is_empty() {
            let mut chain = self.chain;
            let mut buf = Vec::with_capacity(pending.len() * 512);
            for entry in pending {
                chain.append(&self.key, entry, &mut buf);
            }
            let meta = file.metadata()?;
            if meta.is_file() && meta.len() != self.good_len {
                file.set_len(self.good_len)?;
            }
            file.write_all(&buf)?;
            file.sync_data()?;
            self.good_len += buf.len() as u64;
            self.chain = chain;
            self.head_dirty = true;
        }
        if self.head_dirty {
            let head = HeadFile {
                seq: self.chain.seq,
                mac: hex::encode(self.chain.mac),
            };
            write_atomically(
                &self.head,
                &serde_json::to_vec(&head).expect("head serialises"),
            )?;
            self.head_dirty = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::test_support::{entry, write_chain};
    use crate::verify::{verify, ProblemKind};

    #[test]
    fn a_torn_last_line_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let (path, key) = write_chain(dir.path(), 4);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":5,\"ti").unwrap();
        drop(f);
        assert_eq!(
            verify(&path, &key).unwrap().unwrap_err().kind,
            ProblemKind::Truncated
        );
        let mut sink = Sink::new(path.clone(), AuditKey::from_bytes(&[7; 32]));
        sink.flush(&[entry(5)]).unwrap();
        assert_eq!(verify(&path, &key).unwrap().unwrap().records, 5);
    }
}
