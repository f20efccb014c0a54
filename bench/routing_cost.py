"""What routing itself costs: the gateway's ASGI app driven in process (no sockets, the mock
provider as upstream), a model with one deployment against the same with three.

Without network and server noise the difference is the pipeline's own work per request
(ordering, breaker and stats, headers), measured as process CPU time over many requests in
interleaved rounds. Prints one JSON line: per model, the per-round microseconds per request,
and what three deployments add over one (fastest round against fastest round, and the median
of same-round differences) for plain and streamed calls.

    .venv/bin/python bench/routing_cost.py [--requests 3000] [--rounds 7]
    .venv/bin/python bench/routing_cost.py --instructions   # exact, with valgrind: ~3 minutes

On a shared VM the CPU-time figures move by 10-30% from round to round, which can hide a
difference of a few microseconds; --instructions counts the instructions per request instead
(callgrind runs of 100 and 600 requests per model, PYTHONHASHSEED=0), which repeat exactly.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HEADERS = [(b"authorization", b"Bearer sk-bench-routing"), (b"content-type", b"application/json")]
SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/v1/chat/completions",
    "query_string": b"",
    "client": ("127.0.0.1", 1),
    "server": ("127.0.0.1", 8000),
    "scheme": "http",
    "http_version": "1.1",
    "root_path": "",
}


async def one_request(
    app: Any, body: bytes, headers: list[tuple[bytes, bytes]] = HEADERS, client: str = "127.0.0.1"
) -> None:
    done = asyncio.Event()
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()  # as a server would: disconnect only after the response
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        nonlocal status
        if msg["type"] == "http.response.start":
            status = msg["status"]
        elif not msg.get("more_body"):
            done.set()

    await app({**SCOPE, "headers": headers, "client": (client, 1)}, receive, send)
    if status != 200:
        raise SystemExit(f"request failed with {status}")


async def measure(requests: int, rounds: int) -> dict[str, Any]:
    from llm_proxy.app import build_app, create_gateway

    with tempfile.TemporaryDirectory() as data:
        gw = create_gateway(str(HERE / "routing.yaml"), {"LLM_PROXY_DATA_DIR": data})
        app = build_app(gw)
        bodies = {
            model: json.dumps(
                {
                    "model": model,
                    "messages": [{"role": "user", "content": "hello there"}],
                    "stream": model.endswith("stream"),
                    "max_tokens": 17,
                }
            ).encode()
            for model in MODELS
        }
        for body in bodies.values():  # warm caches and pools
            for _ in range(300):
                await one_request(app, body)
        gc.collect()
        gc.freeze()
        us: dict[str, list[float]] = {m: [] for m in bodies}
        for _ in range(rounds):
            for model, body in bodies.items():
                t0 = time.process_time()
                for _ in range(requests):
                    await one_request(app, body)
                us[model].append(round((time.process_time() - t0) / requests * 1e6, 2))
        await gw.aclose()

    def added(three: str, one: str) -> dict[str, float]:
        # Noise only ever adds time, so the fastest round of each is the best estimate of its
        # cost; the median of same-round differences is reported beside it.
        diffs = sorted(a - b for a, b in zip(us[three], us[one], strict=True))
        return {
            "min_diff": round(min(us[three]) - min(us[one]), 2),
            "median_paired_diff": round(diffs[len(diffs) // 2], 2),
        }

    return {
        "requests_per_round": requests,
        "rounds": rounds,
        "us_per_request": us,
        "added_us_plain": added("three", "one"),
        "added_us_stream": added("three-stream", "one-stream"),
    }


MODELS = ("one", "three", "one-stream", "three-stream")


async def serve_only(model: str, n: int) -> None:
    """The --child run: n requests to one model (what callgrind counts)."""
    from llm_proxy.app import build_app, create_gateway

    with tempfile.TemporaryDirectory() as data:
        gw = create_gateway(str(HERE / "routing.yaml"), {"LLM_PROXY_DATA_DIR": data})
        app = build_app(gw)
        body = json.dumps(
            {
                "model": model,
                "messages": [{"role": "user", "content": "hello there"}],
                "stream": model.endswith("stream"),
                "max_tokens": 17,
            }
        ).encode()
        for _ in range(n):
            await one_request(app, body)
        await gw.aclose()


def count_instructions(model: str, n: int) -> int:
    import re
    import subprocess
    import sys

    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    cmd += [sys.executable, __file__, "--child", model, str(n)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if m is None:
        raise SystemExit(f"no callgrind total in:\n{out.stderr[-2000:]}")
    return int(m.group(1))


def instructions() -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    # Counts do not depend on what else runs, so two valgrinds share the two cores.
    jobs = [(m, n) for m in MODELS for n in (100, 600)]
    with ThreadPoolExecutor(2) as pool:
        counts = dict(zip(jobs, pool.map(lambda j: count_instructions(*j), jobs), strict=True))
    per = {m: round((counts[(m, 600)] - counts[(m, 100)]) / 500) for m in MODELS}
    return {
        "instructions_per_request": per,
        "added_plain": per["three"] - per["one"],
        "added_stream": per["three-stream"] - per["one-stream"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("LLM_PROXY_LOG_LEVEL", "WARNING")
    import uvloop

    if args.child:
        uvloop.run(serve_only(args.child[0], int(args.child[1])))
    elif args.instructions:
        print(json.dumps(instructions()))
    else:
        print(json.dumps(uvloop.run(measure(args.requests, args.rounds))))


if __name__ == "__main__":
    main()
