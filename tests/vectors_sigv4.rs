//! AWS's own Signature Version 4 test suite (`../shared/vectors/aws-sigv4/`, from botocore 1.35.0's sdist)
//! run through the filter's signer (`src/google/federation/sigv4.rs`): for every request, the canonical request,
//! the string to sign and the `Authorization` value must be AWS's, byte for byte.
//!
//! Not run: `normalize-path/` (path normalisation — `.`/`..`/`//` segments — which the AWS
//! subject token never needs and the signer does not do) and `post-sts-header-after` (the
//! session token is added after signing; the filter always signs it, as Google's STS expects).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use cloudrun_oidc::google::federation::sigv4::{self, Credentials, Request};
use std::fs;
use std::path::{Path, PathBuf};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// The session token `get-vanilla-with-session-token` signs (it is not in its `.req`).
const SUITE_SESSION_TOKEN: &str =
    "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";

fn suite() -> PathBuf {
    common::vector_path("aws-sigv4")
}

/// Every case directory (one holding a `<name>.req`), recursively.
fn cases(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.join(format!("{name}.req")).is_file() {
                out.push(path.clone());
            }
            cases(&path, out);
        }
    }
}

/// A `.req` file: request line, `Name:value` headers (continuation lines join the previous value
/// with a space), a blank line, the body.
struct Parsed {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn parse_req(text: &str) -> Parsed {
    let (head, body) = match text.split_once("\n\n") {
        Some((h, b)) => (h, b.as_bytes().to_vec()),
        None => (text, Vec::new()),
    };
    let mut lines = head.lines();
    let request_line = lines.next().unwrap();
    let (method, rest) = request_line.split_once(' ').unwrap();
    let target = rest.rsplit_once(" HTTP/").unwrap().0;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let last = headers.last_mut().unwrap();
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else {
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_string(), value.to_string()));
        }
    }
    Parsed {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body,
    }
}

fn read(dir: &Path, ext: &str) -> String {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    fs::read_to_string(dir.join(format!("{name}.{ext}"))).unwrap()
}

#[test]
fn aws_sigv4_test_suite() {
    let mut all = Vec::new();
    cases(&suite(), &mut all);
    all.sort();
    let mut checked = Vec::new();
    for dir in all {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let relative = dir
            .strip_prefix(suite())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if relative.starts_with("normalize-path") || name == "post-sts-header-after" {
            continue;
        }
        let mut req = parse_req(&read(&dir, "req"));
        if name == "get-vanilla-with-session-token" {
            req.headers
                .push(("X-Amz-Security-Token".into(), SUITE_SESSION_TOKEN.into()));
        }
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let request = Request {
            method: &req.method,
            path: &req.path,
            query: &req.query,
            headers: &headers,
            payload: &req.body,
        };
        let credentials = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: SECRET.into(),
            session_token: None,
        };
        let signature = sigv4::sign_prepared(
            &credentials,
            "us-east-1",
            "service",
            "20150830T123600Z",
            &request,
        );
        assert_eq!(
            signature.canonical_request,
            read(&dir, "creq"),
            "{relative}: canonical request"
        );
        assert_eq!(
            signature.string_to_sign,
            read(&dir, "sts"),
            "{relative}: string to sign"
        );
        assert_eq!(
            signature.authorization,
            read(&dir, "authz").trim_end(),
            "{relative}: Authorization"
        );
        checked.push(relative);
    }
    assert!(checked.len() >= 25, "{} cases: {checked:?}", checked.len());
}
