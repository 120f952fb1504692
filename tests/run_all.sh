#!/usr/bin/env bash
# Every check and test of the project: Rust lint + unit tests, Python lint + tests.
# Expects the package installed (pip install ".[test]"), as README's Quickstart does.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --release --all-targets --all-features -- -D warnings
cargo test --release
ruff check python tests benches
python -m pytest -q tests
# about 60 s of every fuzz target (Rust ones need the nightly toolchain)
bash fuzz/run.sh 60
