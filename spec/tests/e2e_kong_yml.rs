//! `kong/kong.yml` as shipped, through the Kong stand-in: the demo binary runs every route of
//! the example (no token, valid, expired, missing role, scopes, second issuer, no filter) and
//! exits non-zero if any outcome differs. Running it here keeps the example and `make demo` true.

use anyhow::Result;
use cloudrun_spec::testkit::bin_path;
use std::process::Command;

#[test]
fn shipped_kong_yml_behaves_as_the_demo_shows() -> Result<()> {
    let output = Command::new(bin_path("demo")?).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("outcomes as expected"), "{stdout}");
    Ok(())
}
