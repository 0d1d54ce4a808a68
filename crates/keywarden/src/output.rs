//! Writing a command's output to stdout (see the `outln!` macro).

use std::io::Write;

/// Writes `args` and a newline to stdout. When the reader has gone
/// (`EPIPE`), exits at once with status 0: what it wanted was written.
/// Any other write error ends the command with status 1 and one line on
/// stderr.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing the output: {e}");
        std::process::exit(1);
    }
}
