//! Load through HTTP with wrk (Debian's `wrk`): prepared requests replayed by
//! `bench/wrk/cases.lua`, each sent once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// One request as wrk replays it.
#[derive(Clone)]
pub struct Line {
    pub method: &'static str,
    pub path: String,
    pub header: (&'static str, String),
    pub body: String,
}

/// What wrk reports of a run.
#[derive(Debug, Deserialize)]
pub struct Run {
    pub requests: u64,
    pub duration_us: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub non_2xx: u64,
    pub socket_errors: u64,
    pub exhausted: u64,
}

impl Run {
    pub fn p50(&self) -> Duration {
        Duration::from_micros(self.p50_us)
    }

    pub fn p99(&self) -> Duration {
        Duration::from_micros(self.p99_us)
    }

    pub fn per_second(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }
}

/// The script and the request files of one benchmark run, in a folder of its own.
pub struct Wrk {
    dir: PathBuf,
}

impl Wrk {
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        std::fs::write(dir.join("cases.lua"), include_str!("../wrk/cases.lua"))?;
        Ok(Wrk {
            dir: dir.to_owned(),
        })
    }

    /// Writes `lines` to a file named `name` for [`Wrk::run`].
    pub fn write(&self, name: &str, lines: &[Line]) -> anyhow::Result<PathBuf> {
        let mut out = String::new();
        for l in lines {
            for field in [l.path.as_str(), l.header.1.as_str(), l.body.as_str()] {
                if field.contains(['\t', '\n']) {
                    bail!("a request field holds a tab or a newline: {field}");
                }
            }
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\n",
                l.method, l.path, l.header.0, l.header.1, l.body
            ));
        }
        let path = self.dir.join(name);
        std::fs::write(&path, out)?;
        Ok(path)
    }

    /// `connections` concurrent connections (at most two threads: this machine has two
    /// cores) replaying `file` against `base` for `duration`. Running out of lines,
    /// unless `wrap`, or any socket error fails the run.
    pub fn run(
        &self,
        base: &str,
        file: &Path,
        connections: usize,
        duration: Duration,
        wrap: bool,
    ) -> anyhow::Result<Run> {
        let threads = connections.min(2);
        let output = std::process::Command::new("wrk")
            .arg(format!("-t{threads}"))
            .arg(format!("-c{connections}"))
            .arg(format!("-d{}s", duration.as_secs()))
            .args(["--timeout", "10s", "-s"])
            .arg(self.dir.join("cases.lua"))
            .arg(base)
            .arg("--")
            .arg(file)
            .arg(threads.to_string())
            .arg(if wrap { "wrap" } else { "once" })
            .output()
            .context("running wrk (Debian package wrk)")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let run: Run = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .with_context(|| {
                format!(
                    "wrk reported nothing:\n{stdout}\n{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            })
            .and_then(|json| Ok(serde_json::from_str(json)?))?;
        if run.exhausted > 0 {
            bail!(
                "{}: wrk ran out of prepared requests after {}; prepare more",
                file.display(),
                run.requests
            );
        }
        if run.socket_errors > 0 {
            bail!(
                "{}: {} socket errors\n{stdout}",
                file.display(),
                run.socket_errors
            );
        }
        Ok(run)
    }
}
