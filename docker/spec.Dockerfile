# The test world's servers (mock IdP, mock Google, mock AWS, Cloud Run stand-in), built from spec/.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --locked --profile spec -p cloudrun-spec --bin mock-idp --bin mock-google --bin mock-aws --bin cloudrun

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/spec/mock-idp /src/target/spec/mock-google /src/target/spec/mock-aws /src/target/spec/cloudrun /usr/local/bin/
