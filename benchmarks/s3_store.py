"""``runner run alpha.full`` on S3: what a run costs in requests, and in time.

A pod of a Kubernetes Job reads and writes its runs on an object store, every
request a round trip. This script starts moto's S3 server on 127.0.0.1 (the same
API, answered in this process), each answer ``--latency-ms`` late (10 by default: a
small request to a bucket in the same region takes about 10 to 30 ms), then times
whole ``runner run alpha.full`` processes in interleaved rounds, medians:

- **uncached**: each round on a fresh prefix (nothing to reuse);
- **cached**: ``--cache`` on one prefix a first untimed run filled (every step a hit);
- **local**: the same two on a local folder, the reference for both.

It counts the requests the server answered during each run, by kind (GET of a file,
HEAD, PUT, DELETE, LIST), so a change in how the store talks to S3 shows as a count
that does not depend on the machine. No targets: figures to compare across changes.

    python benchmarks/s3_store.py                    # 3 rounds, 10 ms a request
    python benchmarks/s3_store.py --repeat 5 --latency-ms 0 --json
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "configs" / "manifest.json"
PIPELINE = "alpha.full"
BUCKET = "runner-bench"
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}


class Server:
    """moto's S3 server on 127.0.0.1 behind a WSGI layer that counts the requests by
    kind (a GET of a file, HEAD, PUT, DELETE, LIST) and answers each ``latency``
    seconds late, as a bucket in the same region would."""

    def __init__(self, latency: float) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        self.latency = latency
        self.seen: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        app = DomainDispatcherApplication(create_backend_app)

        def answer(environ: dict[str, Any], start_response: Any) -> Any:
            method = environ["REQUEST_METHOD"]
            listing = method == "GET" and environ.get("PATH_INFO", "").strip("/") == BUCKET
            with self._lock:
                self.seen["LIST" if listing else method] += 1
            time.sleep(self.latency)
            return app(environ, start_response)

        self._server = make_server("127.0.0.1", 0, answer, threaded=True)
        self.endpoint = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def take(self) -> dict[str, int]:
        with self._lock:
            counts, self.seen = dict(self.seen), collections.Counter()
        return counts

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()


def run(store: str, endpoint: str | None, *extra: str, hits: bool | None = False) -> float:
    """Wall seconds of one whole ``runner run`` process; ``hits``: whether every step
    must be cached (True) or none (False); None: not checked."""
    command = [str(Path(sys.executable).with_name("runner")), "run", PIPELINE, "--manifest",
               str(MANIFEST), "--artifacts", store, "-q", "--json", *extra]
    if endpoint is not None:
        command += ["--storage-option", f"endpoint_url={endpoint}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | AWS
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False, env=env,
                          cwd=ROOT, timeout=1800)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"runner run {store} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    steps = {s["status"] for s in json.loads(proc.stdout)["steps"]}
    if hits is not None and hits != (steps == {"cached"}):
        raise SystemExit(f"runner run {store} {' '.join(extra)}: steps {sorted(steps)}")
    return wall


def measure(repeat: int, folder: Path, latency: float) -> dict[str, Any]:
    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = Server(latency)
    endpoint, counter = server.endpoint, server
    try:
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
                     region_name=AWS["AWS_DEFAULT_REGION"]).create_bucket(Bucket=BUCKET)
        cached_s3, cached_local = f"s3://{BUCKET}/cached", str(folder / "cached")
        run(cached_s3, endpoint, "--cache", hits=None)  # fills the cache: untimed
        run(cached_local, None, "--cache", hits=None)
        counter.take()
        times: dict[str, list[float]] = collections.defaultdict(list)
        requests: dict[str, dict[str, int]] = {}
        for _ in range(max(1, repeat)):
            fresh = uuid.uuid4().hex[:8]
            times["s3 uncached"].append(run(f"s3://{BUCKET}/plain-{fresh}", endpoint))
            requests["uncached"] = counter.take()
            times["s3 cached"].append(run(cached_s3, endpoint, "--cache", hits=True))
            requests["cached"] = counter.take()
            times["local uncached"].append(run(str(folder / f"plain-{fresh}"), None))
            times["local cached"].append(run(cached_local, None, "--cache", hits=True))
    finally:
        server.stop()
    medians = {case: statistics.median(walls) for case, walls in times.items()}
    return {"repeat": repeat, "cores": os.cpu_count(), "latency_ms": 1000 * latency,
            "seconds": dict(times),
            "medians": medians, "requests": requests,
            "cached_ratio_s3": medians["s3 cached"] / medians["s3 uncached"],
            "cached_ratio_local": medians["local cached"] / medians["local uncached"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (medians)")
    parser.add_argument("--latency-ms", type=float, default=10.0,
                        help="how late the server answers each request (default 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runner-s3-bench-") as tmp:
        out = measure(args.repeat, Path(tmp), args.latency_ms / 1000)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    med = out["medians"]
    print(f"runner run {PIPELINE}, whole processes, {out['cores']} cores, medians of "
          f"{args.repeat} interleaved rounds; S3 is moto on 127.0.0.1 answering "
          f"{args.latency_ms:g} ms late")
    for kind in ("uncached", "cached"):
        counts = out["requests"][kind]
        detail = ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda x: -x[1]))
        print(f"  {kind:9s} S3 {med['s3 ' + kind]:6.2f} s   local {med['local ' + kind]:6.2f} s"
              f"   requests {sum(counts.values())} ({detail})")
    print(f"  every step cached vs none: {out['cached_ratio_s3']:.2f}x on S3, "
          f"{out['cached_ratio_local']:.2f}x on a local folder")


if __name__ == "__main__":
    main()
