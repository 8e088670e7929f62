//! The house plan: the folders of functions/ are the one list of functions, and every
//! other place that lists them agrees with it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `scripts/functions.py ARGS`: its status and what it printed.
fn functions_py(args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(root().join("scripts/functions.py"))
        .args(args)
        .output()
        .expect("python3 runs scripts/functions.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_runner_serves_exactly_the_functions_of_the_folders_with_their_kinds() {
    let (ok, listed) = functions_py(&["json"]);
    assert!(ok, "{listed}");
    let listed: Vec<Value> = serde_json::from_str(&listed).expect("json");
    let served = local::functions();
    let kind = |f: &Value| {
        let text = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
        (text("name"), text("kind"))
    };
    let from_folders: Vec<(String, String)> = listed.iter().map(kind).collect();
    let from_runner: Vec<(String, String)> = served
        .iter()
        .map(|f| (f.name.to_owned(), f.kind.as_str().to_owned()))
        .collect();
    assert_eq!(
        from_runner, from_folders,
        "local::functions() (the runner, the tests, the benchmark) and the crates' \
         [package.metadata.stories] disagree"
    );
    for (f, meta) in served.iter().zip(&listed) {
        for var in &f.requires {
            assert!(
                meta["required"]
                    .as_array()
                    .is_some_and(|r| r.contains(&Value::from(var.to_owned()))),
                "functions/{}/Cargo.toml: {var} is needed at cold start but not in `required`",
                f.name
            );
        }
    }
}

#[test]
fn every_place_that_lists_functions_agrees_with_the_folders() {
    let (ok, report) = functions_py(&["check"]);
    assert!(ok, "{report}");
}

#[test]
fn the_connection_budget_holds_and_refuses_a_function_raised_past_it() {
    let (ok, report) = functions_py(&["budget"]);
    assert!(ok, "{report}");
    // One function's reserved concurrency raised far past its share.
    let (ok, report) = functions_py(&["budget", "get-signed-playback-url=500"]);
    assert!(!ok, "a plan over the pooler's limit passed: {report}");
    assert!(
        report.contains("more than the pooler's") && report.contains("deploy/connections.toml"),
        "{report}"
    );
}

#[test]
fn rustfmt_formats_every_line_of_the_functions() {
    let mut long = Vec::new();
    let mut stack = vec![root().join("functions")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read functions/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read");
                for (i, line) in text.lines().enumerate() {
                    if line.chars().count() > 100 {
                        long.push(format!("{}:{}", path.display(), i + 1));
                    }
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "lines over rustfmt's 100 columns (rustfmt skips what it can't fit: move the code \
         out of the closure, the SQL into sql.rs): {long:#?}"
    );
}

#[test]
fn the_release_profile_keeps_unwinding_so_a_panic_is_a_reported_500() {
    // cargo lambda build adds panic = "abort" unless [profile.release] says otherwise:
    // a handler panic would then be Lambda's bare 502, no envelope, no Sentry event.
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let release = manifest
        .split("[profile.release]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [profile.release] section");
    assert!(
        release
            .lines()
            .any(|l| l.trim().replace(' ', "") == "panic=\"unwind\""),
        "[profile.release] must set panic = \"unwind\":{release}"
    );
}
