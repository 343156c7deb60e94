#!/usr/bin/env bash
# The dashboard in a real browser: a throwaway redis-server (scripts/with-redis), three demo
# nodes (examples/cluster_node, with the short timings of scripts/demo), a process holding the
# lock "e2e-report" (test/support/lock_worker) and the dashboard host; then headless Chromium,
# driven by playwright-core (dashboard.test.mjs), checks the page: the three nodes, the held lock
# with its fencing token, a leader change after the leader is killed (SIGKILL, by PID), and the
# demo's long job going through queued, running and succeeded. Screenshots go to $E2E_OUT.
#
#   CLUSTER_NODE=... DASHBOARD_HOST=... LOCK_WORKER=... E2E_OUT=dir test/e2e/run.sh
#
# Exits 77 (ctest: skipped) when Chromium, node or test/e2e/node_modules is missing
# (scripts/install-e2e installs them). Every process it starts is stopped by PID.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
chromium="${E2E_CHROMIUM:-/usr/bin/chromium}"

skip() {
    echo "e2e: skipped: $*" >&2
    exit 77
}
[[ -x "$chromium" ]] || skip "no Chromium at $chromium (scripts/install-e2e)"
command -v node >/dev/null 2>&1 || skip "node is not installed (scripts/install-e2e)"
[[ -d "$here/node_modules/playwright-core" ]] ||
    skip "no $here/node_modules/playwright-core (scripts/install-e2e, or npm ci in test/e2e)"
for v in CLUSTER_NODE DASHBOARD_HOST LOCK_WORKER; do
    if [[ -z "${!v:-}" || ! -x "${!v}" ]]; then
        echo "e2e: error: $v ('${!v:-}') is not an executable" >&2
        exit 1
    fi
done

if [[ -z "${REDIS_URL:-}" ]]; then
    exec "$here/../../scripts/with-redis" "$here/run.sh" "$@"
fi
port="${REDIS_URL##*:}"
out="${E2E_OUT:-$PWD}"
mkdir -p "$out"
log_dir=$(mktemp -d)
declare -A pid_of=()

cleanup() {
    set +e
    local n
    for n in "${!pid_of[@]}"; do kill -TERM "${pid_of[$n]}" 2>/dev/null; done
    for n in "${!pid_of[@]}"; do wait "${pid_of[$n]}" 2>/dev/null; done
    rm -rf "$log_dir"
}
show_logs() {
    local f
    for f in "$log_dir"/*.log; do
        echo "==> $(basename "$f") (last lines)" >&2
        tail -n 15 "$f" >&2
    done
}
trap cleanup EXIT

for n in node-1 node-2 node-3; do
    "$CLUSTER_NODE" "$n" --heartbeat-ms 500 --grace-ms 500 --ttl-ms 1500 --renew-ms 500 \
        --job-ms 700 --run-ms 120000 --job-lease-ms 2000 --long-job-ms 8000 \
        >"$log_dir/$n.log" 2>&1 &
    pid_of[$n]=$!
done
"$LOCK_WORKER" "$port" hold e2e-report 5000 e2e-resource >"$log_dir/holder.log" 2>&1 &
pid_of[holder]=$!
"$DASHBOARD_HOST" --listen 127.0.0.1:0 --scheduler demo >"$log_dir/dashboard.log" 2>&1 &
pid_of[dashboard]=$!

# Waits up to $1 seconds for a line matching $2 in log $3.
wait_line() {
    local deadline=$((SECONDS + $1))
    until grep -q -e "$2" "$log_dir/$3"; do
        if ((SECONDS >= deadline)); then
            echo "e2e: FAILED: no '$2' in $3" >&2
            show_logs
            exit 1
        fi
        sleep 0.1
    done
}
wait_line 20 '^dashboard: http' dashboard.log
wait_line 20 '^acquired ' holder.log
url=$(sed -n 's/^dashboard: //p' "$log_dir/dashboard.log")
fence=$(sed -n 's/^acquired \([0-9]*\).*/\1/p' "$log_dir/holder.log")
echo "==> dashboard at $url; e2e-report held with fencing token $fence"

status=0
E2E_URL="$url" E2E_FENCE="$fence" E2E_OUT="$out" E2E_CHROMIUM="$chromium" \
    E2E_NODE_PIDS="node-1=${pid_of[node-1]},node-2=${pid_of[node-2]},node-3=${pid_of[node-3]}" \
    node "$here/dashboard.test.mjs" || status=$?
if ((status != 0)); then
    show_logs
    exit "$status"
fi
if [[ -n "${E2E_DOCS_SCREENSHOT:-}" ]]; then
    cp "$out/dashboard.png" "$here/../../docs/dashboard.png"
    echo "==> copied the screenshot to docs/dashboard.png"
fi
