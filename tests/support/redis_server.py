"""A redis-server of the test's own, on a free port, that a test may hang (SIGSTOP: it still accepts
connections, the kernel completes the handshake, but it never answers), resume, kill, or restart empty on
the same port. Never the machine's shared Redis."""
import os
import signal
import socket
import subprocess
import time

import redis


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self, log_path):
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_path
        self.hanging = False
        self._start()

    def _start(self):
        self.log = open(self.log_path, "a")
        self.popen = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {open(self.log_path).read()[-2000:]}")
                time.sleep(0.05)
        client.close()

    def kill(self):
        """SIGKILL: connections are refused, and everything it held (queued messages, flags) is gone."""
        self.popen.kill()
        self.popen.wait(10)
        self.log.close()

    def restart(self):
        """A new, empty redis-server on the same port, as after a crash without persistence."""
        self._start()

    def hang(self):
        os.kill(self.popen.pid, signal.SIGSTOP)
        self.hanging = True

    def resume(self):
        os.kill(self.popen.pid, signal.SIGCONT)
        self.hanging = False

    def stop(self):
        if self.popen.poll() is not None:
            return
        if self.hanging:
            self.resume()
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
        self.log.close()
