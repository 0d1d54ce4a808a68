//! What `/proc` says about a process: CPU time, resident memory, CPU affinity.

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Which process to look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pid {
    /// The generator itself.
    SelfProc,
    Id(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Pid::SelfProc => "/proc/self".to_owned(),
            Pid::Id(id) => format!("/proc/{id}"),
        }
    }
}

/// User plus system CPU time of a process (all its threads), in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTicks {
    pub utime: u64,
    pub stime: u64,
}

impl CpuTicks {
    pub fn total(self) -> u64 {
        self.utime + self.stime
    }
}

/// Parses the `utime` and `stime` fields (14 and 15) of `/proc/<pid>/stat`.
///
/// The second field is the command name in parentheses, and the name itself
/// may contain spaces and parentheses, so the fields are counted from the
/// *last* `)` on the line.
pub fn parse_stat(stat: &str) -> Result<CpuTicks> {
    let close = stat
        .rfind(')')
        .context("no ')' after the command name in /proc/<pid>/stat")?;
    // After the ')': field 3 (state) is index 0, so field N is index N - 3.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        let raw = fields
            .get(n - 3)
            .with_context(|| format!("/proc/<pid>/stat has no field {n}"))?;
        raw.parse()
            .with_context(|| format!("field {n} of /proc/<pid>/stat is not a number: {raw:?}"))
    };
    Ok(CpuTicks {
        utime: field(14)?,
        stime: field(15)?,
    })
}

pub fn cpu_ticks(pid: Pid) -> Result<CpuTicks> {
    let path = format!("{}/stat", pid.dir());
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&stat).with_context(|| format!("parsing {path}"))
}

/// The fields of `/proc/<pid>/stat` a process-tree sum needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatTree {
    /// Field 4: the parent's pid (its thread group id).
    pub ppid: u32,
    pub ticks: CpuTicks,
    /// Fields 16 and 17, `cutime + cstime`: CPU time of children this
    /// process has waited for (including what they had from their own
    /// waited-for children).
    pub reaped_children_ticks: u64,
}

/// Parses ppid, utime, stime, cutime and cstime of a stat line (see
/// [`parse_stat`] for how the command name is skipped).
pub fn parse_stat_tree(stat: &str) -> Result<StatTree> {
    let close = stat
        .rfind(')')
        .context("no ')' after the command name in /proc/<pid>/stat")?;
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        let raw = fields
            .get(n - 3)
            .with_context(|| format!("/proc/<pid>/stat has no field {n}"))?;
        raw.parse()
            .with_context(|| format!("field {n} of /proc/<pid>/stat is not a number: {raw:?}"))
    };
    Ok(StatTree {
        ppid: u32::try_from(field(4)?).context("ppid out of range")?,
        ticks: CpuTicks {
            utime: field(14)?,
            stime: field(15)?,
        },
        reaped_children_ticks: field(16)? + field(17)?,
    })
}

/// The pids under `root` (children, grandchildren, ...) in a table of
/// `(pid, ppid)` pairs, parents before their children; `root` itself is not
/// included.
pub fn descendants_in(root: u32, table: &[(u32, u32)]) -> Vec<u32> {
    let mut found = Vec::new();
    let mut seen = BTreeSet::from([root]);
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in table {
            // `seen` also guards against a pid listed as its own ancestor
            // when pids are reused between two reads of /proc.
            if ppid == parent && seen.insert(pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// `(pid, ppid)` of every process in `/proc`; processes that exit while
/// the table is read are left out.
pub fn process_table() -> Result<Vec<(u32, u32)>> {
    let mut table = Vec::new();
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Ok(s) = parse_stat_tree(&stat) {
            table.push((pid, s.ppid));
        }
    }
    Ok(table)
}

/// The descendants of a live process, found by scanning `/proc` (the
/// `task/*/children` files need a kernel option that is often off).
pub fn descendants(root: u32) -> Result<Vec<u32>> {
    Ok(descendants_in(root, &process_table()?))
}

/// CPU time of a process and all its descendants at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeCpu {
    /// Over the live processes of the tree: `utime + stime + cutime +
    /// cstime`. A descendant that exited and was waited for is in its
    /// parent's `cutime + cstime`, so the difference of two readings also
    /// counts processes that came and went between them.
    pub ticks: u64,
    /// Live processes in the tree, the root included.
    pub processes: usize,
}

/// Reads [`TreeCpu`] for `root`; fails if `root` itself cannot be read.
pub fn tree_cpu(root: u32) -> Result<TreeCpu> {
    let read = |pid: u32| -> Result<StatTree> {
        let path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        parse_stat_tree(&stat).with_context(|| format!("parsing {path}"))
    };
    let own = read(root)?;
    let mut ticks = own.ticks.total() + own.reaped_children_ticks;
    let mut processes = 1;
    for pid in descendants(root)? {
        // One that exited since the scan is counted by its parent's
        // cutime/cstime once waited for.
        if let Ok(s) = read(pid) {
            ticks += s.ticks.total() + s.reaped_children_ticks;
            processes += 1;
        }
    }
    Ok(TreeCpu { ticks, processes })
}

/// A `Key:\tvalue` line of `/proc/<pid>/status`, value trimmed.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

/// `VmRSS` from a status file, in KiB.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let v = status_field(status, "VmRSS")?;
    let number = v.strip_suffix("kB").unwrap_or(v).trim();
    number.parse().ok()
}

fn read_status(pid: Pid) -> Result<String> {
    let path = format!("{}/status", pid.dir());
    std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
}

/// The resident set size of a process in KiB.
pub fn rss_kib(pid: Pid) -> Result<u64> {
    let status = read_status(pid)?;
    parse_vm_rss_kib(&status).context("no VmRSS line in /proc/<pid>/status")
}

/// `Cpus_allowed_list` of a process, e.g. `0-1` or `1`.
pub fn cpus_allowed_list(pid: Pid) -> Result<String> {
    let status = read_status(pid)?;
    status_field(&status, "Cpus_allowed_list")
        .map(str::to_owned)
        .context("no Cpus_allowed_list line in /proc/<pid>/status")
}

/// Expands a CPU list such as `0-2,5,7-8` into a set.
pub fn parse_cpu_list(list: &str) -> Result<BTreeSet<u32>> {
    let mut cpus = BTreeSet::new();
    for part in list.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        // A stride form `0-8:2` exists in taskset syntax, not in /proc.
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>()?, b.trim().parse::<u32>()?),
            None => {
                let n = part.parse::<u32>()?;
                (n, n)
            }
        };
        if lo > hi || hi - lo > 65_536 {
            bail!("bad CPU range {part:?}");
        }
        cpus.extend(lo..=hi);
    }
    Ok(cpus)
}

/// How the generator's and the server's CPU sets relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinning {
    /// No CPU in common: the two cannot steal each other's CPU time.
    Apart,
    /// Some CPUs in common.
    Overlapping,
    /// Both may run on exactly the same CPUs (e.g. neither pinned).
    Shared,
}

impl Pinning {
    pub fn describe(self) -> &'static str {
        match self {
            Pinning::Apart => "pinned apart (disjoint CPU sets)",
            Pinning::Overlapping => "NOT pinned apart (CPU sets overlap)",
            Pinning::Shared => "NOT pinned apart (same CPU set)",
        }
    }
}

pub fn compare_affinity(generator: &str, server: &str) -> Result<Pinning> {
    let g = parse_cpu_list(generator)?;
    let s = parse_cpu_list(server)?;
    Ok(if g.is_disjoint(&s) {
        Pinning::Apart
    } else if g == s {
        Pinning::Shared
    } else {
        Pinning::Overlapping
    })
}

/// Machine-wide CPU time from the `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineTicks {
    /// user + nice + system + irq + softirq + steal.
    pub busy: u64,
    /// idle + iowait.
    pub idle: u64,
}

/// Parses the aggregate `cpu ` line of `/proc/stat`.
pub fn parse_machine_stat(stat: &str) -> Result<MachineTicks> {
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no 'cpu ' line in /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("non-numeric field in the cpu line of /proc/stat")?;
    if v.len() < 8 {
        bail!(
            "the cpu line of /proc/stat has {} fields, expected at least 8",
            v.len()
        );
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice]; guest
    // time is already part of user time.
    Ok(MachineTicks {
        busy: v[0] + v[1] + v[2] + v[5] + v[6] + v[7],
        idle: v[3] + v[4],
    })
}

pub fn machine_ticks() -> Result<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_machine_stat(&stat)
}

/// Clock ticks per second, from `getconf CLK_TCK` (100 when that fails).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| parse_clk_tck(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or(100)
}

pub fn parse_clk_tck(out: &str) -> Option<u64> {
    out.trim().parse().ok().filter(|&n| n > 0)
}

/// The calling thread's CPU time (user + system) in nanoseconds and how it
/// was read: the first field of `/proc/thread-self/schedstat` (the
/// scheduler's on-CPU time, in ns) when the kernel has it, else utime +
/// stime of `/proc/thread-self/stat` in clock ticks (10 ms resolution).
pub fn thread_cpu_ns(clk_tck: u64) -> Result<(u64, &'static str)> {
    if let Ok(text) = std::fs::read_to_string("/proc/thread-self/schedstat") {
        if let Some(ns) = parse_schedstat(&text) {
            return Ok((ns, "/proc/thread-self/schedstat (ns)"));
        }
    }
    let path = "/proc/thread-self/stat";
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_stat(&stat)
        .with_context(|| format!("parsing {path}"))?
        .total();
    Ok((
        ticks.saturating_mul(1_000_000_000) / clk_tck.max(1),
        "/proc/thread-self/stat (clock ticks)",
    ))
}

/// The on-CPU nanoseconds (first field) of a `schedstat` line.
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_clock_advances_with_work() {
        assert_eq!(parse_schedstat("123456789 4321 17\n"), Some(123_456_789));
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
        let (t0, _) = thread_cpu_ns(100).unwrap();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let (t1, source) = thread_cpu_ns(100).unwrap();
        // 50 ms of spinning; at least 10 ms on the CPU even on a busy machine.
        assert!(t1 - t0 >= 10_000_000, "{} ns via {source}", t1 - t0);
    }

    const STAT: &str = "1234 (keywarden) S 1 1234 1234 0 -1 4194560 2750 0 0 0 \
                        157 43 0 0 20 0 5 0 9876 123456789 2345 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0 0 0 0";

    #[test]
    fn parses_plain_stat() {
        assert_eq!(
            parse_stat(STAT).unwrap(),
            CpuTicks {
                utime: 157,
                stime: 43
            }
        );
        assert_eq!(parse_stat(STAT).unwrap().total(), 200);
    }

    #[test]
    fn comm_with_spaces_and_parentheses() {
        let stat = STAT.replace("(keywarden)", "(a) b (c) 9 9 9)");
        assert_eq!(
            parse_stat(&stat).unwrap(),
            CpuTicks {
                utime: 157,
                stime: 43
            }
        );
        let stat = STAT.replace("(keywarden)", "(tokio-runtime-w)");
        assert_eq!(parse_stat(&stat).unwrap().total(), 200);
    }

    #[test]
    fn rejects_truncated_or_garbled_stat() {
        assert!(parse_stat("1234 keywarden S 1").is_err());
        assert!(parse_stat("1234 (keywarden) S 1 2 3").is_err());
        let garbled = STAT.replace(" 157 ", " x ");
        assert!(parse_stat(&garbled).is_err());
    }

    #[test]
    fn parses_tree_fields() {
        let s = parse_stat_tree(STAT).unwrap();
        assert_eq!(s.ppid, 1);
        assert_eq!(s.ticks.total(), 200);
        assert_eq!(s.reaped_children_ticks, 0);
        let stat = STAT.replace(" 157 43 0 0 ", " 157 43 7 5 ");
        let s = parse_stat_tree(&stat.replace("(keywarden)", "(post gres) 2 (x)")).unwrap();
        assert_eq!((s.ppid, s.reaped_children_ticks), (1, 12));
        assert!(parse_stat_tree("1 (x) S").is_err());
    }

    #[test]
    fn walks_a_table_of_descendants() {
        // 10 -> 11 -> 13, 10 -> 12, 20 -> 21, and a reuse loop 30 <-> 31.
        let table = [
            (11, 10),
            (12, 10),
            (13, 11),
            (21, 20),
            (10, 1),
            (30, 31),
            (31, 30),
        ];
        let mut d = descendants_in(10, &table);
        d.sort_unstable();
        assert_eq!(d, [11, 12, 13]);
        assert_eq!(descendants_in(13, &table), Vec::<u32>::new());
        assert_eq!(descendants_in(30, &table), [31]);
    }

    #[test]
    fn finds_own_children_and_grandchildren() {
        use std::process::{Command, Stdio};
        let me = std::process::id();
        let mut sleeps: Vec<_> = (0..2)
            .map(|_| Command::new("sleep").arg("30").spawn().unwrap())
            .collect();
        // A shell that forks a sleep of its own: a grandchild of this process.
        let mut shell = Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(shell.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();

        let found = descendants(me).unwrap();
        let own = cpu_ticks(Pid::SelfProc).unwrap().total();
        let tree = tree_cpu(me).unwrap();
        let _ = Command::new("kill").arg(grandchild.to_string()).status();
        for child in sleeps.iter_mut().chain([&mut shell]) {
            let _ = child.kill();
            let _ = child.wait();
        }

        for child in sleeps.iter().chain([&shell]) {
            assert!(
                found.contains(&child.id()),
                "{} not in {found:?}",
                child.id()
            );
        }
        assert!(found.contains(&grandchild), "{grandchild} not in {found:?}");
        assert!(!found.contains(&me));
        assert!(tree.processes >= 5, "{tree:?}");
        assert!(tree.ticks >= own, "{tree:?} < {own}");
        assert!(tree_cpu(u32::MAX).is_err());
    }

    #[test]
    fn reads_own_stat_and_status() {
        let ticks = cpu_ticks(Pid::SelfProc).unwrap();
        assert!(ticks.utime < u64::MAX / 2);
        assert!(rss_kib(Pid::SelfProc).unwrap() > 0);
        let cpus = cpus_allowed_list(Pid::SelfProc).unwrap();
        assert!(!parse_cpu_list(&cpus).unwrap().is_empty());
        let pid = std::process::id();
        assert!(cpu_ticks(Pid::Id(pid)).is_ok());
    }

    #[test]
    fn parses_status_fields() {
        let status = "Name:\tkeywarden\nVmPeak:\t  100 kB\nVmRSS:\t   23456 kB\n\
                      Cpus_allowed:\t3\nCpus_allowed_list:\t0-1\n";
        assert_eq!(parse_vm_rss_kib(status), Some(23456));
        assert_eq!(status_field(status, "Cpus_allowed_list"), Some("0-1"));
        assert_eq!(status_field(status, "Cpus_allowed"), Some("3"));
        assert_eq!(status_field(status, "Missing"), None);
        assert_eq!(parse_vm_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_lists_and_pinning() {
        assert_eq!(
            parse_cpu_list("0-2,5,7-8")
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            [0, 1, 2, 5, 7, 8]
        );
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert_eq!(compare_affinity("1", "0").unwrap(), Pinning::Apart);
        assert_eq!(compare_affinity("0-1", "0-1").unwrap(), Pinning::Shared);
        assert_eq!(compare_affinity("0-1", "1").unwrap(), Pinning::Overlapping);
    }

    #[test]
    fn machine_stat() {
        let stat =
            "cpu  152009 1 32748 197648 1030 2 553 120 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 1\n";
        assert_eq!(
            parse_machine_stat(stat).unwrap(),
            MachineTicks {
                busy: 152009 + 1 + 32748 + 2 + 553 + 120,
                idle: 197648 + 1030
            }
        );
        assert!(parse_machine_stat("cpu0 1 2 3 4 5 6 7 8\n").is_err());
        assert!(parse_machine_stat("cpu  1 2 3\n").is_err());
        assert!(machine_ticks().unwrap().busy + machine_ticks().unwrap().idle > 0);
    }

    #[test]
    fn clk_tck_output() {
        assert_eq!(parse_clk_tck("100\n"), Some(100));
        assert_eq!(parse_clk_tck("0"), None);
        assert_eq!(parse_clk_tck("undefined"), None);
        assert!(clock_ticks_per_second() > 0);
    }
}
