#!/usr/bin/env python3
"""A TCP proxy on loopback that adds latency, not a bandwidth limit.

    delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS

Accepts on 127.0.0.1:LISTEN_PORT and connects each client to
127.0.0.1:TARGET_PORT. Every piece of data read in either direction is
forwarded DELAY_MS / 2 after it arrived (in order), so a request and its
answer take DELAY_MS more round trip time, as a server in another rack or
building would; throughput is not limited (pieces in flight overlap).
Used by bench/latency.sh to put a PostgreSQL server and an S3 service 2 ms
away. Prints "listening" once it accepts.
"""
import asyncio
import sys
import time

LISTEN, TARGET, DELAY = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 2000


async def pipe(reader, writer):
    q = asyncio.Queue()

    async def forward():
        while True:
            at, data = await q.get()
            if data is None:
                break
            wait = at + DELAY - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    task = asyncio.create_task(forward())
    try:
        while data := await reader.read(1 << 16):
            q.put_nowait((time.monotonic(), data))
    except ConnectionError:
        pass
    q.put_nowait((time.monotonic(), None))
    try:
        await task
    except ConnectionError:
        pass


async def handle(creader, cwriter):
    try:
        treader, twriter = await asyncio.open_connection("127.0.0.1", TARGET)
    except OSError:
        cwriter.close()
        return
    await asyncio.gather(pipe(creader, twriter), pipe(treader, cwriter))


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", LISTEN)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
