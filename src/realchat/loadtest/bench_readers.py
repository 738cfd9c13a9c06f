"""The client ends of `realchat bench dispatch`'s socket scenarios, in a process of their own.

Run as `python -m realchat.loadtest.bench_readers PORT COUNT`: opens COUNT TCP connections to
127.0.0.1:PORT, prints `ready`, reads everything that arrives until every connection is
closed, then prints the bytes received. In a separate process, the reading neither shares the
measured event loop's GIL nor runs on its thread: a reader thread in the same process held
the GIL while the loop wrote, and the loop's figure came out up to twice its real cost.
"""

from __future__ import annotations

import selectors
import socket
import sys


def drain(port: int, count: int) -> int:
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    print("ready", flush=True)
    selector = selectors.DefaultSelector()
    for client in sockets:
        client.setblocking(False)
        selector.register(client, selectors.EVENT_READ)
    buffer = bytearray(256 * 1024)
    received, open_ = 0, count
    while open_:
        for key, _ in selector.select():
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                size = sock.recv_into(buffer)
            except BlockingIOError:
                continue
            except ConnectionError:
                size = 0
            if size == 0:
                selector.unregister(sock)
                sock.close()
                open_ -= 1
            received += size
    return received


if __name__ == "__main__":
    print(drain(int(sys.argv[1]), int(sys.argv[2])), flush=True)
