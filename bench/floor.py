"""The "Python floor": the least a Python passthrough proxy can cost per request.

Raw ASGI app on uvicorn (uvloop + httptools, one worker, no access log) that forwards
POST /v1/chat/completions to ``--upstream`` + path over one pooled keep-alive aiohttp
session and relays the answer: plain bodies in one send, SSE chunk by chunk. No features.

    python bench/floor.py --port 18081 --upstream http://127.0.0.1:18080/plain
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import uvicorn

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ROUTE = "/v1/chat/completions"


class Floor:
    def __init__(self, upstream: str) -> None:
        self.url = upstream.rstrip("/") + ROUTE
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["method"] == "POST" and scope["path"] == ROUTE:
            await self.forward(receive, send)
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=300)
                self.session = aiohttp.ClientSession(connector=connector)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def forward(self, receive: Receive, send: Send) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        assert self.session is not None
        headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-floor"}
        async with self.session.post(self.url, data=body, headers=headers) as resp:
            ctype = resp.headers.get("Content-Type", "application/json").encode()
            start = {"type": "http.response.start", "status": resp.status}
            if ctype.startswith(b"text/event-stream"):
                await send({**start, "headers": [(b"content-type", ctype)]})
                async for chunk in resp.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return
            data = await resp.read()
            length = str(len(data)).encode()
            await send(
                {**start, "headers": [(b"content-type", ctype), (b"content-length", length)]}
            )
            await send({"type": "http.response.body", "body": data})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18081)
    parser.add_argument("--upstream", default=os.environ.get("FLOOR_UPSTREAM"), required=False)
    args = parser.parse_args()
    if not args.upstream:
        parser.error("--upstream (or FLOOR_UPSTREAM) is required")
    uvicorn.run(
        Floor(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        workers=1,
    )


if __name__ == "__main__":
    main()
