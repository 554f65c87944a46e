"""A minimal keep-alive HTTP/1.1 server for benchmarks: run in its own process so it costs the client nothing.

    python bench/upstream.py [PORT] [DELAY_SECONDS]

The fallback for bench/upstream-go when Go is missing (see bench/_upstream.py).
"""

from __future__ import annotations

import asyncio
import sys

DELAY = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            if DELAY:
                await asyncio.sleep(DELAY)
            writer.write(RESPONSE)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
