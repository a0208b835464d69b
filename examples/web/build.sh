#!/usr/bin/env bash
# Builds the browser demo into examples/web/pkg/: wgml and examples/web/main.rs for wasm32,
# then wasm-bindgen's JavaScript glue. Needs `rustup target add wasm32-unknown-unknown` and
# `cargo install wasm-bindgen-cli --version 0.2.130` (the lockfile's wasm-bindgen).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --target wasm32-unknown-unknown --example web
wasm-bindgen --target web --no-typescript --out-dir examples/web/pkg \
    target/wasm32-unknown-unknown/release/examples/web.wasm
echo "built examples/web/pkg; serve with: python3 -m http.server -d examples/web 8000"
