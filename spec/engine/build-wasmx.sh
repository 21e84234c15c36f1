#!/usr/bin/env bash
# Builds Kong's engine as Kong 3.9 builds it: nginx 1.25.3 (the core of OpenResty 1.25.3.2) with
# Kong/ngx_wasm_module 9136e46 (Kong 3.9.x's NGX_WASM_MODULE) on the wasmtime 26.0.0 C API
# (Kong 3.9.x's WASMTIME, built from the crates.io crate wasmtime-c-api-impl), with Kong's
# property namespace (`kong.route_name`, ...). See ../shared/wasmx/README.md.
#
#   spec/engine/build-wasmx.sh OUT [SOURCES]
#
# OUT gets bin/nginx (a wrapper that finds lib/libwasmtime.so), sbin/nginx and lib/. SOURCES is a
# directory holding nginx-release-1.25.3.tar.gz and ngx_wasm_module-9136e46.tar.gz (offline);
# without it both come from GitHub. wasmtime comes from crates.io either way.
# 7½ minutes on 2 idle cores, 7 of them for wasmtime (up to 20 on a busy machine).
set -euo pipefail

out=$(mkdir -p "$1" && cd "$1" && pwd)
sources=${2:-}
nginx_tag=release-1.25.3
module_commit=9136e463a6f1d80755ce66c88c3ddecd0eb5e25d
wasmtime_version=26.0.0
build="$out/build"
mkdir -p "$build"
sudo=$([ "$(id -u)" = 0 ] || echo sudo)

need=""
for pkg in cmake libpcre2-dev zlib1g-dev libssl-dev build-essential; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
done
if [ -n "$need" ]; then
  echo "== installing:$need"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $need
fi

fetch() { # name, local file, url
  if [ -n "$sources" ] && [ -f "$sources/$2" ]; then
    echo "== $1 from $sources/$2"
    cp "$sources/$2" "$build/$2"
  else
    echo "== $1 from $3"
    curl -fsSL --retry 3 -o "$build/$2" "$3"
  fi
}
fetch nginx nginx-release-1.25.3.tar.gz \
  "https://github.com/nginx/nginx/archive/refs/tags/$nginx_tag.tar.gz"
fetch ngx_wasm_module ngx_wasm_module-9136e46.tar.gz \
  "https://github.com/Kong/ngx_wasm_module/archive/$module_commit.tar.gz"

rm -rf "$build/nginx" "$build/ngx_wasm_module"
mkdir -p "$build/nginx" "$build/ngx_wasm_module"
tar xzf "$build/nginx-release-1.25.3.tar.gz" -C "$build/nginx" --strip-components=1
tar xzf "$build/ngx_wasm_module-9136e46.tar.gz" -C "$build/ngx_wasm_module" --strip-components=1

# The wasmtime C API: a crate whose only content is the crates.io implementation.
capi="$build/wasmtime-c-api"
mkdir -p "$capi/src"
cat > "$capi/Cargo.toml" <<TOML
[package]
name = "wasmtime-capi-shim"
version = "$wasmtime_version"
edition = "2021"
publish = false

[workspace]

[lib]
name = "wasmtime"
crate-type = ["cdylib"]
path = "src/lib.rs"

[dependencies.wasmtime-c-api-impl]
version = "=$wasmtime_version"
default-features = false
features = ["cranelift", "wat", "wasi", "cache", "parallel-compilation", "profiling", "threads", "async", "gc", "addr2line", "demangle", "coredump"]

[profile.release]
strip = "debuginfo"
TOML
echo 'pub use wasmtime_c_api::*;' > "$capi/src/lib.rs"
# The exact dependency versions of the reference build, when the sources directory has them.
if [ -n "$sources" ] && [ -f "$sources/wasmtime-c-api/Cargo.lock" ]; then
  cp "$sources/wasmtime-c-api/Cargo.lock" "$capi/Cargo.lock"
fi
echo "== wasmtime $wasmtime_version C API (cargo build --release)"
(cd "$capi" && cargo build --release --quiet)

impl_dir=$(cd "$capi" && cargo metadata --format-version 1 \
  | python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="wasmtime-c-api-impl").rsplit("/",1)[0])')
conf_h=$(ls -t "$capi"/target/release/build/wasmtime-c-api-impl-*/out/include/wasmtime/conf.h | head -1)
inc="$build/include"
rm -rf "$inc"
cp -r "$impl_dir/include" "$inc"
cp "$conf_h" "$inc/wasmtime/conf.h"
# The crate's build script leaves this feature out of conf.h (no line, or `#undef`) although it
# is compiled in.
grep -q '^#define WASMTIME_FEATURE_WAT' "$inc/wasmtime/conf.h" \
  || sed -i -e '/WASMTIME_FEATURE_WAT/d' \
    -e 's|^#endif // WASMTIME_CONF_H|#define WASMTIME_FEATURE_WAT\n#endif // WASMTIME_CONF_H|' "$inc/wasmtime/conf.h"
grep -q '^#define WASMTIME_FEATURE_WAT' "$inc/wasmtime/conf.h"

mkdir -p "$out/lib" "$out/sbin" "$out/bin"
cp "$capi/target/release/libwasmtime.so" "$out/lib/"

echo "== nginx $nginx_tag + ngx_wasm_module ${module_commit:0:7}"
cd "$build/nginx"
NGX_WASM_RUNTIME=wasmtime NGX_WASM_RUNTIME_INC="$inc" NGX_WASM_RUNTIME_LIB="$out/lib" NGX_WASM_CARGO=0 \
  auto/configure --prefix="$out/nginx" --with-debug --with-http_ssl_module \
  --with-cc-opt=-DNGX_WASM_HOST_PROPERTY_NAMESPACE=kong \
  --add-module="$build/ngx_wasm_module" > "$build/configure.log"
make -j"$(nproc)" > "$build/make.log" 2>&1 || { tail -40 "$build/make.log"; exit 1; }
cp objs/nginx "$out/sbin/nginx"

cat > "$out/bin/nginx" <<'SH'
#!/bin/sh
# nginx + Kong's ngx_wasm_module: finds its libwasmtime.so next to itself.
here=$(cd "$(dirname "$0")/.." && pwd)
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/sbin/nginx" "$@"
SH
chmod +x "$out/bin/nginx"
"$out/bin/nginx" -V
echo "== built: $out/bin/nginx"
