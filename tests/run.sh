#!/usr/bin/env bash
# Runs every test of scrapyd-rs: the Rust unit tests, then the black-box
# suite (tests/e2e) that starts the built binary, deploys a real egg with
# scrapyd-deploy and crawls a local test site with real Scrapy, then the
# Scrapy Cloud client's own test suite from ../shared (skipped, saying so,
# where ../shared is absent).
#
# The Python venv with Scrapy and the real clients (tests/requirements.txt)
# is created in .venv on first use and refreshed when that file changes.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k cancel`.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${SCRAPYD_RS_VENV:-$PWD/.venv}"
if [ ! -x "$venv/bin/python" ] || ! cmp -s tests/requirements.txt "$venv/.requirements"; then
    echo "== creating the test venv in $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r tests/requirements.txt
    cp tests/requirements.txt "$venv/.requirements"
fi

echo "== cargo test"
cargo test --locked

echo "== black-box tests"
cargo build --locked
export SCRAPYD_RS_BIN="$PWD/target/debug/scrapyd-rs"
export PATH="$venv/bin:$PATH"
"$venv/bin/python" -m pytest tests/e2e -q -p no:cacheprovider "$@"

# Only for a whole run: extra arguments pick black-box tests.
if [ $# -eq 0 ]; then
    SCRAPYD_RS_VENV="$venv" bash tests/conformance/run.sh
fi
