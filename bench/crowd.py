#!/usr/bin/env python3
"""A slowloris crowd, for bench/bench.py's slowloris phase.

    crowd.py --port PORT [--connections 1100] [--interval 1.0]

Opens CONNECTIONS connections to 127.0.0.1:PORT; each sends the first line
of a request and one header, then another header line every INTERVAL
seconds (± half), never finishing its headers. A connection the daemon
closes, or answers, is opened again at once. It prints `ready` once every
connection has been opened, and on SIGTERM or SIGINT one line of JSON with
its counts, then exits. Run apart from the benchmark's own process so that
its work does not delay the health checks being timed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys

REQUEST_LINE = b"GET /daemonstatus.json HTTP/1.1\r\nHost: 127.0.0.1\r\n"


class Counts:
    def __init__(self):
        self.opened = 0  # connections opened, first ones and re-opened
        self.refused = 0  # connects that failed
        self.cut = 0  # connections the daemon closed or reset
        self.answered = 0  # connections the daemon answered (e.g. 408, 431, 503)
        self.lines = 0  # header lines trickled


async def slow_client(port: int, interval: float, counts: Counts, started: set, index: int, stop: asyncio.Event):
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            counts.refused += 1
            await asyncio.sleep(0.05)
            continue
        counts.opened += 1
        started.add(index)
        try:
            writer.write(REQUEST_LINE)
            await writer.drain()
            line = 0
            while not stop.is_set():
                try:
                    data = await asyncio.wait_for(reader.read(4096), interval * random.uniform(0.5, 1.5))
                except asyncio.TimeoutError:
                    writer.write(b"X-Trickle-%d: %d\r\n" % (line, line))
                    await writer.drain()
                    counts.lines += 1
                    line += 1
                    continue
                if not data:
                    counts.cut += 1
                    break
                counts.answered += 1
                # Read the answer to its end; the daemon closes after it.
                while await reader.read(4096):
                    pass
                break
        except (ConnectionError, OSError):
            counts.cut += 1
        finally:
            writer.close()


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    counts = Counts()
    started: set[int] = set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = []
    for index in range(args.connections):
        tasks.append(asyncio.create_task(slow_client(args.port, args.interval, counts, started, index, stop)))
        if index % 100 == 99:
            await asyncio.sleep(0.01)  # let the listen backlog drain
    while len(started) < args.connections and not stop.is_set():
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(vars(counts)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
