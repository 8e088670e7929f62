//! Stamps the build with the git revision it was made from, for Sentry's `release`
//! (`stories-backend@<version>+<revision>`): an event then names the exact code.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    let revision = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=GIT_REVISION={revision}");
    // Rebuilt when HEAD moves: a checkout (HEAD) or a commit (the branch it points to).
    // A path that does not exist would rebuild every time, so only existing ones.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let branch = git(&["symbolic-ref", "-q", "HEAD"]).unwrap_or_default();
        for file in ["HEAD", branch.as_str(), "packed-refs"] {
            let path = std::path::Path::new(&dir).join(file);
            if !file.is_empty() && path.is_file() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
