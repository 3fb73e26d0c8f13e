"""The service of an earlier git revision against this checkout, in alternated rounds.

    python -m benchmarks.revisions REVISION [--model DIR] [--runtime tensorflow] [--rounds 4]

For "measure before and after that the service's latency is unchanged":
checks REVISION out into a temporary git worktree, starts gunicorn from it
and from this checkout (each with its own ``wsgi.py``, ``gunicorn.conf.py``
and code, the same ``--model`` and environment), then alternates the same
runs between the two, round after round (1 and 8 clients, TTA off and on,
real ~100 KB JPEGs), so that the host's speed drifting between minutes hits
both alike. Prints each run's p50 latency and requests per second per round,
and their medians. Both servers run this environment's gunicorn and
packages; the model must be one both revisions can load (``--runtime``:
what the earlier revision served). docs/performance.md has the figures.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import ROOT, Server, load, machine_summary, multipart, photo_summary, real_photos, table
from inference import RUNTIMES

RUNS = [(tta, clients) for tta in (False, True) for clients in (1, 8)]  # (TTA, concurrent clients)


def worktree(revision, directory):
    """Check ``revision`` out into ``directory`` (``git worktree add --detach``)."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(directory), revision],
                   check=True, capture_output=True)


def measure(servers, bodies, rounds, requests):
    """``{(name, tta, clients): [(p50 seconds, requests/s) per round]}``, the servers taking turns per run."""
    results = {(name, *run): [] for run in RUNS for name in servers}
    for server in servers.values():  # warm-up
        for tta, clients in RUNS:
            load(server.host, server.port, f"/predict?tta={int(tta)}", bodies, clients, 2 * clients)
    for number in range(1, rounds + 1):
        print(f"round {number} of {rounds}", file=sys.stderr, flush=True)
        for key, values in results.items():
            name, tta, clients = key
            server = servers[name]
            run = load(server.host, server.port, f"/predict?tta={int(tta)}", bodies, clients, requests * clients)
            values.append((float(np.median(run["latencies_s"])), run["throughput"]))
    return results


def report(results):
    """Print medians over the rounds and every round's value."""
    rows = []
    for (name, tta, clients), values in results.items():
        p50 = np.array([value[0] for value in values]) * 1e3
        throughput = np.array([value[1] for value in values])
        rows.append([name, "on" if tta else "off", clients, f"{np.median(p50):.1f}",
                     " ".join(f"{x:.1f}" for x in p50), f"{np.median(throughput):.1f}",
                     " ".join(f"{x:.1f}" for x in throughput)])
    print(table(["code", "TTA", "clients", "p50 ms, median", "per round", "req/s, median", "per round"], rows))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.revisions", description=__doc__.split("\n\n")[0])
    parser.add_argument("revision", help="the earlier git revision (commit, tag or branch)")
    parser.add_argument("--model", default=str(ROOT / "model"), help="model folder both revisions serve")
    parser.add_argument("--runtime", default="tensorflow", choices=RUNTIMES,
                        help="CARCLF_RUNTIME of this checkout's server (the earlier one may ignore it)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=25, help="requests per client per run")
    args = parser.parse_args(argv)
    photos = real_photos(32)
    bodies = [multipart(data) for data in photos]
    print(machine_summary())
    print(photo_summary(photos))
    env = {"CARCLF_MODEL_DIR": str(Path(args.model).resolve()), "CARCLF_RUNTIME": args.runtime}
    with tempfile.TemporaryDirectory(prefix="carclf-revision-") as directory:
        earlier = Path(directory) / "checkout"
        worktree(args.revision, earlier)
        try:
            with Server(env=env, root=earlier) as before, Server(env=env) as after:
                results = measure({args.revision: before, "this checkout": after}, bodies, args.rounds, args.requests)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(earlier)], check=False)
    report(results)


if __name__ == "__main__":
    main()
