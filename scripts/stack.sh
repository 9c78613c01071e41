#!/usr/bin/env bash
# make stack: the standalone pipeline on one machine, without Docker.
#   kinesis-local and PostgreSQL on loopback (throwaway, in a temporary folder), a 4-shard stream,
#   the bundled sample produced onto it, the consumer run until idle into PostgreSQL, then the
#   store's counters and one user's limits. Everything started here is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BIN="$ROOT/.venv/bin"
UL="$BIN/user-limits"
STREAM="user-limits"
SAMPLE="$ROOT/src/user_limits/data/sample_events.json"
WORK="$(mktemp -d)"
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME MODULE [ARGS...]: run a server module of the test suite in the background; its first
# line of output is its URL, written to $WORK/NAME.url.
start() {
    local name=$1 module=$2
    shift 2
    PYTHONPATH="$ROOT" "$BIN/python" -m "$module" "$@" >"$WORK/$name.url" 2>"$WORK/$name.log" &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 900); do
        if [ -s "$WORK/$name.url" ]; then return; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "stack: $name did not start:" >&2
            tail -n 20 "$WORK/$name.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "stack: $name did not start within 90 s" >&2
    exit 1
}

# Any credentials do for kinesis-local; real ones are never needed nor read.
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL

echo "== starting kinesis-local (stream $STREAM, 4 shards) and PostgreSQL on loopback"
start kinesis tests.servers.kinesis_local "$STREAM:4"
start postgres tests.servers.postgres
KINESIS="$(head -n 1 "$WORK/kinesis.url")"
export USER_LIMITS_STORE
USER_LIMITS_STORE="$(head -n 1 "$WORK/postgres.url")"
echo "kinesis-local: $KINESIS"
echo "store:         $(echo "$USER_LIMITS_STORE" | sed "s#:[^:@/]*@#:***@#")"

echo "== user-limits init"
"$UL" init

echo "== user-limits produce (the bundled sample)"
"$UL" produce "$SAMPLE" --stream "$STREAM" --endpoint "$KINESIS"

echo "== user-limits consume (until idle for 2 s)"
"$UL" consume --stream "$STREAM" --endpoint "$KINESIS" --stop-when-idle 2 --poll-interval 0.2 --log-interval 1

echo "== user-limits stats"
"$UL" stats

USER_ID="$("$UL" export | "$BIN/python" -c 'import json, sys; print(json.load(sys.stdin)[0]["userId"])')"
echo "== user-limits show $USER_ID"
"$UL" show "$USER_ID"
