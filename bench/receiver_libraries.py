"""Which HTTP server library the receiver runs on: the same handler on three servers.

    pip install aiohttp starlette uvicorn
    python bench/receiver_libraries.py            # 2,000 pages of 1,000 members, 4 connections

Each server reads the body, parses it, writes it with fsync in a worker thread and answers JSON
(what mixpanel-cohort-receiver does); a client posts members pages and prints the rate, the
answers' p50/p99, the server's CPU and peak RSS. Servers whose library is missing are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testkit.services import free_port

SERVERS = ["aiohttp", "starlette", "stdlib"]


def store(spool: str, body: bytes) -> str:
    """Parse, then write durably (fsync, rename): the receiver's work per message."""
    action = json.loads(body)["action"]
    name = os.path.join(spool, hashlib.sha256(body).hexdigest()[:32])
    with open(f"{name}.tmp", "wb") as handle:
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(f"{name}.tmp", f"{name}.json")
    return action


def serve_aiohttp(port: int, spool: str) -> None:
    import asyncio  # noqa: PLC0415

    from aiohttp import web  # noqa: PLC0415

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        action = await asyncio.get_running_loop().run_in_executor(None, store, spool, body)
        return web.json_response({"action": action, "status": "success"})

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/", hook)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def serve_starlette(port: int, spool: str) -> None:
    import uvicorn  # noqa: PLC0415
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.concurrency import run_in_threadpool  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import JSONResponse  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    async def hook(request: Request) -> JSONResponse:
        action = await run_in_threadpool(store, spool, await request.body())
        return JSONResponse({"action": action, "status": "success"})

    app = Starlette(routes=[Route("/", hook, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_stdlib(port: int, spool: str) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            out = json.dumps({"action": store(spool, body), "status": "success"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def page(number: int, pages: int) -> bytes:
    members = [{"email": f"u{number}-{i}@example.com", "mixpanel_distinct_id": f"u{number}-{i}",
                "first_name": "A", "last_name": "B", "phone_number": ""} for i in range(1000)]
    return json.dumps({"action": "members", "parameters": {
        "mixpanel_project_id": "1", "mixpanel_cohort_id": "7", "mixpanel_cohort_name": "all",
        "mixpanel_session_id": "s1", "page_info": {"total_pages": pages, "page_count": number},
        "members": members}}).encode()


def measure(server: str, messages: int, connections: int) -> str:
    port = free_port()
    with tempfile.TemporaryDirectory() as spool:
        process = subprocess.Popen([sys.executable, __file__, "--serve", server,
                                    "--port", str(port), "--spool", spool])
        for _ in range(200):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
                break
            except OSError:
                time.sleep(0.05)
        bodies = [page(n, messages) for n in range(1, messages + 1)]
        latencies: list[float] = []
        pending = iter(bodies)
        lock = threading.Lock()

        def send() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            while True:
                with lock:
                    body = next(pending, None)
                if body is None:
                    return
                began = time.perf_counter()
                connection.request("POST", "/", body, {"Content-Type": "application/json"})
                answer = connection.getresponse()
                answer.read()
                assert answer.status == 200
                latencies.append(time.perf_counter() - began)

        stat = Path(f"/proc/{process.pid}/stat")
        cpu = lambda: sum(int(x) for x in stat.read_text().rsplit(")", 1)[1].split()[11:13])  # noqa: E731
        before, began = cpu(), time.perf_counter()
        threads = [threading.Thread(target=send) for _ in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall, used = time.perf_counter() - began, (cpu() - before) / os.sysconf("SC_CLK_TCK")
        rss = next(int(line.split()[1]) for line in
                   Path(f"/proc/{process.pid}/status").read_text().splitlines()
                   if line.startswith("VmHWM")) / 1024
        process.terminate()
        process.wait()
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return (f"{server:<10} {messages / wall:6.0f} msg/s  p50 {p50:4.0f} ms  p99 {p99:4.0f} ms"
            f"  server CPU {used:4.1f} s  peak RSS {rss:3.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--serve", choices=SERVERS)
    parser.add_argument("--port", type=int)
    parser.add_argument("--spool")
    args = parser.parse_args()
    if args.serve:
        globals()[f"serve_{args.serve}"](args.port, args.spool)
        return
    for server in SERVERS:
        try:
            __import__({"aiohttp": "aiohttp", "starlette": "uvicorn"}.get(server, "json"))
        except ImportError:
            print(f"{server:<10} skipped: not installed")
            continue
        print(measure(server, args.messages, args.connections))


if __name__ == "__main__":
    main()
