#!/usr/bin/env bash
# A private OpenSSH server on 127.0.0.1:2222 for the SFTP tests.
#
#   scripts/test-sshd.sh start   # idempotent; prints "started" or "running"
#   scripts/test-sshd.sh stop
#   scripts/test-sshd.sh env     # shell lines describing it for tests
#
# Everything lives in $DBS_TEST_SSHD_DIR (default /tmp/dbs-admin-sshd): its own
# config, host key, a client key pair allowed in, a known_hosts naming the host
# key, and the folder uploads land in. Key-only authentication.
set -euo pipefail
DIR="${DBS_TEST_SSHD_DIR:-/tmp/dbs-admin-sshd}"
PORT="${DBS_TEST_SSHD_PORT:-2222}"
SSHD="${SSHD:-/usr/sbin/sshd}"
PIDFILE="$DIR/sshd.pid"

is_running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

prepare() {
    mkdir -p "$DIR/root" /run/sshd
    chmod 700 "$DIR"
    [ -f "$DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/host_ed25519"
    [ -f "$DIR/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/client_ed25519"
    cp "$DIR/client_ed25519.pub" "$DIR/authorized_keys"
    echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$DIR/host_ed25519.pub")" > "$DIR/known_hosts"
    cat > "$DIR/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_ed25519
PidFile $PIDFILE
AuthorizedKeysFile $DIR/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
LogLevel ERROR
CONF
}

case "${1:-start}" in
start)
    if is_running; then echo running; exit 0; fi
    [ -x "$SSHD" ] || { echo "sshd not installed ($SSHD); apt-get install openssh-server" >&2; exit 3; }
    prepare
    "$SSHD" -f "$DIR/sshd_config" -E "$DIR/sshd.log"
    for _ in $(seq 50); do is_running && break; sleep 0.1; done
    is_running || { echo "sshd did not start; see $DIR/sshd.log" >&2; exit 1; }
    echo started
    ;;
stop)
    if is_running; then kill "$(cat "$PIDFILE")"; rm -f "$PIDFILE"; fi
    ;;
env)
    echo "DBS_TEST_SSHD_DIR=$DIR"
    echo "DBS_TEST_SSHD_PORT=$PORT"
    ;;
*) echo "usage: $0 start|stop|env" >&2; exit 64 ;;
esac
