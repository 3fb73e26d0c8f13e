#!/usr/bin/env bash
# The production stack: nginx in front (public port), gunicorn behind it on a
# unix socket. The Docker image's entrypoint and `make serve-prod` (docs/reliability.md). gunicorn starts first, nginx once gunicorn's socket exists
# (no request meets a missing socket). Exits, stopping the other, as soon as
# either dies, with its status; SIGTERM/SIGINT stop both in order (nginx
# finishes what it took, then gunicorn) and exit 0. Every line on stderr is
# JSON: gunicorn's (app/logs.py), nginx's and this script's (deploy/jsonlog.py).
#
#   LISTEN    nginx's address (default: 0.0.0.0:$PORT, PORT default 8000)
#   RUN_DIR   folder for the socket, nginx's config, pid and temporary files
#             (default: a new one under $TMPDIR, removed on exit)
# gunicorn reads gunicorn.conf.py and the variables of docs/configuration.md; nginx reads
# deploy/nginx.conf, filled in here. Nothing is written outside RUN_DIR and
# PROMETHEUS_MULTIPROC_DIR; the latter is removed on exit. Needs bash 5.1 (wait -p).
set -euo pipefail
cd "$(dirname "$0")/.."

log() {  # log LEVEL MESSAGE: one JSON line on stderr
  printf '%s\n' "$2" | python3 deploy/jsonlog.py deploy.start "$1"
}
stopping=0
trap 'stopping=1' TERM INT  # acted on below; bash runs it at once when it waits

PATH="$PATH:/usr/sbin"  # where Debian puts nginx, outside a user's PATH
command -v nginx >/dev/null || { log error "no nginx; install it (Debian: apt-get install nginx)"; exit 1; }
LISTEN="${LISTEN:-0.0.0.0:${PORT:-8000}}"
if [ -z "${RUN_DIR:-}" ]; then
  RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/carclf.XXXXXX")"
  remove_run_dir=1
fi
mkdir -p "$RUN_DIR"
chmod 711 "$RUN_DIR"  # nginx workers run as nobody when started as root: they must reach the socket
socket="$RUN_DIR/gunicorn.sock"
max_body_bytes="$(awk -v mb="${CARCLF_MAX_UPLOAD_MB:-10}" 'BEGIN { printf "%d", mb * 1048576 }')"
sed -e "s|@RUN_DIR@|$RUN_DIR|g" -e "s|@LISTEN@|$LISTEN|g" -e "s|@UPSTREAM@|unix:$socket|g" \
    -e "s|@MAX_BODY_BYTES@|$max_body_bytes|g" deploy/nginx.conf > "$RUN_DIR/nginx.conf"

# gunicorn only behind nginx; nginx is the one proxy whose X-Forwarded-For to trust.
export BIND="unix:$socket"
export CARCLF_TRUSTED_PROXIES="${CARCLF_TRUSTED_PROXIES:-1}"
# Two glibc malloc arenas, not one per thread: less resident memory (docs/performance.md)
# and large decodes' memory reused rather than kept per thread.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
# Pillow allocates images in 16 MB blocks, which glibc serves from its arenas
# and keeps after a large decode; 64 MB blocks are over glibc's largest mmap
# threshold (32 MB), so a large image's memory is mapped and returned at once
# (16 concurrent 39.7 Mpx PNGs: +626 MB with 16 MB blocks, +300 MB with 64 MB).
export PILLOW_BLOCK_SIZE="${PILLOW_BLOCK_SIZE:-64m}"
# Prometheus' multiprocess mode needs an empty folder at every start.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$RUN_DIR/metrics}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
trap 'rm -rf "$PROMETHEUS_MULTIPROC_DIR" ${remove_run_dir:+"$RUN_DIR"}' EXIT

nginx -t -q -e stderr -c "$RUN_DIR/nginx.conf" 2>&1 | python3 deploy/jsonlog.py nginx error
rm -f "$socket"
gunicorn wsgi:app &
gunicorn_pid=$!
# bash's own notices of a killed child ("Killed") are not JSON: each wait below hides them, and the
# status is logged instead.
{ until [ -S "$socket" ] || [ "$stopping" = 1 ] || ! kill -0 "$gunicorn_pid"; do sleep 0.05; done; } 2>/dev/null

# nginx's error log through a pipe to deploy/jsonlog.py (its last lines are read before this script exits).
mkfifo "$RUN_DIR/nginx.stderr"
python3 deploy/jsonlog.py nginx error < "$RUN_DIR/nginx.stderr" &
relay_pid=$!
nginx_pid=
if [ "$stopping" = 0 ] && kill -0 "$gunicorn_pid" 2>/dev/null; then
  nginx -e stderr -c "$RUN_DIR/nginx.conf" -g "daemon off;" 2>"$RUN_DIR/nginx.stderr" &
  nginx_pid=$!
else
  : > "$RUN_DIR/nginx.stderr"  # the relay's end of file
fi

status=0 exited=
if [ "$stopping" = 0 ]; then
  { wait -n -p exited "$gunicorn_pid" ${nginx_pid:+"$nginx_pid"}; } 2>/dev/null || status=$?
fi
trap '' TERM INT  # stopping now, in order: a second signal changes nothing
if [ "$stopping" = 0 ]; then
  log error "$( [ "$exited" = "$gunicorn_pid" ] && echo gunicorn || echo nginx ) exited with status $status: stopping"
fi
# nginx first, gracefully (QUIT: it answers the requests it took, within worker_shutdown_timeout), then gunicorn.
nginx_status=0 gunicorn_status=0
if [ -n "$nginx_pid" ]; then
  kill -QUIT "$nginx_pid" 2>/dev/null || true
  { wait "$nginx_pid"; } 2>/dev/null || nginx_status=$?
fi
kill -TERM "$gunicorn_pid" 2>/dev/null || true
{ wait "$gunicorn_pid"; } 2>/dev/null || gunicorn_status=$?
wait "$relay_pid" || true
if [ "$stopping" = 1 ]; then  # an orderly stop: 0 unless nginx or gunicorn failed to stop cleanly
  status=$(( nginx_status ? nginx_status : gunicorn_status ))
fi
exit "$status"
