"""A real Icecast 2 server for the tests: started as a subprocess on a free loopback port.

Icecast refuses to run as root unless told to drop to another user (``<changeowner>``); it then
needs its configuration, its log folder and every folder above them readable by that user, so
the server's folder is made under the system's temporary folder (pytest's own are private to
root), and removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ICECAST = shutil.which("icecast2") or shutil.which("icecast")
SOURCE_PASSWORD = "source-secret"
#: Longest a test waits for Icecast to do something it does within milliseconds.
PATIENCE_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config_xml(port: int, log_dir: Path, extra: str = "") -> str:
    """A minimal Icecast configuration: loopback only, the tests' passwords."""
    return f"""<icecast>
  <location>tests</location>
  <admin>admin@localhost</admin>
  <limits>
    <clients>20</clients><sources>4</sources><queue-size>1048576</queue-size>
    <client-timeout>30</client-timeout><header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout><burst-size>65536</burst-size>
  </limits>
  <authentication>
    <source-password>{SOURCE_PASSWORD}</source-password>
    <relay-password>relay-secret</relay-password>
    <admin-user>admin</admin-user><admin-password>admin-secret</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  {extra}
  <paths>
    <basedir>/usr/share/icecast2</basedir><logdir>{log_dir}</logdir>
    <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel></logging>
  <security><chroot>0</chroot></security>
</icecast>
"""


class IcecastServer:
    """One ``icecast2`` process; ``config`` is its XML (``{port}``-free: already filled)."""

    def __init__(self, folder: Path, port: int, config: str, name: str = "icecast") -> None:
        self.folder = folder
        self.port = port
        self.config_path = folder / f"{name}.xml"
        self.log_dir = folder / f"{name}-log"
        self.config = _with_owner_change(config)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start Icecast and wait until it answers. Restarted on the port a previous Icecast
        had, it can exit at once while the port is still held by the old connections; it is
        then started again."""
        self.log_dir.mkdir(exist_ok=True)
        self.log_dir.chmod(0o777)
        self.config_path.write_text(self.config, encoding="utf-8")
        self.config_path.chmod(0o644)
        deadline = time.monotonic() + PATIENCE_SECONDS
        while True:
            self.process = subprocess.Popen(
                [ICECAST, "-c", str(self.config_path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_for(lambda: self._answers(), f"Icecast to answer on port {self.port}", self)
                return
            except RuntimeError:  # it exited
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
            except BaseException:  # it hangs: leave no Icecast behind
                self.stop()
                raise

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=PATIENCE_SECONDS)
        self.process = None

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"icecast2 exited: {self.process.stdout.read().decode()!r}\n{self.errors()}")
        try:
            self.status()
            return True
        except (OSError, ValueError):  # just started, 2.4.4 may answer with broken JSON
            return False

    def status(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/status-json.xsl", timeout=5) as response:
            return json.loads(response.read())["icestats"]

    def source(self, mount: str) -> dict | None:
        """The status of ``mount``'s source, or None while it has none."""
        try:
            sources = self.status().get("source", [])
        except (OSError, ValueError):  # 2.4.4's JSON breaks while its statistics are filled in
            return None
        for source in sources if isinstance(sources, list) else [sources]:
            if source.get("listenurl", "").endswith(mount):
                return source
        return None

    def errors(self) -> str:
        path = self.log_dir / "error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _with_owner_change(config: str) -> str:
    """As root, Icecast must be told to drop to an unprivileged user (``nobody``)."""
    if os.geteuid() != 0:
        return config
    group = "nogroup" if _group_exists("nogroup") else "nobody"
    owner = f"<changeowner><user>nobody</user><group>{group}</group></changeowner>"
    return config.replace("<chroot>0</chroot>", f"<chroot>0</chroot>{owner}", 1)


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


@contextlib.contextmanager
def icecast_folder():
    """A folder Icecast's unprivileged user can read (and its parents: /tmp is)."""
    folder = Path(tempfile.mkdtemp(prefix="streamer-icecast-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def wait_for(condition, what: str, server: IcecastServer | None = None, step=None) -> None:
    """Wait until ``condition()`` is true, calling ``step()`` between looks (to keep a stream
    flowing); fail with Icecast's log after ``PATIENCE_SECONDS``."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}\n{server.errors() if server else ''}")
        if step is not None:
            step()
        else:
            time.sleep(0.02)


class Listener:
    """An HTTP listener of a mount, as a player would be: reads until the stream ends."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.url = url
        self.data = bytearray()
        self._socket = socket.create_connection((parts.hostname, parts.port), timeout=PATIENCE_SECONDS)
        self._socket.sendall(f"GET {parts.path} HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self._socket.recv(4096)
            assert chunk, f"{url} closed before answering"
            head += chunk
        head, _, body = head.partition(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n", 1)[0], head
        self.data.extend(body)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while chunk := self._socket.recv(65536):
                self.data.extend(chunk)
        except OSError:
            pass

    def close(self) -> None:
        """Hang up (the reading thread ends at once)."""
        self._socket.shutdown(socket.SHUT_RDWR)
        self.wait_until_closed()
        self._socket.close()

    def wait_until_closed(self) -> None:
        self._thread.join(PATIENCE_SECONDS)
        assert not self._thread.is_alive(), f"the stream at {self.url} did not end"


def current_user_can_run_icecast() -> bool:
    return ICECAST is not None and (os.geteuid() != 0 or _user_exists("nobody"))


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
