"""A hostile device for tests: the REAL agent zipapp with some of its methods replaced.

``hostile_agent(folder, patch)`` builds the real agent archive (``device_agents.build``) with a
``__main__.py`` that first runs ``patch`` (Python source that may rebind entries of
``edgenas_agent.server.METHODS``), then the real agent. Its SHA-256 is its version, like the real one,
so the host's version check passes: only what the device *answers* is hostile; the host code under test
(session, transports, lut pull, CLI) is the real one, and the device sits behind a real sshd.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

from device_agents.build import zipapp_bytes

PRELUDE = "import sys, json\nimport edgenas_agent.server as server\nM = server.METHODS\n"
MAIN = "\nfrom edgenas_agent.__main__ import main\nsys.exit(main())\n"


def hostile_agent(folder: Path, patch: str) -> tuple[Path, str]:
    src = zipfile.ZipFile(io.BytesIO(zipapp_bytes()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for info in src.infolist():
            data = (PRELUDE + patch + MAIN).encode() if info.filename == "__main__.py" else src.read(info)
            zf.writestr(info, data)
    data = buf.getvalue()
    version = hashlib.sha256(data).hexdigest()
    path = Path(folder) / f"edgenas-agent-{version}.pyz"
    path.write_bytes(data)
    return path, version


def use_agent(monkeypatch, agent: tuple[Path, str]) -> None:
    """Make every session of this test start ``agent`` instead of the real build."""
    monkeypatch.setattr("edgenas.devices.session.ensure_agent_bundle", lambda project=None: agent)


def write_profile(project, prof) -> None:
    lines = ["[device]"]
    for f in ("name", "host", "port", "user", "key_file", "python", "workdir", "threads",
              "connect_timeout_s", "call_timeout_s"):
        lines.append(f"{f} = {json.dumps(getattr(prof, f))}")
    project.profiles_dir.mkdir(parents=True, exist_ok=True)
    (project.profiles_dir / f"{prof.name}.toml").write_text("\n".join(lines) + "\n")


def answering(method: str, *changes: str) -> str:
    """An agent patch whose ``method`` gives the real answer ``r`` after the lines ``changes`` edit it."""
    fn = method.replace(".", "_")
    return (f"real_{fn} = M[{method!r}]\n"
            f"def {fn}(w, p, pr):\n"
            f"    r = real_{fn}(w, p, pr)\n"
            + "".join(f"    {c}\n" for c in changes)
            + "    return r\n"
            f"M[{method!r}] = {fn}\n")


#: An agent patch: after its hello a thread writes short lines to the agent's output as fast as it can, for ever
#: (a debug print in a loop of a broken agent, or a hostile one), and ``ping`` never answers.
FLOOD = (
    "import os, threading, time\n"
    "real_hello = server.Server.hello\n"
    "def hello(self):\n"
    "    real_hello(self)\n"
    "    fd = self._out.fileno()\n"
    "    def flood():\n"
    "        chunk = b'xx\\n' * 100000\n"
    "        while True:\n"
    "            os.write(fd, chunk)\n"
    "    threading.Thread(target=flood, daemon=True).start()\n"
    "server.Server.hello = hello\n"
    "M['ping'] = lambda w, p, pr: time.sleep(3600)\n"
)


def check_flood_waits(channel) -> None:
    """A channel of a ``FLOOD`` agent, after its hello: two seconds of flood grow the host by less than 64 MB
    (the lines wait in a bounded queue, then the agent on its pipe or SSH window), and closing ends the agent and
    both reader threads (one waiting for room in the queue) within 8 s."""
    import time

    from tests.procs import rss_mb

    assert '"hello"' in channel.recv_line(30)
    before = rss_mb()
    time.sleep(2)
    assert rss_mb() - before < 64
    t0 = time.monotonic()
    channel.close()
    for thread in channel._threads:
        thread.join(5)
    assert time.monotonic() - t0 < 8 and not channel.alive()
    assert not any(thread.is_alive() for thread in channel._threads)
