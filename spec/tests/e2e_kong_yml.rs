//! `kong/kong.yml` as shipped, on both engines: the demo binary runs every route of the example
//! (no token, valid, expired, missing role, scopes, second issuer, no filter) and exits non-zero if
//! any outcome differs or, on the real engine, if a worker crashed. Running it here keeps the
//! example and `make demo` true.

use anyhow::Result;
use cloudrun_spec::engine_tests;
use cloudrun_spec::testkit::bin_path;
use cloudrun_spec::testkit::engine::Engine;
use std::process::Command;

fn shipped_kong_yml_behaves_as_the_demo_shows(engine: Engine) -> Result<()> {
    let output = Command::new(bin_path("demo")?)
        .env("ENGINE", engine.name())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("outcomes as expected"), "{stdout}");
    Ok(())
}

engine_tests!(shipped_kong_yml_behaves_as_the_demo_shows);
