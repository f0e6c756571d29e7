#!/usr/bin/env bash
# The side-by-side benchmark of scrapyd-rs and Scrapyd 1.6.0 (see
# bench/README.md). One command:
#
#     bash bench/run.sh            # default run, about 10 minutes on 2 cores
#     bash bench/run.sh --full     # + 100k scheduled jobs and 1M-job listjobs
#
# It prepares everything, then bench/bench.py runs both daemons on this
# machine, prints a Markdown table and writes bench/results.json; then
# bench/cloud.py measures the Scrapy Cloud side of scrapyd-rs and writes
# bench/cloud-results.json. Extra arguments go to bench.py (`bash
# bench/run.sh --help`).
#
# Environment:
#   SCRAPYD_BENCH_VENV        the venv (default bench/.venv), created or
#                             refreshed from bench/requirements.txt
#   SCRAPYD_BENCH_TARGET_DIR  cargo target dir for both release builds
#                             (default $CARGO_TARGET_DIR, else target/)
#   SCRAPYD_RS_BIN            use this scrapyd-rs binary instead of building
#   SCRAPYD_BENCH_LOADGEN     wrk or oha (default: wrk if installed, else oha
#                             if installed, else wrk is installed with apt-get)
#   SCRAPYD_BENCH_CLOUD       1 runs bench/cloud.py (the Scrapy Cloud figures)
#                             after bench.py, 0 does not; by default it runs
#                             after a whole run (no arguments, or --full)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

# --- Python: Scrapyd 1.6.0, Scrapy, scrapyd-client, setuptools -------------
venv="${SCRAPYD_BENCH_VENV:-$repo/bench/.venv}"
if [ ! -x "$venv/bin/python" ] || ! cmp -s bench/requirements.txt "$venv/.requirements"; then
    echo "== creating the benchmark venv in $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r bench/requirements.txt
    cp bench/requirements.txt "$venv/.requirements"
fi

# --- The load generator ------------------------------------------------------
loadgen="${SCRAPYD_BENCH_LOADGEN:-}"
if [ -z "$loadgen" ]; then
    if command -v wrk >/dev/null; then
        loadgen=wrk
    elif command -v oha >/dev/null; then
        loadgen=oha
    else
        loadgen=wrk
    fi
fi
if [ "$loadgen" = wrk ] && ! command -v wrk >/dev/null; then
    echo "== installing wrk (Debian package)" >&2
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi

# --- Release builds: scrapyd-rs and the bare hyper baseline -------------------
target_dir="${SCRAPYD_BENCH_TARGET_DIR:-${CARGO_TARGET_DIR:-$repo/target}}"
if [ -n "${SCRAPYD_RS_BIN:-}" ]; then
    rs_bin="$SCRAPYD_RS_BIN"
    built_from="prebuilt binary $rs_bin"
else
    echo "== building scrapyd-rs (release) into $target_dir" >&2
    cargo build --release --locked --quiet --target-dir "$target_dir" \
        --manifest-path "$repo/Cargo.toml"
    rs_bin="$target_dir/release/scrapyd-rs"
    built_from="the work tree at $(git -C "$repo" describe --always --dirty 2>/dev/null || echo '?')"
fi
echo "== building the bare hyper baseline (release) into $target_dir" >&2
cargo build --release --locked --quiet --target-dir "$target_dir" \
    --manifest-path "$repo/bench/hyper-baseline/Cargo.toml"
hyper_bin="$target_dir/release/hyper-baseline"

"$venv/bin/python" bench/bench.py \
    --scrapyd-rs "$rs_bin" --rs-built-from "$built_from" --hyper "$hyper_bin" \
    --loadgen "$loadgen" "$@"

# --- The Scrapy Cloud figures (bench/cloud.py): after a whole run -------------
cloud="${SCRAPYD_BENCH_CLOUD:-auto}"
if [ "$cloud" = 1 ] || { [ "$cloud" = auto ] && { [ $# -eq 0 ] || [ "$*" = --full ]; }; }; then
    "$venv/bin/python" bench/cloud.py \
        --scrapyd-rs "$rs_bin" --rs-built-from "$built_from" --hyper "$hyper_bin"
fi
