# Kong 3.9 with the cloudrun_oidc filter, built from this repository (no pre-built files needed).
FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip1
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target wasm32-wasip1 -p cloudrun-oidc

FROM kong:3.9
COPY --from=build /src/target/wasm32-wasip1/release/cloudrun_oidc.wasm /opt/wasm/cloudrun_oidc.wasm
COPY kong/cloudrun_oidc.meta.json /opt/wasm/cloudrun_oidc.meta.json
COPY kong/kong.yml /kong/kong.yml
