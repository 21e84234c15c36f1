//! The signature vectors through the production code generation. The shipped `.wasm` verifies
//! RSA with a SIMD128 dot product (`src/jose/rsa_public.rs`) that native tests never compile; here
//! the vector test files of the filter crate (`tests/vectors_*.rs`: Wycheproof RSA PKCS#1 v1.5
//! and PSS, ECDSA, Ed25519, JWS and JWK; the RFC examples; real IdP tokens; the attack corpora)
//! are built for `wasm32-wasip1` with the release profile and `.cargo/config.toml`'s
//! `+simd128`, exactly like `make build`, and run in wasmtime (default engine, as the Kong
//! stand-in and Kong run filters). Every test asserts the same exact accept/refuse counts as
//! natively; `vectors_wycheproof::wasm_build_runs_the_simd128_rsa_path` checks the SIMD path
//! is the one compiled in.
//!
//! The build uses its own target directory (`target/wasm-vectors`): the outer `cargo test`
//! holds the workspace's. The first build takes a few minutes.

use anyhow::{bail, Context, Result};
use cloudrun_spec::testkit::process::{repo_root, vectors_dir};
use std::path::{Path, PathBuf};
use std::process::Command;
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::preview1::{self, WasiP1Ctx};
use wasmtime_wasi::{DirPerms, FilePerms, I32Exit, WasiCtxBuilder};

/// The vector test files, and the fewest tests each must run in wasm.
const VECTOR_TESTS: [(&str, usize); 4] = [
    ("vectors_wycheproof", 9),
    ("vectors_rfc", 3),
    ("vectors_idp", 3),
    ("vectors_attacks", 5),
];

/// Builds the vector test binaries for wasm32-wasip1 (release profile, SIMD128); their paths.
fn build(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .env("CARGO_TARGET_DIR", root.join("target/wasm-vectors"))
        // The target's rustflags come from .cargo/config.toml; an inherited RUSTFLAGS would
        // replace them.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .args([
            "test",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip1",
            "-p",
            "cloudrun-oidc",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ]);
    for (name, _) in VECTOR_TESTS {
        cmd.args(["--test", name]);
    }
    let output = cmd.output().context("running cargo")?;
    if !output.status.success() {
        bail!(
            "building the vector tests for wasm32-wasip1 failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut built = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let name = msg["target"]["name"].as_str().unwrap_or_default();
        if let (Some(exe), true) = (
            msg["executable"].as_str(),
            VECTOR_TESTS.iter().any(|(n, _)| *n == name),
        ) {
            built.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    if built.len() != VECTOR_TESTS.len() {
        bail!(
            "expected {} test binaries, got {built:?}",
            VECTOR_TESTS.len()
        );
    }
    Ok(built)
}

/// Runs one libtest binary in wasmtime with the repository and the public test data readable at
/// their own paths (the tests find `../shared/vectors` through `CARGO_MANIFEST_DIR`, or through
/// `VECTORS_DIR`, which is passed on). Exit status (`-1`: a trap, which is
/// how a failed assertion ends in wasm32, where panics abort) and output.
fn run(engine: &Engine, root: &Path, wasm: &Path) -> Result<(i32, String)> {
    let module = Module::from_file(engine, wasm).with_context(|| wasm.display().to_string())?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
    preview1::add_to_linker_sync(&mut linker, |ctx| ctx)?;
    // The filter crate's proxy-wasm exports bring `env` imports along; tests never call them.
    linker.define_unknown_imports_as_traps(&module)?;
    let out = MemoryOutputPipe::new(64 << 20);
    let root_str = root.to_str().context("repository path is not UTF-8")?;
    let vectors = vectors_dir();
    let vectors_str = vectors.to_str().context("vectors path is not UTF-8")?;
    let mut builder = WasiCtxBuilder::new();
    builder
        // --nocapture: a failed assertion aborts the module, so its message must be out already.
        .args(&["vectors.wasm", "--test-threads=1", "--nocapture"])
        .stdout(out.clone())
        .stderr(out.clone())
        .env("VECTORS_DIR", vectors_str)
        .preopened_dir(root, root_str, DirPerms::READ, FilePerms::READ)?
        .preopened_dir(&vectors, vectors_str, DirPerms::READ, FilePerms::READ)?;
    let mut store = Store::new(engine, builder.build_p1());
    let instance = linker.instantiate(&mut store, &module)?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    let (status, trap) = match start.call(&mut store, ()) {
        Ok(()) => (0, String::new()),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => (exit.0, String::new()),
            None => (-1, format!("\ntrapped: {e:#}")),
        },
    };
    let output = String::from_utf8_lossy(&out.contents()).into_owned();
    Ok((status, output + &trap))
}

/// `N` from libtest's `test result: ok. N passed; …` line.
fn passed(output: &str) -> Option<usize> {
    let line = output.lines().find(|l| l.starts_with("test result: ok."))?;
    line.strip_prefix("test result: ok. ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn signature_vectors_give_the_same_verdicts_in_wasm_with_simd128() -> Result<()> {
    let root = repo_root();
    let engine = Engine::default();
    let mut failures = Vec::new();
    for (name, wasm) in build(&root)? {
        let (status, output) = run(&engine, &root, &wasm)?;
        let minimum = VECTOR_TESTS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(1, |(_, m)| *m);
        match passed(&output) {
            Some(n) if status == 0 && n >= minimum => {
                eprintln!("{name} in wasm32 (simd128): {n} tests passed");
            }
            _ => failures.push(format!("{name}: exit {status}\n{output}")),
        }
    }
    if !failures.is_empty() {
        bail!("vector tests failed in wasm:\n{}", failures.join("\n"));
    }
    Ok(())
}
