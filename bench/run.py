"""Benchmark orchestrator for llm-proxy.

Starts nginx (fake OpenAI upstream), the Python floor (bench/floor.py) and the gateway,
pins the servers to core 0 and wrk to core 1, then measures direct / floor / gateway x
plain / stream x concurrency 1, 16, 64 (req/s, p50/p99, CPU ms per request) and a soak
(gateway RSS after 10k and 50k requests). Results go to bench/results/<date>.json.

    .venv/bin/python bench/run.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
SERVER_CORE = "0"
CLIENT_CORE = "1"
CONCURRENCY = (1, 16, 64)
KINDS = ("plain", "stream")
ROUTE = "/v1/chat/completions"
MASTER_KEY = "sk-bench-master-0123456789abcdef"
CLK_TCK = os.sysconf("SC_CLK_TCK")
WRK = ["taskset", "-c", CLIENT_CORE, "wrk", "-t1", "--latency", "--timeout", "10s"]
INSTALL_HINT = "install with: apt-get install -y nginx-light wrk (taskset is in util-linux)"
DEFAULT_GATEWAY_CMD = (
    "{python} -m llm_proxy serve --config {config} --host 127.0.0.1 --port {port} --workers 1"
)
# 17 content deltas; with the role chunk, the finish chunk and the usage chunk: 20 events.
REPLY = "Hello! I'm a benchmark reply, streamed to you one small piece at a time."
STREAM_TOKENS = re.findall(r" ?[\w']+|[^\w\s]", REPLY)  # 17 tokens
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never use a proxy


class BenchError(RuntimeError):
    """A setup or measurement failure worth a clear message rather than a traceback."""


# --------------------------------------------------------------------------- fake upstream


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def plain_body() -> str:
    """A fixed, realistic OpenAI chat.completion response."""
    return _dumps(
        {
            "id": "chatcmpl-bench00000000000000000000001",
            "object": "chat.completion",
            "created": 1735689600,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Hello! How can I help you today?",
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
            "system_fingerprint": "fp_bench0001",
        }
    )


def stream_body() -> str:
    """A fixed SSE body: 20 chat.completion.chunk events (role, tokens, stop, usage), [DONE]."""
    base = {
        "id": "chatcmpl-bench00000000000000000000002",
        "object": "chat.completion.chunk",
        "created": 1735689600,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_bench0001",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice]}

    usage = {"prompt_tokens": 9, "completion_tokens": len(STREAM_TOKENS)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": token}) for token in STREAM_TOKENS]
    events += [chunk({}, "stop"), {**base, "choices": [], "usage": usage}]
    return "".join(f"data: {_dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"


def nginx_quote(text: str) -> str:
    """Escape text for the inside of a single-quoted nginx string (no `$`: it would expand)."""
    if "$" in text:
        raise ValueError("nginx strings cannot hold a literal $")
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


def split_events(body: str, limit: int = 3000) -> list[str]:
    """Cut an SSE body at event boundaries into pieces of at most ~limit characters."""
    pieces = [""]
    for event in body.split("\n\n")[:-1]:
        if pieces[-1] and len(pieces[-1]) + len(event) + 2 > limit:
            pieces.append("")
        pieces[-1] += event + "\n\n"
    return pieces


def render_nginx_conf(prefix: Path, port: int) -> Path:
    pieces = split_events(stream_body())
    stream_sets = " ".join(f"set $sse{i} '{nginx_quote(p)}';" for i, p in enumerate(pieces))
    values = {
        "@PREFIX@": str(prefix),
        "@PORT@": str(port),
        "@PLAIN_BODY@": nginx_quote(plain_body()),
        "@STREAM_SETS@": stream_sets,
        "@STREAM_BODY@": "".join(f"$sse{i}" for i in range(len(pieces))),
    }
    template = (BENCH / "nginx.conf.tmpl").read_text()
    for placeholder, value in values.items():
        template = template.replace(placeholder, value)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(template)
    return conf


# --------------------------------------------------------------------------- processes


class Procs:
    """Subprocesses we started, each in its own session, torn down in reverse order."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[IO[bytes]] = []

    def start(
        self, name: str, cmd: list[str], core: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.logdir / f"{name}.log").open("wb")
        self.logs.append(log)
        proc = subprocess.Popen(
            ["taskset", "-c", core, *cmd],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 25) -> str:
        path = self.logdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop_all(self) -> None:
        for proc in reversed(self.procs.values()):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 8
        for proc in reversed(self.procs.values()):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=5)
        for log in self.logs:
            log.close()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the process group of a child we started (its pgid is its pid)."""
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)


@contextmanager
def managed_procs(logdir: Path) -> Iterator[Procs]:
    procs = Procs(logdir)
    try:
        yield procs
    finally:
        procs.stop_all()


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def python_exe() -> str:
    return str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    src = str(ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


# --------------------------------------------------------------------------- HTTP checks


def http_request(
    url: str, body: bytes | None = None, timeout: float = 5.0, key: str = MASTER_KEY
) -> tuple[int, str, bytes]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def wait_ready(
    procs: Procs, name: str, url: str, ok: Callable[[int], bool], timeout: float = 60.0
) -> float:
    """Poll url until ok(status); fail early if the process dies. Returns seconds waited."""
    started = time.monotonic()
    proc = procs.procs[name]
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with {proc.returncode}:\n{procs.log_tail(name)}")
        try:
            if ok(http_request(url, timeout=1.0)[0]):
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{name} not ready at {url} after {timeout:.0f}s:\n{procs.log_tail(name)}")


# --------------------------------------------------------------------------- targets


@dataclass
class Endpoint:
    port: int
    path: str
    model: str
    pid: int  # root of the process tree charged for CPU and RSS
    key: str = MASTER_KEY  # the bearer token wrk sends

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


Targets = dict[str, dict[str, Endpoint]]  # target -> kind -> endpoint


def start_nginx(procs: Procs, prefix: Path) -> Endpoint:
    port = free_port()
    conf = render_nginx_conf(prefix, port)
    cmd = [nginx_binary(), "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]
    proc = procs.start("nginx", cmd, CLIENT_CORE)
    endpoint = Endpoint(port, "/plain" + ROUTE, "gpt-4o-mini", proc.pid)
    wait_ready(procs, "nginx", endpoint.url + "/", lambda status: status == 404)
    return endpoint


def start_floor(procs: Procs, name: str, upstream: str) -> Endpoint:
    port = free_port()
    cmd = [python_exe(), str(BENCH / "floor.py"), "--port", str(port), "--upstream", upstream]
    proc = procs.start(name, cmd, SERVER_CORE, child_env())
    wait_ready(procs, name, f"http://127.0.0.1:{port}/", lambda status: status == 404)
    return Endpoint(port, ROUTE, "gpt-4o-mini", proc.pid)


def start_floors(procs: Procs, prefix: str, upstream: str) -> dict[str, Endpoint]:
    """The floor has one upstream, so plain and stream each get their own instance."""
    return {kind: start_floor(procs, f"{prefix}-{kind}", f"{upstream}/{kind}") for kind in KINDS}


def start_gateway(
    procs: Procs,
    tmp: Path,
    upstream: str,
    cmd_template: str,
    name: str = "gateway",
    **env_extra: str,
) -> dict[str, Endpoint]:
    port = free_port()
    data_dir = tmp / f"{name}-data"
    data_dir.mkdir()
    config = BENCH / "gateway.yaml"
    cmd = shlex.split(cmd_template.format(python=python_exe(), config=config, port=port))
    env = child_env(
        LLM_PROXY_MASTER_KEY=MASTER_KEY,
        BENCH_UPSTREAM=upstream,
        LLM_PROXY_DATA_DIR=str(data_dir),
        **env_extra,
    )
    proc = procs.start(name, cmd, SERVER_CORE, env)
    wait_ready(procs, name, f"http://127.0.0.1:{port}/health", lambda s: s == 200, 90)
    return {kind: Endpoint(port, ROUTE, f"bench-{kind}", proc.pid) for kind in KINDS}


def keyed(endpoints: dict[str, Endpoint]) -> dict[str, Endpoint]:
    """A virtual key with every limit (rpm, tpm, parallel slots, a budget) in a team that has
    them too, made through the admin API: the same gateway, through keys, limits and budgets."""
    base = f"http://127.0.0.1:{endpoints['plain'].port}"
    big = 10**9
    team = _admin(
        base, "/admin/teams", {"name": "bench", "rpm": big, "tpm": big, "max_budget": 1e6}
    )
    key = _admin(
        base,
        "/admin/keys",
        {
            "team_id": team["id"],
            "models": ["bench-*"],
            "rpm": big,
            "tpm": big,
            "max_parallel_requests": 10_000,
            "max_budget": 1e6,
            "budget_period": "30d",
        },
    )
    return {
        kind: Endpoint(ep.port, ep.path, ep.model, ep.pid, key["key"])
        for kind, ep in endpoints.items()
    }


def _admin(base: str, path: str, doc: dict[str, Any]) -> dict[str, Any]:
    status, _, body = http_request(base + path, json.dumps(doc).encode())
    if status != 201:
        raise BenchError(f"POST {path} answered {status}: {body[:300]!r}")
    result: dict[str, Any] = json.loads(body)
    return result


def redis_url() -> str | None:
    """The local Redis, if one answers (the keyed-redis target needs it)."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return "redis://127.0.0.1:6379/0" if s.recv(16).startswith(b"+PONG") else None
    except OSError:
        return None


def start_targets(procs: Procs, tmp: Path, args: argparse.Namespace) -> Targets:
    nginx = start_nginx(procs, tmp / "nginx")
    upstream = f"http://127.0.0.1:{nginx.port}"
    targets: Targets = {
        "direct": {
            kind: Endpoint(nginx.port, f"/{kind}{ROUTE}", "gpt-4o-mini", nginx.pid)
            for kind in KINDS
        },
        "floor": start_floors(procs, "floor", upstream),
    }
    if args.gateway_as_floor:
        targets["gateway"] = start_floors(procs, "gateway", upstream)
    else:
        targets["gateway"] = start_gateway(procs, tmp, upstream, args.gateway_cmd)
        # The same gateway process, through a model with 3 deployments (separate providers,
        # so 3 circuit breakers and stats): what routing itself costs per request.
        targets["routed"] = {
            kind: Endpoint(ep.port, ep.path, f"bench-{kind}-3", ep.pid)
            for kind, ep in targets["gateway"].items()
        }
        # ...and through a virtual key with every limit and a budget (in memory).
        targets["keyed"] = keyed(targets["gateway"])
        url = None if args.no_redis else redis_url()
        if url:  # a second gateway with its limits and budgets in Redis
            second = start_gateway(
                procs,
                tmp,
                upstream,
                args.gateway_cmd,
                "gateway-redis",
                LLM_PROXY_REDIS_URL=url,
                LLM_PROXY_REDIS_PREFIX=f"bench{os.getpid()}",
            )
            targets["redis"] = keyed(second)
    return targets


def sse_data_lines(body: bytes) -> list[str]:
    lines = body.decode().splitlines()
    return [line[5:].strip() for line in lines if line.startswith("data:")]


def check_endpoint(target: str, kind: str, ep: Endpoint) -> dict[str, Any]:
    """One real request through the endpoint, checked for the right shape."""
    payload: dict[str, Any] = {"model": ep.model, "messages": [{"role": "user", "content": "hi"}]}
    if kind == "stream":
        payload["stream"] = True
    status, ctype, body = http_request(
        ep.url + ep.path, _dumps(payload).encode(), timeout=10, key=ep.key
    )
    where = f"{target}/{kind} ({ep.url}{ep.path})"
    if status != 200:
        raise BenchError(f"{where}: HTTP {status} {ctype}: {body[:500]!r}")
    if kind == "plain":
        doc = json.loads(body)
        if doc.get("object") != "chat.completion" or not doc.get("choices"):
            raise BenchError(f"{where}: not a chat.completion: {body[:500]!r}")
        return {"content_type": ctype, "bytes": len(body)}
    events = sse_data_lines(body)
    if not ctype.startswith("text/event-stream") or not events or events[-1] != "[DONE]":
        raise BenchError(f"{where}: not an SSE stream ending in [DONE]: {body[:500]!r}")
    return {"content_type": ctype, "bytes": len(body), "events": len(events) - 1}


def validate(targets: Targets) -> dict[str, Any]:
    checks = {
        f"{target}/{kind}": check_endpoint(target, kind, ep)
        for target, endpoints in targets.items()
        for kind, ep in endpoints.items()
    }
    for name, check in checks.items():
        print(f"  ok  {name:<16} {check}")
    return checks


# --------------------------------------------------------------------------- /proc accounting


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def tree_pids(root: int) -> list[int]:
    """root and all its live descendants, found via the ppid field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def cpu_seconds(root: int) -> float:
    """utime+stime (plus reaped children's cutime+cstime) summed over the process tree."""
    ticks = 0
    for pid in tree_pids(root):
        if fields := _stat_fields(pid):
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / CLK_TCK


def rss_kib(root: int) -> int:
    total = 0
    for pid in tree_pids(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


# --------------------------------------------------------------------------- wrk


def run_wrk(
    ep: Endpoint, kind: str, connections: int, seconds: int, max_requests: int | None = None
) -> dict[str, Any]:
    """One wrk run (optionally stopping after max_requests responses); its JSON summary."""
    script = str(BENCH / "post.lua")
    cmd = [*WRK, f"-c{connections}", f"-d{seconds}s", "-s", script, ep.url, "--"]
    cmd += [ep.path, kind, ep.key, ep.model]
    env = {**os.environ, "WRK_MAX_REQUESTS": str(max_requests)} if max_requests else None
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + 60, check=False, env=env
    )
    for line in out.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            return result
    raise BenchError(f"wrk gave no summary (rc={out.returncode}):\n{out.stdout}\n{out.stderr}")


def measure(target: str, kind: str, ep: Endpoint, connections: int, seconds: int) -> dict[str, Any]:
    cpu_before = cpu_seconds(ep.pid)
    wrk = run_wrk(ep, kind, connections, seconds)
    cpu = cpu_seconds(ep.pid) - cpu_before
    n = wrk["requests"]
    latency = wrk["latency_us"]
    return {
        "target": target,
        "kind": kind,
        "concurrency": connections,
        "requests": n,
        "duration_s": round(wrk["duration_us"] / 1e6, 3),
        "rps": round(n / (wrk["duration_us"] / 1e6), 1),
        "p50_ms": latency["p50"] / 1000,
        "p90_ms": latency["p90"] / 1000,
        "p99_ms": latency["p99"] / 1000,
        "max_ms": latency["max"] / 1000,
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_req": round(cpu * 1000 / n, 4) if n else None,
        "errors": sum(wrk["errors"].values()),
        "error_detail": wrk["errors"],
        "bytes": wrk["bytes"],
    }


def run_matrix(
    targets: Targets, seconds: int, warmup: int, repeat: int = 1
) -> list[dict[str, Any]]:
    """Every target x kind x concurrency, `repeat` rounds interleaved target by target.

    Interleaving puts the floor's and the gateway's runs of a cell next to each other in time,
    so drift on a shared machine (other tenants, frequency changes) hits both alike. Each cell
    reports the run with the median CPU per request, and all runs' figures.
    """
    if warmup:
        for endpoints in targets.values():
            for kind, ep in endpoints.items():
                run_wrk(ep, kind, 16, warmup)
    samples: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for kind in KINDS:
        for connections in CONCURRENCY:
            for _ in range(repeat):
                for target, endpoints in targets.items():
                    cell = measure(target, kind, endpoints[kind], connections, seconds)
                    print("  " + format_row(cell), flush=True)
                    samples.setdefault((target, kind, connections), []).append(cell)
                    time.sleep(0.3)  # let connections drain between cells
    cells = []
    for target in targets:
        for kind in KINDS:
            for connections in CONCURRENCY:
                runs = samples[(target, kind, connections)]
                ranked = sorted(runs, key=lambda c: c["cpu_ms_per_req"] or 0.0)
                cell = dict(ranked[len(ranked) // 2])
                cell["cpu_ms_samples"] = [c["cpu_ms_per_req"] for c in runs]
                cell["rps_samples"] = [c["rps"] for c in runs]
                cells.append(cell)
    return cells


def soak(
    ep: Endpoint, checkpoints: tuple[int, ...], rate: float, connections: int = 16
) -> dict[str, Any]:
    """Plain requests through the gateway; RSS of its process tree at each checkpoint.

    wrk stops after the requests still needed (WRK_MAX_REQUESTS), but its main thread sleeps
    for the whole -d, so -d is sized from the expected rate with some margin.
    """
    total = errors = 0
    points = [{"requests": 0, "rss_kib": rss_kib(ep.pid)}]
    started = time.monotonic()
    for checkpoint in checkpoints:
        while total < checkpoint:
            need = checkpoint - total
            seconds = max(1, math.ceil(need * 1.15 / rate))
            wrk = run_wrk(ep, "plain", connections, seconds, max_requests=need)
            if not wrk["requests"]:
                raise BenchError(f"soak: no requests completed ({wrk['errors']})")
            total += wrk["requests"]
            errors += sum(wrk["errors"].values())
            if wrk["requests"] < need:  # ran the whole -d: slower than expected
                rate = wrk["requests"] / (wrk["duration_us"] / 1e6)
        points.append({"requests": total, "rss_kib": rss_kib(ep.pid)})
        print(f"  after {total:>7} requests: RSS {points[-1]['rss_kib'] / 1024:.1f} MiB")
    first, last = points[1]["rss_kib"], points[-1]["rss_kib"]
    return {
        "connections": connections,
        "checkpoints": list(checkpoints),
        "points": points,
        "errors": errors,
        "seconds": round(time.monotonic() - started, 1),
        "growth_pct": round((last - first) * 100 / first, 2) if first else None,
    }


# --------------------------------------------------------------------------- report


def format_row(cell: dict[str, Any]) -> str:
    cpu = cell["cpu_ms_per_req"]
    cpu_text = f"{cpu:9.3f}" if cpu is not None else f"{'-':>9}"
    errors = f"{cell['errors']}" if cell["errors"] else ""
    return (
        f"{cell['target']:<8} {cell['kind']:<6} {cell['concurrency']:>4} "
        f"{cell['rps']:>9.0f} {cell['p50_ms']:>8.2f} {cell['p99_ms']:>8.2f} {cpu_text} {errors}"
    )


TABLE_HEADER = (
    f"{'target':<8} {'kind':<6} {'conc':>4} {'req/s':>9} {'p50 ms':>8} "
    f"{'p99 ms':>8} {'cpu ms/r':>9} errors"
)


def _cell(cells: list[dict[str, Any]], target: str, kind: str, conc: int) -> dict[str, Any]:
    return next(
        c for c in cells if (c["target"], c["kind"], c["concurrency"]) == (target, kind, conc)
    )


def _ratio(num: float | None, den: float | None) -> float | None:
    return round(num / den, 2) if num is not None and den else None


def gateway_vs_floor(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per kind and concurrency: the median of the paired (same round) gateway/floor ratios."""
    rows = []
    for kind in KINDS:
        for conc in CONCURRENCY:
            gateway, floor = _cell(cells, "gateway", kind, conc), _cell(cells, "floor", kind, conc)
            rows.append(
                {
                    "kind": kind,
                    "concurrency": conc,
                    "cpu_ratio": _paired_median(gateway, floor, "cpu_ms"),
                    "rps_ratio": _paired_median(gateway, floor, "rps"),
                }
            )
    return rows


def routed_vs_gateway(cells: list[dict[str, Any]], target: str = "routed") -> list[dict[str, Any]]:
    """CPU ms per request that `target` (3 deployments; a limited key) adds over the plain
    gateway target (median of same-round differences)."""
    if not any(c["target"] == target for c in cells):
        return []
    rows = []
    for kind in KINDS:
        for conc in CONCURRENCY:
            r, g = _cell(cells, target, kind, conc), _cell(cells, "gateway", kind, conc)
            pairs = zip(r["cpu_ms_samples"], g["cpu_ms_samples"], strict=False)
            diffs = sorted(a - b for a, b in pairs if a is not None and b is not None)
            rows.append(
                {
                    "kind": kind,
                    "concurrency": conc,
                    "added_cpu_ms": round(diffs[len(diffs) // 2], 4) if diffs else None,
                }
            )
    return rows


def _paired_median(gateway: dict[str, Any], floor: dict[str, Any], what: str) -> float | None:
    g = gateway.get(f"{what}_samples") or [gateway[f"{what}_per_req" if what == "cpu_ms" else what]]
    f = floor.get(f"{what}_samples") or [floor[f"{what}_per_req" if what == "cpu_ms" else what]]
    ratios = sorted(r for a, b in zip(g, f, strict=False) if (r := _ratio(a, b)) is not None)
    return ratios[len(ratios) // 2] if ratios else None


def added_latency(cells: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """p50 added over direct nginx at one client, for the gateway and the floor."""
    result = {}
    for kind in KINDS:
        direct = _cell(cells, "direct", kind, 1)["p50_ms"]
        result[kind] = {
            target: round(_cell(cells, target, kind, 1)["p50_ms"] - direct, 3)
            for target in ("floor", "gateway")
        }
    return result


def print_report(results: dict[str, Any]) -> None:
    print("\n" + TABLE_HEADER)
    for cell in results["cells"]:
        print(format_row(cell))
    print("\n(cpu ms/r for direct is nginx's own CPU; for floor and gateway the server tree's)")
    print("\ngateway / floor      cpu ratio   req/s ratio")
    for row in results["gateway_vs_floor"]:
        print(
            f"  {row['kind']:<6} c={row['concurrency']:<4} {row['cpu_ratio']!s:>12}"
            f" {row['rps_ratio']!s:>13}"
        )
    for name, title in (
        ("routed_vs_gateway", "3 deployments vs 1 (same gateway)"),
        (
            "keyed_vs_gateway",
            "a virtual key with rpm, tpm, slots and budget, key and team, in memory",
        ),
        ("redis_vs_gateway", "the same key on a second gateway with its limits in Redis"),
    ):
        if results.get(name):
            print(f"\n{title}: CPU ms per request added over the master key")
            for row in results[name]:
                print(f"  {row['kind']:<6} c={row['concurrency']:<4} {row['added_cpu_ms']!s:>10}")
    cost = results.get("routing_cost")
    if cost:
        cpu = cost["cpu"]
        print("\nin process, 3 deployments vs 1: microseconds of CPU per request added")
        for kind in ("plain", "stream"):
            got = cpu[f"added_us_{kind}"]
            print(
                f"  {kind:<6} fastest rounds {got['min_diff']:+.2f}   "
                f"median same-round {got['median_paired_diff']:+.2f}"
            )
        if "instructions" in cost:
            ins = cost["instructions"]
            per = ins["instructions_per_request"]
            # instructions -> microseconds at the rate this machine ran the single deployment
            rate = per["one"] / min(cpu["us_per_request"]["one"])
            print("  exact (callgrind): instructions per request, 1 -> 3 deployments")
            for kind, one, three in (
                ("plain", "one", "three"),
                ("stream", "one-stream", "three-stream"),
            ):
                added = per[three] - per[one]
                print(
                    f"  {kind:<6} {per[one]:>9,} -> {per[three]:>9,}  "
                    f"({added:+,}, about {added / rate:+.1f} us)"
                )
    print("\np50 added over direct at 1 client (ms)")
    for kind, added in results["added_p50_ms_c1"].items():
        print(f"  {kind:<6} gateway {added['gateway']:+.3f}   floor {added['floor']:+.3f}")
    soak_result = results["soak"]
    print(f"\nsoak (gateway, plain, c={soak_result['connections']}, {soak_result['seconds']}s)")
    for point in soak_result["points"]:
        when = f"after {point['requests']:>7} requests" if point["requests"] else "at soak start"
        print(f"  {when:<22}: RSS {point['rss_kib'] / 1024:.1f} MiB")
    print(
        f"  growth from first to last checkpoint: {soak_result['growth_pct']}%  "
        f"errors: {soak_result['errors']}"
    )
    print(f"\nwritten to {results['path']}")


# --------------------------------------------------------------------------- main


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"  # often not on a non-root PATH


def check_tools() -> None:
    missing = [tool for tool in ("wrk", "taskset") if not shutil.which(tool)]
    if not Path(nginx_binary()).exists():
        missing.insert(0, "nginx")
    if missing:
        raise BenchError(f"missing tool(s): {', '.join(missing)}; {INSTALL_HINT}")
    if (os.cpu_count() or 1) < 2:
        raise BenchError("need at least 2 CPU cores (servers on core 0, wrk on core 1)")


def tool_version(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "?"


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    git = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "git_rev": git.stdout.strip() or None,
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": tool_version([nginx_binary(), "-v"]),
        "wrk": tool_version(["wrk", "-v"]),
        "seconds_per_cell": args.duration,
        "rounds_per_cell": args.repeat,
        "warmup_seconds": args.warmup,
        "concurrency": list(CONCURRENCY),
        "gateway": "floor stand-in" if args.gateway_as_floor else args.gateway_cmd,
        "pinning": {"servers": SERVER_CORE, "wrk_and_nginx": CLIENT_CORE},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="llm-proxy benchmark (nginx, floor, gateway)")
    parser.add_argument("--quick", action="store_true", help="2s cells, 10k/20k soak")
    parser.add_argument("--duration", type=int, help="seconds per cell (default 5, quick 2)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds per target/kind")
    parser.add_argument(
        "--repeat", type=int, help="interleaved rounds per cell (default 3, quick 1)"
    )
    parser.add_argument(
        "--soak",
        type=int,
        nargs=2,
        metavar=("N1", "N2"),
        help="soak checkpoints (default 10000 50000, quick 10000 20000)",
    )
    parser.add_argument(
        "--gateway-cmd",
        default=DEFAULT_GATEWAY_CMD,
        help="gateway command; {python}, {config}, {port} are filled in",
    )
    parser.add_argument(
        "--gateway-as-floor",
        action="store_true",
        help="put floor instances in the gateway slot (harness self-test)",
    )
    parser.add_argument("--out", type=Path, help="results file (default bench/results/DATE.json)")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis-mode gateway")
    parser.add_argument(
        "--no-instructions",
        action="store_true",
        help="skip the callgrind instruction count of routing (about 3 minutes)",
    )
    args = parser.parse_args(argv)
    args.duration = args.duration or (2 if args.quick else 4)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.soak = tuple(args.soak or ((10_000, 20_000) if args.quick else (10_000, 50_000)))
    if args.out is None:
        suffix = "-floor-standin" if args.gateway_as_floor else ""
        args.out = BENCH / "results" / f"{dt.date.today().isoformat()}{suffix}.json"
    return args


def routing_cost(args: argparse.Namespace) -> dict[str, Any]:
    """bench/routing_cost.py: one deployment vs three, in process (CPU time; callgrind counts)."""
    script = [python_exe(), str(BENCH / "routing_cost.py")]
    env = child_env()
    out: dict[str, Any] = {}
    runs = [("cpu", ["--rounds", "3" if args.quick else "7"])]
    if not args.no_instructions and shutil.which("valgrind"):
        runs.append(("instructions", ["--instructions"]))
    for name, extra in runs:
        # CPU time is measured on the servers' core; instruction counts need no pinning.
        cmd = (
            [*script, *extra]
            if name == "instructions"
            else ["taskset", "-c", SERVER_CORE, *script, *extra]
        )
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise BenchError(f"routing_cost.py {' '.join(extra)} failed:\n{done.stderr[-2000:]}")
        out[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"meta": metadata(args)}
    with managed_procs(tmp) as procs:
        print("starting nginx, floor and gateway ...", flush=True)
        try:
            targets = start_targets(procs, tmp, args)
            print("checking each endpoint once:")
            results["checks"] = validate(targets)
            results["rss_idle_kib"] = {t: rss_kib(eps["plain"].pid) for t, eps in targets.items()}
            print(
                f"\nmeasuring ({args.duration}s per cell, {args.repeat} interleaved rounds):"
                f"\n  {TABLE_HEADER}"
            )
            results["cells"] = run_matrix(targets, args.duration, args.warmup, args.repeat)
            print(f"\nsoak to {args.soak[-1]} requests through the gateway:")
            rate = _cell(results["cells"], "gateway", "plain", 16)["rps"]
            results["soak"] = soak(targets["gateway"]["plain"], args.soak, rate)
        except BenchError:
            for name in procs.procs:
                print(f"--- {name} log tail ---\n{procs.log_tail(name, 10)}", file=sys.stderr)
            raise
    results["gateway_vs_floor"] = gateway_vs_floor(results["cells"])
    results["added_p50_ms_c1"] = added_latency(results["cells"])
    results["routed_vs_gateway"] = routed_vs_gateway(results["cells"])
    results["keyed_vs_gateway"] = routed_vs_gateway(results["cells"], "keyed")
    results["redis_vs_gateway"] = routed_vs_gateway(results["cells"], "redis")
    if not args.gateway_as_floor:
        print("\nin-process routing cost (bench/routing_cost.py) ...", flush=True)
        results["routing_cost"] = routing_cost(args)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    try:
        check_tools()
        with tempfile.TemporaryDirectory(prefix="llm-proxy-bench-") as tmp:
            results = run(args, Path(tmp))
    except BenchError as err:
        print(f"bench failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; subprocesses stopped", file=sys.stderr)
        return 130
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results["path"] = str(args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
