"""The Ray executor: each evaluation is a Ray task on a cluster (``--executor ray --ray-address ADDR``).

Tasks are submitted all at once and collected in submission order. A task whose worker process dies
(killed, out of memory, node lost) is retried by Ray up to ``max_retries`` times; an exception raised by
the evaluation itself is not retried (the same seed would fail the same way) and becomes one
``ExecutorError``; the batch's other tasks are then cancelled (their results would be dropped; they went on
holding the cluster's CPUs), as on a timeout (``timeout_s`` per batch) or Ctrl-C. By default this package's code
is shipped to the workers with the job (``py_modules``), so cluster nodes need only the dependencies
(torch, numpy, ...), not an edgenas install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from edgenas.errors import InputError
from edgenas.evaluate.executor import (
    EXECUTORS, EvalSpec, Executor, ExecutorError, _tasks, evaluate_records, max_workers,
)
from edgenas.limits import port_number


def _ray():
    try:
        import ray
    except ImportError:
        raise InputError("the ray executor needs Ray", hint="pip install 'edgenas[ray]'") from None
    return ray


def _init_with_retries(ray, kwargs: dict[str, Any], tries: int = 3) -> None:
    """``ray.init``; a busy head can miss the first connection deadline, so try again briefly."""
    import time

    for attempt in range(tries):
        try:
            ray.init(**kwargs)
            return
        except ConnectionError:
            if attempt == tries - 1:
                raise
            time.sleep(2.0)


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once (not after Ray's minutes of retries) when nothing listens at ``host:port``."""
    import socket

    addr = address.split("://", 1)[-1]
    host, sep, text = addr.rpartition(":")
    port = port_number(text)
    if not sep or not host or port is None:
        raise InputError(f"--ray-address {address!r} is not HOST:PORT (a port from 1 to 65535)",
                         hint="e.g. 127.0.0.1:6379")
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(_H2_PREFACE)
            head = b""  # MSG_WAITALL does not wait on a socket with a timeout: read until 9 bytes or the peer closes
            while len(head) < 9 and (chunk := sock.recv(9 - len(head))):
                head += chunk
    except OSError as exc:
        raise ExecutorError(f"cannot connect to the Ray cluster at {address}: {exc.strerror or exc}",
                            hint="start one with 'ray start --head' and pass its address") from None
    if len(head) < 9 or head[3] != 0x04:  # a gRPC (HTTP/2) server answers the preface with its SETTINGS
        raise ExecutorError(f"{address} answers, but not as a Ray cluster (its GCS speaks gRPC; this does not)",
                            hint="pass the address 'ray start --head' printed (port 6379 by default)")


def _cancel_unfinished(ray, refs: Sequence[Any], grace_s: float = 10.0) -> None:
    """Cancel the tasks of ``refs`` that have not finished, again until each has, for at most ``grace_s``.

    Ray's ``cancel`` is best effort, and in Ray 2.60 it fails two ways that a batch larger than the cluster
    meets: a task whose result is already visible (``ray.get`` has just raised its error) but whose reply the
    driver has not finished handling is failed twice, and Ray's core aborts the driver ("Tried to complete
    task that was not pending"); and a queued task pushed to a worker as the cancel arrives is not found
    there and runs on. So a finished task is never cancelled (each is checked just before), and a task still
    unresolved after a second is cancelled again."""
    import time

    deadline = time.monotonic() + grace_s
    unfinished = list(refs)
    while unfinished:
        for ref in unfinished:
            if not ray.wait([ref], timeout=0, fetch_local=False)[0]:
                ray.cancel(ref, force=True)
        left = deadline - time.monotonic()
        if left <= 0:
            return
        _, unfinished = ray.wait(unfinished, num_returns=len(unfinished), timeout=min(1.0, left),
                                 fetch_local=False)


#: the HTTP/2 client connection preface and an empty SETTINGS frame (RFC 9113, section 3.4)
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


@EXECUTORS.register("ray", help="Ray tasks on a cluster (--ray-address ADDR; local if omitted)")
class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str | None = None, *, workers: int | None = None, max_retries: int = 3,
                 timeout_s: float = 3600.0, ship_code: bool = True, **_: Any) -> None:
        ray = _ray()
        if address is not None and (not isinstance(address, str) or not address.strip()
                                    or any(c.isspace() for c in address)):
            raise InputError(f"--ray-address {address!r} is not an address", hint="e.g. 127.0.0.1:6379 or auto")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
                                    or (address is None and workers > max_workers())):
            raise InputError(f"--workers must be an integer >= 1 (for a local Ray head at most {max_workers()}, "
                             f"4 per core), got {workers!r}")
        if not timeout_s > 0 or max_retries < 0:
            raise InputError("the ray executor needs timeout_s > 0 and max_retries >= 0")
        self.address, self.workers, self.max_retries, self.timeout_s = address, workers, max_retries, timeout_s
        self._owns = not ray.is_initialized()
        if self._owns and address not in (None, "auto", "local"):
            _check_reachable(address)
        if self._owns:
            import edgenas

            runtime_env = {"py_modules": [str(Path(edgenas.__file__).parent)]} if ship_code else None
            kwargs: dict[str, Any] = {"address": address, "runtime_env": runtime_env, "log_to_driver": False,
                                      "include_dashboard": False, "configure_logging": False}
            if address is None and workers is not None:
                kwargs["num_cpus"] = workers
            try:
                _init_with_retries(ray, kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ExecutorError(f"cannot connect to the Ray cluster at {address or 'a new local one'}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                                    hint="start one with 'ray start --head' and pass its address") from None
        self._remote = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(evaluate_records)

    def map(self, spec: EvalSpec, records: Sequence[Mapping[str, Any]], *,
            batch_relative: bool = False) -> list[float]:
        ray = _ray()
        refs = [self._remote.remote(spec, t) for t in _tasks(spec, [dict(r) for r in records], batch_relative)]
        try:
            chunks = ray.get(refs, timeout=self.timeout_s)  # a list in submission order
        except BaseException as exc:
            _cancel_unfinished(ray, refs)  # the batch fails as a whole: its other tasks would only hold CPUs
            if isinstance(exc, ray.exceptions.GetTimeoutError):
                raise ExecutorError(f"ray: evaluations did not finish within {self.timeout_s:g} s",
                                    hint="raise the timeout or check the cluster's workers") from None
            if not isinstance(exc, ray.exceptions.RayError):  # Ctrl-C
                raise
            first = str(exc).strip().splitlines()
            # only a lost worker or node is retried; an evaluation that raised is not (retry_exceptions=False)
            raised = isinstance(exc, ray.exceptions.RayTaskError)
            how = "(not retried: it raised)" if raised else f"after {self.max_retries} retries"
            raise ExecutorError(f"ray: an evaluation failed {how} ({type(exc).__name__}: {first[-1] if first else ''})",
                                hint="re-run with --resume; finished evaluations are kept") from None
        return [v for chunk in chunks for v in chunk]

    def close(self) -> None:
        if self._owns:
            _ray().shutdown()
            self._owns = False

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "max_retries": self.max_retries}
