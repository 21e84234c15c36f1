#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, taken from the public test data and tests/config_corpus/.

  python3 fuzz/make_seeds.py [OUT]

Writes OUT/<target>/<sha1 of content> (libFuzzer's naming; OUT defaults to fuzz/seeds), small and
deterministic: re-running gives the same files. The public test data is read from VECTORS_DIR, else
../shared/vectors beside the repository; seeds are derived from it, so they are never committed:
`make fuzz` and tests/fuzz_seeds.rs run this first.

  token      compact JWS strings found anywhere in the vectors (the node-oidc-provider samples and
             the jwt_tool attacks on them first: they reach the signature step of the fixed world)
  jwks       JWKS documents (objects with a "keys" array), and single JWKs wrapped in one
  discovery  discovery documents (objects with "jwks_uri" or "issuer")
  config     tests/config_corpus/{valid,invalid,parser_only}/*
  claims     decoded JWT payloads that are JSON objects
  extractor  header/path/cookie triples (0xff-separated) carrying sample tokens
"""

import base64
import hashlib
import json
import os
import re
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VECTORS = os.environ.get("VECTORS_DIR") or os.path.join(os.path.dirname(ROOT), "shared", "vectors")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "fuzz", "seeds")
MAX_SEED_BYTES = 16 * 1024
MAX_PER_TARGET = {"token": 400, "jwks": 150, "discovery": 80, "config": 120, "claims": 150, "extractor": 60}
JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$")
# Large per-primitive Wycheproof files hold hex, not JOSE: nothing to seed from them.
SKIP_PREFIXES = ("wycheproof/ecdsa_", "wycheproof/rsa_", "wycheproof/ed25519_", "licenses/")
# Sources that reach deep into the fixed world come first.
FIRST = ("idp/node-oidc-provider/", "attacks/jwt_tool-generated/")


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def walk(value, found):
    if isinstance(value, dict):
        if isinstance(value.get("keys"), list):
            found["jwks"].append(value)
        elif value.get("kty") is not None:
            found["jwks"].append({"keys": [value]})
        if "jwks_uri" in value or ("issuer" in value and "authorization_endpoint" in value):
            found["discovery"].append(value)
        for v in value.values():
            walk(v, found)
    elif isinstance(value, list):
        for v in value:
            walk(v, found)
    elif isinstance(value, str) and len(value) > 20 and JWS.match(value):
        found["token"].append(value)
        try:
            payload = json.loads(b64url_decode(value.split(".")[1]))
            if isinstance(payload, dict):
                found["claims"].append(payload)
        except (ValueError, UnicodeDecodeError):
            pass


def json_files():
    files = []
    for dirpath, _, names in os.walk(VECTORS):
        for name in names:
            if name.endswith(".json"):
                rel = os.path.relpath(os.path.join(dirpath, name), VECTORS)
                if not rel.startswith(SKIP_PREFIXES) and "history" not in rel:
                    files.append(rel)
    return sorted(files, key=lambda rel: (not rel.startswith(FIRST), rel))


def main():
    if not os.path.isfile(os.path.join(VECTORS, "README.md")):
        sys.exit(f"make_seeds: the public test data is not at {VECTORS} (../shared/vectors or VECTORS_DIR)")
    found = {t: [] for t in MAX_PER_TARGET}
    for rel in json_files():
        try:
            with open(os.path.join(VECTORS, rel), "rb") as f:
                walk(json.load(f), found)
        except (ValueError, UnicodeDecodeError) as e:
            print(f"skip {rel}: {e}", file=sys.stderr)
    seeds = {t: [] for t in MAX_PER_TARGET}
    seeds["token"] = [t.encode() for t in found["token"]]
    compact = lambda v: json.dumps(v, separators=(",", ":")).encode()
    seeds["jwks"] = [compact(v) for v in found["jwks"]]
    seeds["discovery"] = [compact(v) for v in found["discovery"]]
    seeds["claims"] = [compact(v) for v in found["claims"]]
    corpus = os.path.join(ROOT, "tests", "config_corpus")
    for kind in ("valid", "invalid", "parser_only"):
        d = os.path.join(corpus, kind)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if name.endswith(".json"):
                with open(os.path.join(d, name), "rb") as f:
                    seeds["config"].append(f.read())
    with open(os.path.join(VECTORS, "idp/node-oidc-provider/samples/tokens.json")) as f:
        samples = json.load(f)
    for i, token in enumerate(samples["access_tokens"].values()):
        t = token.encode()
        seeds["extractor"] += [
            b"\x00\xffBearer " + t,
            b"\x01\xffbearer  " + t + b" \t\xff/orders?x=1&access_token=" + t + b"&t=" + t,
            b"\x00\xff" + t + b"\xff/p?t=" + t.replace(b".", b"%2E") + b"\xffa=b; session=\"" + t + b"\"",
            b"\x00\xffBasic abc\xff\xffsession=" + t + b"; session=" + t[:-1],
        ]
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    for target, items in seeds.items():
        d = os.path.join(OUT, target)
        os.makedirs(d)
        seen = set()
        for item in items:
            if len(item) > MAX_SEED_BYTES:
                continue
            name = hashlib.sha1(item).hexdigest()
            if name in seen:
                continue
            seen.add(name)
            with open(os.path.join(d, name), "wb") as f:
                f.write(item)
            if len(seen) >= MAX_PER_TARGET[target]:
                break
        size = sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d))
        print(f"{target:10} {len(seen):4} seeds {size // 1024:5} KiB")


if __name__ == "__main__":
    main()
