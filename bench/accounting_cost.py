"""What keys, limits and spend cost per request: the gateway's ASGI app driven in process (no
sockets, the mock provider as upstream), the master key against a virtual key that has every
limit (rpm, tpm, parallel slots, a budget) inside a team that has them too, plus the client-IP
limit; in memory, and with Redis.

Every call writes its spend row (spool, then the store in batches: the writer runs as in
production, every second). With --src pointing at a checkout from before keys and spend
existed, the same master-key requests give the baseline the whole feature is measured against.

    .venv/bin/python bench/accounting_cost.py [--requests 3000] [--rounds 5] [--redis URL]
    BENCH_CONFIG=old.yaml .venv/bin/python bench/accounting_cost.py --instructions \
        --src /tmp/old/src --scenarios master,master-stream   # a checkout without ip_limits

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import routing_cost  # noqa: E402  (the same in-process driver)

MASTER = "sk-bench-routing"


async def one_request(app: Any, body: bytes, key: str) -> None:
    """routing_cost's driver, from a client that is not loopback (so the IP limit applies)."""
    headers = [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")]
    await routing_cost.one_request(app, body, headers, client="10.1.2.3")


def body(stream: bool) -> bytes:
    doc = {
        "model": "one-stream" if stream else "one",
        "messages": [{"role": "user", "content": "hello there"}],
        "stream": stream,
        "max_tokens": 17,
    }
    return json.dumps(doc).encode()


async def gateway(data: str, redis: str | None) -> tuple[Any, Any, str | None]:
    """(gateway, app, a fully limited virtual key, or None on a checkout without keys)."""
    from llm_proxy.app import build_app, create_gateway

    env = {"LLM_PROXY_DATA_DIR": data}
    if redis:
        env["LLM_PROXY_REDIS_URL"] = redis
        env["LLM_PROXY_REDIS_PREFIX"] = f"bench{os.getpid()}"
    gw = create_gateway(os.environ.get("BENCH_CONFIG") or str(HERE / "accounting.yaml"), env)
    app = build_app(gw)
    if not hasattr(gw, "start"):
        return gw, app, None  # before keys existed: the baseline
    await gw.start()
    from llm_proxy.keys import store
    from llm_proxy.keys.records import KeyIn, TeamIn

    big = 10**9
    team = await store.create_team(
        gw.engine, TeamIn(name="t", rpm=big, tpm=big, max_budget=1e6, budget_period="30d")
    )
    key, secret = await store.create_key(
        gw.engine,
        KeyIn(
            team_id=team.id,
            models=["one*"],
            rpm=big,
            tpm=big,
            max_parallel_requests=1000,
            max_budget=1e6,
            budget_period="30d",
        ),
    )
    gw.keys.apply(team)
    gw.keys.apply(key)
    return gw, app, secret


SCENARIOS = ("master", "keyed", "master-stream", "keyed-stream")


async def measure(requests: int, rounds: int, redis: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data:
        gw, app, secret = await gateway(data, redis)
        runs = {
            "master": (body(False), MASTER),
            "master-stream": (body(True), MASTER),
        }
        if secret:
            runs["keyed"] = (body(False), secret)
            runs["keyed-stream"] = (body(True), secret)
        for b, k in runs.values():
            for _ in range(300):
                await one_request(app, b, k)
        gc.collect()
        gc.freeze()
        us: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, (b, k) in runs.items():
                t0 = time.process_time()
                for _ in range(requests):
                    await one_request(app, b, k)
                us[name].append(round((time.process_time() - t0) / requests * 1e6, 2))
        await gw.aclose()
    out: dict[str, Any] = {"requests_per_round": requests, "rounds": rounds, "redis": bool(redis)}
    out["us_per_request"] = us
    if secret:
        for kind in ("", "-stream"):
            a, m = us["keyed" + kind], us["master" + kind]
            diffs = sorted(x - y for x, y in zip(a, m, strict=True))
            out["keyed_over_master_us" + kind.replace("-", "_")] = {
                "min_diff": round(min(a) - min(m), 2),
                "median_paired_diff": round(diffs[len(diffs) // 2], 2),
            }
    return out


async def serve_only(scenario: str, n: int, redis: str | None) -> None:
    """The --child run: n requests of one scenario (what callgrind counts)."""
    with tempfile.TemporaryDirectory() as data:
        gw, app, secret = await gateway(data, redis)
        key = secret if scenario.startswith("keyed") else MASTER
        assert key is not None, "this checkout has no virtual keys"
        b = body(scenario.endswith("stream"))
        for _ in range(n):
            await one_request(app, b, key)
        await gw.aclose()


def count_instructions(scenario: str, n: int, src: str | None, redis: str | None) -> int:
    import re
    import subprocess

    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    cmd += [sys.executable, __file__, "--child", scenario, str(n)]
    if src:
        cmd += ["--src", src]
    if redis:
        cmd += ["--redis", redis]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if m is None:
        raise SystemExit(f"no callgrind total in:\n{out.stderr[-2000:]}")
    return int(m.group(1))


def instructions(scenarios: list[str], src: str | None, redis: str | None) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(s, n) for s in scenarios for n in (100, 600)]
    with ThreadPoolExecutor(2) as pool:
        got = pool.map(lambda j: count_instructions(j[0], j[1], src, redis), jobs)
        counts = dict(zip(jobs, got, strict=True))
    per = {s: round((counts[(s, 600)] - counts[(s, 100)]) / 500) for s in scenarios}
    return {"src": src or "this checkout", "redis": bool(redis), "instructions_per_request": per}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis", default=None, help="redis URL: limits in Redis")
    parser.add_argument("--src", default=None, help="import llm_proxy from this src directory")
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--child", nargs=2, metavar=("SCENARIO", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.src:
        sys.path.insert(0, args.src)
    os.environ.setdefault("LLM_PROXY_LOG_LEVEL", "WARNING")
    import uvloop

    if args.child:
        uvloop.run(serve_only(args.child[0], int(args.child[1]), args.redis))
    elif args.instructions:
        scenarios = args.scenarios.split(",")
        print(json.dumps(instructions(scenarios, args.src, args.redis)))
    else:
        print(json.dumps(uvloop.run(measure(args.requests, args.rounds, args.redis))))


if __name__ == "__main__":
    main()
