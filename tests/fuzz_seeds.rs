//! The fuzz targets' short version for `make test`: every seed (`fuzz/make_seeds.py` derives them
//! from `../shared/vectors` and `tests/config_corpus/` into a temporary directory, once per run)
//! and a few thousand deterministic mutations of them (xorshift: bit flips, interesting bytes,
//! truncations, splices, chunk copies, and for tokens re-encoded header/payload edits) run
//! through the same entry points `cargo fuzz` uses (`fuzz/src/harness.rs`), which panic when
//! an invariant breaks — above all "nothing that is not correctly signed by the fixed key set
//! is accepted", judged by OpenSSL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../fuzz/src/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine;
use cloudrun_oidc::jose::alg::Algorithm;
use cloudrun_oidc::jose::verifier;
use serde_json::{json, Value};

/// Mutations per target.
const MUTATIONS: usize = 20_000;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// The seed corpora, written once per test process by `fuzz/make_seeds.py` (the same seeds
/// `make fuzz` starts from; derived from the public vectors, so never committed).
fn seed_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_seed_dirs_of_finished_runs(tmp);
        let out = tmp.join(format!("fuzz-seeds-{}", std::process::id()));
        let run = std::process::Command::new("python3")
            .arg(root.join("fuzz/make_seeds.py"))
            .arg(&out)
            .output()
            .unwrap_or_else(|e| panic!("python3 fuzz/make_seeds.py: {e}"));
        assert!(
            run.status.success(),
            "fuzz/make_seeds.py failed: {}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        out
    })
}

/// `fuzz-seeds-<pid>` directories whose process is gone (a run per process keeps concurrent
/// runs of this test apart).
fn remove_seed_dirs_of_finished_runs(tmp: &Path) {
    for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("fuzz-seeds-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = seed_dir().join(target);
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let out: Vec<Vec<u8>> = names.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(out.len() >= 10, "{target}: only {} seeds", out.len());
    out
}

const INTERESTING: &[u8] = b"\x00\xff\x7f\x80.\"{}[]=%;, \\\n\r\t-_/+AZaz09eyJ";

/// One random byte-level edit of `data` (`pool` supplies splice material).
fn mutate_bytes(rng: &mut Rng, data: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let len = data.len();
    match rng.below(8) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        2 => data.truncate(rng.below(len + 1)),
        3 => {
            let other = &pool[rng.below(pool.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        4 if len > 0 => {
            let (a, b) = (rng.below(len), rng.below(len));
            let (a, b) = (a.min(b), a.max(b));
            let chunk = data[a..b].to_vec();
            let at = rng.below(len + 1);
            data.splice(at..at, chunk);
        }
        5 if len > 0 => {
            let (a, b) = (rng.below(len), rng.below(len));
            data.drain(a.min(b)..a.max(b));
        }
        6 => {
            let at = rng.below(len + 1);
            let b = INTERESTING[rng.below(INTERESTING.len())];
            let long = rng.below(16) == 0;
            let n = 1 + rng.below(if long { 9000 } else { 4 });
            data.splice(at..at, std::iter::repeat_n(b, n));
        }
        _ => {
            // Swap two bytes.
            if len > 1 {
                let (a, b) = (rng.below(len), rng.below(len));
                data.swap(a, b);
            }
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A structural edit of a compact token: re-encoded header or payload changes (alg confusion,
/// other kid, embedded key material, claims), or segments moved between tokens.
fn mutate_token(rng: &mut Rng, token: &str, pool: &[Vec<u8>]) -> Option<String> {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return None;
    }
    let mut header: Value = serde_json::from_slice(&engine.decode(parts[0]).ok()?).ok()?;
    let mut payload: Value = serde_json::from_slice(&engine.decode(parts[1]).ok()?).ok()?;
    let other = String::from_utf8_lossy(&pool[rng.below(pool.len())]).into_owned();
    let other: Vec<&str> = other.split('.').collect();
    let algs = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
        "Ed25519", "HS256", "none", "None", "rs256", "",
    ];
    let kids = [
        "rsa2048",
        "rsa3072",
        "p256",
        "p384",
        "ed25519",
        "",
        "../../dev/null",
        "x",
    ];
    match rng.below(10) {
        0 => header["alg"] = json!(algs[rng.below(algs.len())]),
        1 => header["kid"] = json!(kids[rng.below(kids.len())]),
        2 => {
            header.as_object_mut()?.remove("kid");
        }
        3 => {
            let extra = [
                ("jwk", json!({"kty": "oct", "k": "AAAA"})),
                ("jku", json!("https://attacker.example/jwks")),
                ("x5u", json!("https://attacker.example/x5u")),
                ("crit", json!(["exp"])),
                ("x5t", json!("AAAA")),
                ("b64", json!(false)),
            ];
            let (k, v) = extra[rng.below(extra.len())].clone();
            header[k] = v;
        }
        4 => payload["aud"] = json!(["urn:test:rs256", "other"][rng.below(2)]),
        5 => {
            payload["exp"] =
                [json!(0), json!(1_795_385_599i64), json!(9e18), json!(-1)][rng.below(4)].clone()
        }
        6 => {
            payload["iss"] =
                json!(["http://127.0.0.1:3000/", "http://127.0.0.1:3000"][rng.below(2)])
        }
        7 => {
            payload
                .as_object_mut()?
                .insert("sub".into(), json!("admin"));
        }
        8 if other.len() == 3 => {
            // Keep this token's header and payload, take another token's signature.
            return Some(format!("{}.{}.{}", parts[0], parts[1], other[2]));
        }
        _ if other.len() == 3 => {
            // Another token's header on this payload and signature.
            return Some(format!("{}.{}.{}", other[0], parts[1], parts[2]));
        }
        _ => return None,
    }
    Some(format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes()),
        parts[2]
    ))
}

fn run_target(target: &str, seed: u64) {
    let pool = seeds(target);
    for s in &pool {
        harness::run(target, s);
    }
    let mut rng = Rng(seed);
    for _ in 0..MUTATIONS {
        let mut data = pool[rng.below(pool.len())].clone();
        if target == "token" && rng.below(2) == 0 {
            let text = String::from_utf8_lossy(&data).into_owned();
            if let Some(t) = mutate_token(&mut rng, &text, &pool) {
                data = t.into_bytes();
            }
        }
        for _ in 0..1 + rng.below(4) {
            if target == "token" && rng.below(3) == 0 {
                break;
            }
            mutate_bytes(&mut rng, &mut data, &pool);
        }
        harness::run(target, &data);
    }
}

#[test]
fn token_seeds_and_mutations_never_accept_a_forgery() {
    // Positive control: the fixed world accepts its 18 genuine tokens (else the invariant
    // below would hold vacuously).
    let w = harness::world();
    for t in &w.valid_tokens {
        let pre = verifier::precheck(t, &w.rules, &w.limits, w.now).unwrap();
        let v = verifier::verify_signature(pre, &w.keys).unwrap();
        harness::check_accepted(t, &v);
    }
    run_target("token", 0x9e37_79b9_7f4a_7c15);
}

#[test]
fn oracle_refuses_what_the_keys_did_not_sign() {
    // Negative control for the OpenSSL oracle itself: a flipped signature bit, a signature
    // under another algorithm, a signature moved to another message.
    let w = harness::world();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for t in &w.valid_tokens {
        let (input, sig) = t.rsplit_once('.').unwrap();
        let sig = engine.decode(sig).unwrap();
        let pre = verifier::precheck(t, &w.rules, &w.limits, w.now).unwrap();
        let alg = pre.alg;
        let signed = w
            .oracle
            .iter()
            .filter(|(_, k)| harness::openssl_verifies(alg, k, input.as_bytes(), &sig))
            .count();
        assert_eq!(signed, 1, "{t}");
        let mut bad = sig.clone();
        bad[3] ^= 0x10;
        let other_alg = if alg == Algorithm::Rs256 {
            Algorithm::Rs512
        } else {
            Algorithm::Rs256
        };
        for (_, k) in &w.oracle {
            assert!(!harness::openssl_verifies(alg, k, input.as_bytes(), &bad));
            assert!(!harness::openssl_verifies(
                alg,
                k,
                format!("{input}x").as_bytes(),
                &sig
            ));
            assert!(!harness::openssl_verifies(
                other_alg,
                k,
                input.as_bytes(),
                &sig
            ));
        }
    }
}

#[test]
#[should_panic(expected = "ACCEPTED A TOKEN NO KEY OF THE SET SIGNED")]
fn check_accepted_catches_a_forged_acceptance() {
    // The invariant check must fail when handed a "verified" token the keys did not sign.
    let w = harness::world();
    let t = &w.valid_tokens[0];
    let pre = verifier::precheck(t, &w.rules, &w.limits, w.now).unwrap();
    let v = verifier::verify_signature(pre, &w.keys).unwrap();
    let (input, _) = t.rsplit_once('.').unwrap();
    let forged = format!("{input}.{}", b64(&[7u8; 256]));
    harness::check_accepted(&forged, &v);
}

#[test]
fn jwks_seeds_and_mutations() {
    run_target("jwks", 0x0123_4567_89ab_cdef);
}

#[test]
fn discovery_seeds_and_mutations() {
    run_target("discovery", 0xdead_beef_cafe_f00d);
}

#[test]
fn config_seeds_and_mutations() {
    run_target("config", 0x1357_9bdf_2468_ace0);
}

#[test]
fn claims_seeds_and_mutations() {
    run_target("claims", 0x0f0f_f0f0_1234_4321);
}

#[test]
fn extractor_seeds_and_mutations() {
    run_target("extractor", 0x5555_aaaa_3333_cccc);
}

#[test]
fn every_target_has_a_seed_directory() {
    for target in harness::TARGETS {
        assert!(!seeds(target).is_empty());
    }
}
