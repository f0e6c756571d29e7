#!/usr/bin/env bash
# Runs python-scrapinghub's own test suite (../shared/conformance, run there,
# never copied here) against a fresh scrapyd-rs, then checks that every test
# that failed is listed in pending.txt: the tests that need what open issues
# still have to build (none today).
#
# Called by tests/run.sh; skipped with a line saying so when ../shared is
# absent. Environment: SCRAPYD_RS_BIN (the binary), SCRAPYD_RS_VENV (a venv
# with scrapinghub, msgpack, pytest, scrapyd-client: the test venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
suite=../shared/conformance/python-scrapinghub
if [ ! -x "$suite/run-client-tests.sh" ]; then
    echo "== conformance suite: SKIPPED, $suite is absent (CI has it)"
    exit 0
fi
bin=${SCRAPYD_RS_BIN:-$PWD/target/debug/scrapyd-rs}
venv=${SCRAPYD_RS_VENV:-$PWD/.venv}
work=$(mktemp -d "${TMPDIR:-/tmp}/scrapyd-rs-conformance.XXXXXX")
port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key=conformance-key
cat > "$work/scrapyd.conf" <<CONF
[scrapyd]
bind_address = 127.0.0.1
http_port = $port
eggs_dir = $work/eggs
logs_dir = $work/logs
items_dir = $work/items
dbs_dir = $work/dbs
python = $venv/bin/python
cloud_api_keys = $key
CONF
"$bin" --config "$work/scrapyd.conf" 2> "$work/daemon.log" &
daemon=$!
trap 'kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/daemonstatus.json" >/dev/null 2>&1 && break
    sleep 0.1
done

echo "== conformance suite: python-scrapinghub against http://127.0.0.1:$port"
set +e
CLOUD_PYTHON="$venv/bin/python" CLOUD_KEY=$key CLOUD_URL="http://127.0.0.1:$port" \
    PATH="$venv/bin:$PATH" "$suite/run-client-tests.sh" | tee "$work/suite.out"
set -e
report=$(sed -n 's/^pytest log: \(.*\)\/pytest.out$/\1\/report.jl/p' "$work/suite.out" | tail -1)
"$venv/bin/python" tests/conformance/check.py "$report" tests/conformance/pending.txt
