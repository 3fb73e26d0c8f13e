"""Text lines on stdin as the service's JSON log lines on stderr (deploy/start.sh's own messages
and nginx's error log, which has no JSON format), so that the container's output is one JSON object
per line, with app/logs.py's fields:

    python3 deploy/jsonlog.py LOGGER LEVEL < lines

Each line becomes ``{"time", "level", "logger": LOGGER, "message", "pid"}``. A line in nginx's
error-log format (``2026/11/27 10:00:00 [error] 12#12: *3 message`` or ``nginx: [emerg] message``)
keeps its message, its level (``warn`` as ``warning``; ``crit``, ``alert`` and ``emerg`` as
``critical``) and nginx's pid; any other line is the whole message, at LEVEL, with the pid of the
process that started this one. Standard library only: it runs beside nginx for the container's life.
"""

import json
import os
import re
import signal
import sys
from datetime import datetime, timezone

NGINX_LINE = re.compile(r"(?:nginx: )?(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )?\[(?P<level>[a-z]+)\] "
                        r"(?:(?P<pid>\d+)#\d+: )?(?P<message>.*)")
NGINX_LEVELS = {"debug": "debug", "info": "info", "notice": "info", "warn": "warning", "error": "error",
                "crit": "critical", "alert": "critical", "emerg": "critical"}


def json_line(line: str, logger: str, level: str, pid: int) -> str:
    """One JSON log line (no newline) for the text ``line``; nginx's level and pid where it has them."""
    match = NGINX_LINE.fullmatch(line)
    if match and match["level"] in NGINX_LEVELS:
        line, level = match["message"], NGINX_LEVELS[match["level"]]
        pid = int(match["pid"] or pid)
    entry = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "level": level,
             "logger": logger, "message": line, "pid": pid}
    return json.dumps(entry)


def main() -> None:
    logger, level = sys.argv[1:3]
    # Ctrl-C in `make serve-prod` reaches the whole process group: keep relaying until nginx's last line.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    lines = open(sys.stdin.fileno(), encoding="utf-8", errors="replace", newline="\n")  # client bytes included
    for line in lines:
        if line.strip():
            print(json_line(line.rstrip("\r\n"), logger, level, os.getppid()), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
