"""Traffic for make.sh: real sockets on the namespace's loopback, every loop bounded."""
import socket
import struct
import sys
import threading
import time

ADDR = ("127.0.0.1", 1433)


def server(handler, ready, rcvbuf=None):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind(ADDR)
    s.listen(8)
    s.settimeout(20)
    ready.set()
    conn, _ = s.accept()
    conn.settimeout(20)
    try:
        handler(conn)
    finally:
        s.close()


def start(handler, rcvbuf=None):
    ready = threading.Event()
    t = threading.Thread(target=server, args=(handler, ready, rcvbuf), daemon=True)
    t.start()
    ready.wait(5)
    return t


def loss():
    # Echo server: request/response round trips of TDS-like sizes.
    def echo(conn):
        for _ in range(200):
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data * 3)
        conn.close()

    t = start(echo)
    c = socket.create_connection(ADDR, timeout=20)
    for i in range(60):
        c.sendall(bytes([i % 256]) * 2000)
        want, got = 6000, 0
        deadline = time.time() + 10
        while got < want and time.time() < deadline:
            chunk = c.recv(65536)
            if not chunk:
                break
            got += len(chunk)
    c.close()
    t.join(10)


def zero_window():
    stop = threading.Event()

    def lazy(conn):
        # Read nothing until the client has been blocked for a while, then drain.
        stop.wait(6)
        conn.settimeout(5)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        conn.close()

    t = start(lazy, rcvbuf=4096)
    c = socket.create_connection(ADDR, timeout=20)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    c.setblocking(False)
    sent, deadline = 0, time.time() + 5
    while time.time() < deadline and sent < 2_000_000:
        try:
            sent += c.send(b"x" * 1024)
        except BlockingIOError:
            time.sleep(0.05)
    stop.set()
    c.setblocking(True)
    c.settimeout(10)
    c.shutdown(socket.SHUT_WR)
    try:
        c.recv(1)
    except OSError:
        pass
    c.close()
    t.join(10)


def refused_reset_fin():
    # Attempt 1: nothing listening -> RST.
    try:
        socket.create_connection(ADDR, timeout=3).close()
    except OSError:
        pass

    # Attempt 2: the server reads one request and aborts with RST.
    def abort(conn):
        conn.recv(100)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    t = start(abort)
    c = socket.create_connection(ADDR, timeout=5)
    c.sendall(b"q" * 64)
    try:
        c.recv(100)
    except OSError:
        pass
    c.close()
    t.join(5)

    # Attempt 3: orderly close, server first.
    def polite(conn):
        conn.recv(100)
        conn.sendall(b"r" * 100)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(100)
        conn.close()

    t = start(polite)
    c = socket.create_connection(ADDR, timeout=5)
    c.sendall(b"q" * 64)
    while c.recv(1000):
        pass
    c.close()
    t.join(5)


if __name__ == "__main__":
    {"loss": loss, "zero-window": zero_window, "refused-reset-fin": refused_reset_fin}[sys.argv[1]]()
