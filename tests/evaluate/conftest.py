"""A REAL local Ray head on 127.0.0.1 (``ray start --head --block``, 2 CPUs), started once per session.

The head runs in its own process group; teardown stops that group (SIGTERM, then SIGKILL) and never
touches other Ray processes on the machine. Tests skip with the reason when Ray is not installed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ports import free_ports


class RayHead:
    def __init__(self, tmp: Path) -> None:
        self.port, agent_port = free_ports(2)  # distinct: one port twice stopped the head from starting
        self.address = f"127.0.0.1:{self.port}"
        self.temp_dir = tmp
        ray_bin = Path(sys.executable).with_name("ray")
        cmd = [str(ray_bin), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
               "--port", str(self.port), "--num-cpus", "2", "--include-dashboard=false",
               "--disable-usage-stats", "--temp-dir", str(tmp),
               "--dashboard-agent-listen-port", str(agent_port),
               "--min-worker-port", "30000", "--max-worker-port", "30999"]
        # token auth off for this private head (and for the test's driver, see ray_head): a shared
        # ~/.ray token written by another local Ray instance must not lock the test out
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        self.log = open(tmp / "head.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray head exited: {(self.temp_dir / 'head.log').read_text()[-2000:]}")
            if b"Ray runtime started" in (self.temp_dir / "head.log").read_bytes():
                return
            time.sleep(0.5)
        raise RuntimeError("ray head did not start in time")

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 8), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # children that outlived the head, in its group only
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'edgenas[ray]')")
    old_auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    head = RayHead(Path(tmp_path_factory.mktemp("ray")))
    try:
        head.wait_ready()
        yield head
    finally:
        import ray

        connected = ray.is_initialized() or _gcs_client_threads()
        if ray.is_initialized():
            ray.shutdown()
        head.stop()
        if old_auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = old_auth
    # after ray.shutdown() a driver keeps Ray's GCS client and its threads, and Ray may end the process with a
    # silent _Exit(1) later: in CI that ended the whole test run (see ray_cases)
    assert not connected, "a test ran a Ray driver in pytest's own process: run it with ray_cases.run_as_driver"


def _gcs_client_threads() -> list[str]:
    """The threads of this process that Ray's GCS client started (Linux names them ``gcs_client_io_s...``)."""
    names = []
    for task in os.scandir("/proc/self/task"):
        try:
            names.append(Path(task.path, "comm").read_text().strip())
        except OSError:
            continue
    return [n for n in names if n.startswith("gcs_client")]
