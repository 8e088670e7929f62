//! The tests' one way into a real browser: headless Chromium (Debian's) driven by
//! `tests/browser/driver.mjs` (playwright-core), both installed by `scripts/browser.sh`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn driver() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/driver.mjs")
}

/// Whether the browser can run here. Outside CI a missing browser skips the test
/// loudly; with `CI` set it fails it.
pub fn available() -> bool {
    let installed = std::path::Path::new("/usr/bin/chromium").exists()
        && driver()
            .with_file_name("node_modules/playwright-core/package.json")
            .exists()
        && Command::new("node").arg("--version").output().is_ok();
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "the browser tests need Chromium and tests/browser/node_modules: run scripts/browser.sh"
        );
        // A test tool's own report, on purpose loud: the test did not run.
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "SKIPPED: no Chromium or browser driver here (scripts/browser.sh installs them)"
            );
        }
    }
    installed
}

/// Opens `url` and waits (up to 30 s) until `expression`, evaluated in the page, is
/// truthy; returns its value. Fails the test with the page's console otherwise.
pub async fn evaluate(url: &str, expression: &str) -> Value {
    let (url, expression) = (url.to_owned(), expression.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(driver())
            .arg(url)
            .arg(expression)
            .output()
            .expect("node runs the browser driver")
    })
    .await
    .expect("driver thread");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "the browser driver said: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(report["error"].is_null(), "in the browser: {report:#}");
    report["value"].clone()
}
