#!/usr/bin/env bash
# A short fuzz run of every target (default 60 s in all), as .ci/run does:
#   bash fuzz/run.sh [SECONDS]
# Rust targets (cargo-fuzz, AddressSanitizer) need the nightly toolchain and
# are skipped with a notice without it; cargo-fuzz is installed if missing.
# Python targets need atheris (pip install ".[fuzz]"); without it their
# corpus is only replayed. Each run starts from a scratch copy of the
# checked-in corpus; an input that fails is copied into
# fuzz/corpus/<target>/crash-<sha1> (check it in: cargo test and pytest
# replay it from then on) and the script exits 1.
# Long runs: the same commands with -runs=10000000 (README "Fuzzing").
set -euo pipefail
cd "$(dirname "$0")"
total=${1:-60}
rust_targets=(npy_file raw_source parquet_page)
py_targets=(npy_header cache_sidecar embed_records parquet_chunk)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

keep_crashes() {  # target corpus-name
  local found=0
  for f in "$scratch"/crash-"$1"-*; do
    [ -e "$f" ] || continue
    local kept="corpus/$2/crash-$(sha1sum "$f" | cut -c1-16)"
    cp "$f" "$kept"
    echo "fuzz: $1 failed on an input, kept as fuzz/$kept" >&2
    found=1
  done
  return $found
}

status=0
have_fuzz() {
  cargo fuzz --version >/dev/null 2>&1 && return 0
  echo "fuzz: installing cargo-fuzz (once, about 3 minutes)"
  cargo install cargo-fuzz --locked --quiet
}
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: SKIPPED the Rust targets: no nightly toolchain (rustup toolchain install nightly)"
elif ! have_fuzz; then
  echo "fuzz: SKIPPED the Rust targets: cargo-fuzz could not be installed (cargo install cargo-fuzz)"
else
  cargo +nightly fuzz build -O
  each=$(( total / 2 / ${#rust_targets[@]} ))
  for t in "${rust_targets[@]}"; do
    mkdir -p "$scratch/$t" && cp corpus/"$t"/* "$scratch/$t/"
    echo "fuzz: $t for ${each} s"
    # LeakSanitizer off for raw_source: it scores on scoped worker threads,
    # and libFuzzer's per-input leak check races their teardown (a thread's
    # handle is freed just after the scope returns), reporting a leak that
    # replaying the input never reproduces (google/sanitizers#757). The
    # same race fails LeakSanitizer's check at exit, which -detect_leaks
    # does not govern: ASAN_OPTIONS does.
    leaks=1; [ "$t" = raw_source ] && leaks=0
    ASAN_OPTIONS="detect_leaks=$leaks" cargo +nightly fuzz run -O "$t" "$scratch/$t" -- -max_total_time="$each" -timeout=10 \
      -detect_leaks="$leaks" -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$scratch/crash-$t-" \
      2>&1 | grep -E '^stat::number_of_executed_units|^Done|ERROR|panicked' || true
    keep_crashes "$t" "$t" || status=1
  done
fi

each=$(( total / 2 / ${#py_targets[@]} ))
for t in "${py_targets[@]}"; do
  mkdir -p "$scratch/py_$t" && cp corpus/py_"$t"/* "$scratch/py_$t/"
  echo "fuzz: python $t for ${each} s"
  python python/"$t".py "$scratch/py_$t" -max_total_time="$each" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$scratch/crash-$t-" \
    2>&1 | grep -E '^stat::number_of_executed_units|^Done|atheris is not|replayed|Error' || true
  keep_crashes "$t" "py_$t" || status=1
done
exit $status
