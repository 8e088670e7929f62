//! `openapi [--write]`: prints the OpenAPI document the functions' types make, or
//! writes it to api/openapi.json and the request collection to api/requests/ (commit
//! them: the app's TypeScript is generated from the document).

// A command-line tool: the document is its output.
#![allow(clippy::print_stdout)]

fn main() -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(&local::openapi::document())? + "\n";
    if std::env::args().nth(1).as_deref() == Some("--write") {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::write(root.join(local::openapi::PATH), text)?;
        let requests = root.join(local::openapi::REQUESTS);
        std::fs::create_dir_all(&requests)?;
        for old in std::fs::read_dir(&requests)? {
            std::fs::remove_file(old?.path())?;
        }
        for (file, text) in local::openapi::requests() {
            std::fs::write(requests.join(file), text)?;
        }
        println!(
            "wrote {} and {}",
            local::openapi::PATH,
            local::openapi::REQUESTS
        );
    } else {
        print!("{text}");
    }
    Ok(())
}
