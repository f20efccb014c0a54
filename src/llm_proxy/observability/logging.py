"""JSON logs written by a background thread (QueueHandler), so the event loop never does log I/O."""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys
import time
from typing import Any

import orjson
from typing_extensions import override

_STD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_listener: logging.handlers.QueueListener | None = None
calls = logging.getLogger("llm_proxy.requests")


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every `extra` field."""

    @override
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STD and not k.startswith("_"):
                doc[k] = v
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def setup_logging(level: str) -> None:
    """Route every logger through one queue to a JSON stderr handler on a background thread."""
    global _listener
    if _listener is not None:
        _listener.stop()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(q, handler, respect_handler_level=False)
    _listener.start()
    atexit.register(_listener.stop)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(q)]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("uvicorn.access").disabled = True


def record_call(rec: Any) -> None:
    """The access-log line for one inference call (request id, model, provider, status, latency)."""
    calls.info(
        "call",
        extra={
            "request_id": rec.request_id,
            "model": rec.model,
            "provider": rec.provider,
            "upstream_model": rec.upstream_model,
            "deployment": rec.deployment,
            "attempts": rec.attempts,
            "hedged": rec.hedged,
            "condensed": rec.condensed,
            "stream": rec.stream,
            "status": rec.status,
            "latency_ms": round((time.monotonic() - rec.started) * 1000, 2),
            "usage": rec.usage,
            "disconnected": rec.disconnected,
            "error": rec.error,
        },
    )
