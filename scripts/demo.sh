#!/usr/bin/env bash
# Runs the demo: unattended keys once, migrate, seed once, a superuser with a
# fresh password, then web + Celery worker + Celery beat in the foreground.
# Ctrl-C stops all three. `scripts/demo.sh --setup-only` stops before starting
# them (the tests use it to check a fresh demo).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT="${PORT:-8000}"
VAR="${DBS_VAR_DIR:-var}"
mkdir -p "$VAR"
export DBS_DEMO_KEYS=1

# The recipient key pair and drill identity (manage.py dbs_keys init), before migrate so that migrate
# creates the daily backup and weekly drill enabled. The identity's passphrase goes to var/keys/drill.env
# (0600), which stands in for the worker's environment; demo_site/settings.py reads both.
KEYS="$VAR/keys"
if [ ! -f "$KEYS/drill.identity" ]; then
    mkdir -p "$KEYS" && chmod 700 "$KEYS"
    passphrase="$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(24))')"
    (umask 077 && printf 'DBS_DRILL_IDENTITY_PASSPHRASE=%s\n' "$passphrase" > "$KEYS/drill.env")
    DBS_DRILL_IDENTITY_PASSPHRASE="$passphrase" "$BIN/python" manage.py dbs_keys init --dir "$KEYS" >/dev/null
    unset passphrase
    echo "Demo keys in $KEYS: scheduled backups are sealed to its recipient, drills open them with its identity."
fi

"$BIN/python" manage.py migrate --no-input -v 0
if [ ! -f "$VAR/.demo-seeded" ]; then
    "$BIN/python" manage.py demo_seed --posts 200 --images 40 --flush
    touch "$VAR/.demo-seeded"
fi
"$BIN/python" manage.py demo_superuser
[ "${1:-}" = "--setup-only" ] && exit 0

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
