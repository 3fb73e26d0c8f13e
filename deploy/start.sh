#!/usr/bin/env bash
# The production stack: nginx in front (public port), gunicorn behind it on a
# unix socket, in one process group. The Docker image's entrypoint and
# `make serve-prod` (docs/reliability.md). Exits, stopping the other, as soon
# as either dies, with its status; SIGTERM/SIGINT stop both.
#
#   LISTEN    nginx's address (default: 0.0.0.0:$PORT, PORT default 8000)
#   RUN_DIR   folder for the socket, nginx's config, pid and temporary files
#             (default: a new one under $TMPDIR, removed on exit)
# gunicorn reads gunicorn.conf.py and the variables of docs/configuration.md; nginx reads
# deploy/nginx.conf, filled in here.
set -euo pipefail
cd "$(dirname "$0")/.."

PATH="$PATH:/usr/sbin"  # where Debian puts nginx, outside a user's PATH
command -v nginx >/dev/null || { echo "deploy/start.sh: no nginx; install it (Debian: apt-get install nginx)" >&2; exit 1; }
LISTEN="${LISTEN:-0.0.0.0:${PORT:-8000}}"
if [ -z "${RUN_DIR:-}" ]; then
  RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/carclf.XXXXXX")"
  trap 'rm -rf "$RUN_DIR"' EXIT
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

nginx -t -q -e stderr -c "$RUN_DIR/nginx.conf"
gunicorn wsgi:app &
gunicorn_pid=$!
nginx -e stderr -c "$RUN_DIR/nginx.conf" -g "daemon off;" &
nginx_pid=$!
trap 'kill -TERM "$gunicorn_pid" "$nginx_pid" 2>/dev/null || true' TERM INT
status=0
wait -n "$gunicorn_pid" "$nginx_pid" || status=$?
kill -TERM "$gunicorn_pid" "$nginx_pid" 2>/dev/null || true
wait "$gunicorn_pid" "$nginx_pid" || true
exit "$status"
