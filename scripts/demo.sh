#!/usr/bin/env bash
# Runs the demo: migrate, seed once, a superuser with a fresh password, then
# web + Celery worker + Celery beat in the foreground. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT="${PORT:-8000}"
VAR="${DBS_VAR_DIR:-var}"
mkdir -p "$VAR"

"$BIN/python" manage.py migrate --no-input -v 0
if [ ! -f "$VAR/.demo-seeded" ]; then
    "$BIN/python" manage.py demo_seed --posts 200 --images 40 --flush
    touch "$VAR/.demo-seeded"
fi
"$BIN/python" manage.py demo_superuser

pids=()
stop_all() {
    trap - INT TERM EXIT
    [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap stop_all INT TERM EXIT

"$BIN/python" manage.py runserver "127.0.0.1:$PORT" --noreload & pids+=($!)
"$BIN/celery" -A demo_site worker --loglevel INFO --concurrency 2 & pids+=($!)
"$BIN/celery" -A demo_site beat --loglevel INFO --pidfile "$VAR/celerybeat.pid" --schedule "$VAR/celerybeat-schedule" & pids+=($!)

sleep 2
echo
echo "  Demo console: http://127.0.0.1:$PORT/admin/   (blog: http://127.0.0.1:$PORT/)"
echo "  Ctrl-C stops web, worker and beat."
echo
wait -n "${pids[@]}"
