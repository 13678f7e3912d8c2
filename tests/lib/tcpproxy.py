# SPDX-License-Identifier: BSD-2-Clause
"""tcpproxy.py: a TCP proxy on loopback in front of a server (Redis), with a hook on each direction, for tests
that need a reply delayed or a connection cut at a chosen moment."""
import socket
import threading


class TcpProxy:
    """Listens on 127.0.0.1:self.port and relays each connection to host:port. to_client(data) runs before a
    server-to-client chunk is passed on (it may sleep, holding that chunk and what follows it on that
    connection); from_client(data) runs after a client-to-server chunk was passed on, and a true answer closes
    the connection both ways."""

    def __init__(self, host, port, to_client=None, from_client=None):
        self.target, self.to_client, self.from_client = (host, port), to_client, from_client
        self.lock = threading.Lock()
        self.conns = set()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                return
            server.settimeout(None)
            pair = (client, server)
            with self.lock:
                self.conns.add(pair)
            threading.Thread(target=self._pipe, args=(client, server, pair, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, pair, False), daemon=True).start()

    def _pipe(self, src, dst, pair, from_client):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not from_client and self.to_client is not None:
                    self.to_client(data)
                dst.sendall(data)
                if from_client and self.from_client is not None and self.from_client(data):
                    break
        except OSError:
            pass
        self._close(pair)

    def _close(self, pair):
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self.lock:
            if pair in self.conns:
                self.conns.discard(pair)
                for s in pair:
                    s.close()

    def close(self):
        self.sock.close()
        with self.lock:
            pairs = list(self.conns)
        for pair in pairs:
            self._close(pair)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
