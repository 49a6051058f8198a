"""``refresh_fleet`` over FIVE real sshd "devices" (own ports, own work dirs, own settings), all profiled
first with the real agent and ONNX Runtime, then refreshed in parallel:

* dev-a: its sshd is down                     -> failed, its LUT files byte-identical
* dev-b: rebuild (new threads), sshd killed as soon as its partial file has an entry
                                              -> failed, previous LUT intact; ``only_failed`` after a
                                                 restart retries it and resumes from the partial file
* dev-c: fingerprint changed (threads 2 -> 1) -> refreshed "fingerprint changed", old LUT kept
* dev-d: stored LUT made 0.3x too fast        -> refreshed for shape drift, sentinels back near reality
* dev-e: unchanged                            -> verified, recorded in verified.jsonl, LUT unchanged

plus ``edgenas fleet status --json`` and ``edgenas fleet refresh --json`` (non-zero exit on a failure).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edgenas.fleet.inventory import load_inventory
from edgenas.fleet.profiler import profile_device
from edgenas.fleet.drift import sentinel_keys
from edgenas.fleet.refresh import last_refresh_path, refresh_fleet
from edgenas.latency.lut import Lut
from edgenas.latency.store import LutStore
from edgenas.project import Project

pytestmark = pytest.mark.ssh

SPACE = "mbv3-tiny"
# one block after the other (``sessions`` 1): each entry reaches the device's partial file on its own,
# so a device killed after the first entry is killed mid-rebuild (the sweeps write a sweep's entries
# together, and all 22 blocks can finish in the same sweep)
PROTO = {"warmup_min_n": 3, "warmup_min_s": 0.01, "min_n": 5, "min_s": 0.05, "max_s": 0.2, "sessions": 1}
# five "devices" share this machine's cores and the protocol is short: an unchanged table's sentinel
# ratios move by up to ~20% here (bench/drift_check.py), the faked drift below by 230%
NOISE_FLOOR = 0.4
_MS = ("median_ms", "mean_ms", "std_ms", "p90_ms", "p99_ms", "min_ms", "max_ms")


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root``."""
    if not root.is_dir():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def profile_toml(project: Project, prof) -> None:
    lines = ["[device]"]
    for f in ("name", "host", "port", "user", "key_file", "python", "workdir", "threads",
              "connect_timeout_s", "call_timeout_s"):
        lines.append(f"{f} = {json.dumps(getattr(prof, f))}")
    (project.profiles_dir / f"{prof.name}.toml").write_text("\n".join(lines) + "\n")


def use_project(monkeypatch, project: Project) -> None:
    """Point the in-process CLI (the ``cli`` fixture) at ``project``, without progress bars."""
    monkeypatch.setenv("EDGENAS_PROJECT", str(project.root))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")


def test_parallel_refresh_of_five_devices(sshd_factory, tmp_path, monkeypatch, cli):
    project = Project(tmp_path / "proj")
    project.profiles_dir.mkdir(parents=True)
    servers = {n: sshd_factory() for n in "abcde"}
    for s in servers.values():
        s.trust(project)
    threads0 = {"a": 1, "b": 1, "c": 2, "d": 2, "e": 1}
    prof = {n: servers[n].profile(f"dev-{n}", threads=threads0[n]) for n in "abcde"}
    assert len({s.port for s in servers.values()}) == 5 and len({p.workdir for p in prof.values()}) == 5

    profile_device(project, prof["a"], SPACE, protocol=PROTO)  # exports the blocks once
    with ThreadPoolExecutor(2) as pool:  # dev-e last: closest in time to its verification
        first = dict(zip("abcde", pool.map(lambda n: profile_device(project, prof[n], SPACE, protocol=PROTO),
                                           "abcde")))
    assert first["a"].reused_lut and all(not first[n].reused_lut for n in "bcde")
    assert all(r.n_entries == 22 for r in first.values())
    assert len({r.fingerprint_hash for r in first.values()}) == 2  # threads is part of the fingerprint
    store = LutStore(project.luts_dir)
    orig = {n: Lut.load(first[n].lut_path) for n in "abcde"}

    # (d) drift: stored numbers (times and ratios to the reference) 0.3x reality, same fingerprint,
    # saved the way any table is saved
    assert orig["d"].normalised
    drifted = dataclasses.replace(orig["d"], entries={
        k: dataclasses.replace(e, **{f: getattr(e, f) * 0.3 for f in _MS + ("ratio",)})
        for k, e in orig["d"].entries.items()})
    assert store.save(drifted) == first["d"].lut_path
    sentinels_d = sentinel_keys(drifted)
    assert sentinels_d == sentinel_keys(orig["d"])

    # (a) down before the refresh; (b)/(c) new settings -> new fingerprint -> rebuild
    servers["a"].kill()
    now = dict(prof, b=dataclasses.replace(prof["b"], threads=2), c=dataclasses.replace(prof["c"], threads=1))
    luts_before = {n: snapshot(project.luts_dir / f"dev-{n}") for n in "abcde"}
    device_luts_before = {n: snapshot(Path(prof[n].workdir) / "luts") for n in "abcde"}

    partial_b = Path(prof["b"].workdir) / "partial"
    old_partials = set(partial_b.glob("*.jsonl"))
    killed_at: list[int] = []

    def kill_b_mid_refresh() -> None:
        new = servers["b"].kill_after_first_partial_entry(partial_b, old_partials, 90)
        killed_at.append(new.read_text().count("\n") if new else -1)

    killer = threading.Thread(target=kill_b_mid_refresh, daemon=True)
    killer.start()
    order = ["e", "a", "b", "c", "d"]
    rows = refresh_fleet(project, [now[n] for n in order], SPACE, concurrency=2, protocol=PROTO,
                         drift_floor=NOISE_FLOOR)
    killer.join(5)
    res = {r.device: r for r in rows}
    assert [r.device for r in rows] == [f"dev-{n}" for n in order]
    assert {d: r.status for d, r in res.items()} == {
        "dev-a": "failed", "dev-b": "failed", "dev-c": "refreshed", "dev-d": "refreshed", "dev-e": "verified"}, \
        {d: r.reason for d, r in res.items()}
    assert sorted(d for d, r in res.items() if r.failed) == ["dev-a", "dev-b"]

    # (a) unreachable: the reason names the device; nothing of it touched
    assert "device 'dev-a'" in res["dev-a"].reason and "refused" in res["dev-a"].reason
    assert snapshot(project.luts_dir / "dev-a") == luts_before["a"]
    # (b) killed mid-rebuild: the previous LUT intact and valid, on the host and on the device
    assert killed_at and 1 <= killed_at[0] < 22
    assert "device 'dev-b'" in res["dev-b"].reason
    assert snapshot(project.luts_dir / "dev-b") == luts_before["b"]
    assert Lut.load(first["b"].lut_path).entries == orig["b"].entries
    assert snapshot(Path(prof["b"].workdir) / "luts") == device_luts_before["b"]
    # (c) fingerprint changed: a new table next to the old one, which is kept byte-identical
    c = res["dev-c"]
    assert c.reason == "fingerprint changed (settings.threads)" and c.fingerprint_hash != first["c"].fingerprint_hash
    after_c = snapshot(project.luts_dir / "dev-c")
    assert {k: after_c[k] for k in luts_before["c"]} == luts_before["c"]
    assert Path(c.lut_path).exists() and Lut.load(c.lut_path).threads == 1
    assert sorted(store.list("dev-c", SPACE)) == sorted([first["c"].lut_path, Path(c.lut_path)])
    # (d) drift detected; the new table's sentinels are back near reality, far from the fake numbers
    d = res["dev-d"]
    assert "shape drift" in d.reason and d.drift is not None and d.drift > 1.0 and d.drift > d.threshold
    assert d.fingerprint_hash == first["d"].fingerprint_hash and Path(d.lut_path) == first["d"].lut_path
    new_d = Lut.load(d.lut_path)
    vs_real = [new_d.entries[k].ratio / orig["d"].entries[k].ratio for k in sentinels_d]
    vs_fake = [new_d.entries[k].ratio / drifted.entries[k].ratio for k in sentinels_d]
    assert 0.5 < np.median(vs_real) < 2.0 and np.median(vs_fake) > 1.7, (vs_real, vs_fake)
    hist_d = list((project.luts_dir / "dev-d" / "history").glob("*.json"))
    assert len(hist_d) == 2  # the original and the drifted table are both kept
    # (e) verified: recorded, table untouched
    e = res["dev-e"]
    assert e.drift is not None and e.drift <= e.threshold and e.fingerprint_hash == first["e"].fingerprint_hash
    after_e = snapshot(project.luts_dir / "dev-e")
    assert set(after_e) - set(luts_before["e"]) == {"verified.jsonl"}
    assert {k: after_e[k] for k in luts_before["e"]} == luts_before["e"]
    ver = [json.loads(line) for line in (project.luts_dir / "dev-e" / "verified.jsonl").read_text().splitlines()]
    assert len(ver) == 1 and ver[0]["fingerprint_hash"] == first["e"].fingerprint_hash
    assert ver[0]["space"] == SPACE and ver[0]["drift"] == pytest.approx(e.drift) and ver[0]["basis"] == "ratio"
    assert e.speed_change is not None and ver[0]["speed_change"] == pytest.approx(e.speed_change)
    assert ver[0]["nominal_ms"] == orig["e"].reference["ms"] and not ver[0]["rescaled"]
    for n in "cde":  # profiled, rebuilt or drift-checked: no partial file is left on the device
        assert list((Path(prof[n].workdir) / "partial").iterdir()) == [], n
    for n in "acde":  # the refresh never wrote another device's files
        assert snapshot(Path(prof[n].workdir) / "luts").keys() >= device_luts_before[n].keys()
    assert snapshot(Path(prof["a"].workdir) / "luts") == device_luts_before["a"]
    assert snapshot(Path(prof["e"].workdir) / "luts") == device_luts_before["e"]
    last = {r["device"]: r["status"] for r in json.loads(last_refresh_path(project).read_text())}
    assert last == {d: r.status for d, r in res.items()}

    # --only-failed after dev-b is back: only the failed devices are retried; dev-b resumes
    servers["b"].start()
    untouched = {n: snapshot(project.luts_dir / f"dev-{n}") for n in "cde"}
    partial_file = [p for p in partial_b.glob("*.jsonl") if p not in old_partials]
    assert len(partial_file) == 1
    # a second name for the file (the agent appends to it in place): the refresh removes the partial file once
    # the table is saved, and this name shows what it held by then
    kept = partial_b.parent / "partial-b.kept"
    os.link(partial_file[0], kept)
    retry = refresh_fleet(project, [now[n] for n in "abcde"], SPACE, concurrency=2, only_failed=True,
                          protocol=PROTO)
    by = {r.device: r for r in retry}
    assert set(by) == {"dev-a", "dev-b"}  # dev-a is still down
    assert by["dev-b"].status == "refreshed" and by["dev-b"].reason == "fingerprint changed (settings.threads)"
    assert by["dev-a"].status == "failed"
    assert kept.read_text().count("\n") == 22  # resumed: the entries before the kill not re-timed
    assert not partial_file[0].exists()  # removed once the table was saved (they piled up, one per rebuild)
    assert {p.name for p in partial_b.iterdir()} == {p.name for p in old_partials}  # no sentinel file left
    new_b = Lut.load(by["dev-b"].lut_path)
    assert new_b.threads == 2 and len(new_b.entries) == 22
    assert Lut.load(first["b"].lut_path).entries == orig["b"].entries  # the old table is kept
    assert {n: snapshot(project.luts_dir / f"dev-{n}") for n in "cde"} == untouched
    again = refresh_fleet(project, [now[n] for n in "abcde"], SPACE, concurrency=2, only_failed=True,
                          protocol=PROTO)
    assert [(r.device, r.status) for r in again] == [("dev-a", "failed")]

    # the CLI: the same library calls, one JSON row per device, exit 3 when any failed
    for n in "abcde":
        profile_toml(project, now[n] if n != "c" else dataclasses.replace(now["c"], threads=3))
    (project.profiles_dir / "fleet.toml").write_text(
        '[fleet]\ndevices = ["dev-a", "dev-b", "dev-c", "dev-d", "dev-e"]\n[groups]\ndown = ["dev-a"]\n')
    assert load_inventory(project).names() == [f"dev-{n}" for n in "abcde"]
    use_project(monkeypatch, project)
    status = cli("fleet", "status", "--space", SPACE, "--space", "mbv3-small", "--json")
    assert status.code == 0
    st = {r["device"]: r for r in status.json()}
    assert not st["dev-a"]["reachable"] and "device 'dev-a'" in st["dev-a"]["error"]
    for n in "bcde":
        assert st[f"dev-{n}"]["reachable"] and st[f"dev-{n}"]["agent_version"]
        assert st[f"dev-{n}"]["luts"]["mbv3-small"] == "missing"
    assert st["dev-b"]["fingerprint_hash"] == by["dev-b"].fingerprint_hash
    assert {n: st[f"dev-{n}"]["luts"][SPACE] for n in "bcde"} == {
        "b": "fresh", "c": "stale", "d": "fresh", "e": "fresh"}  # dev-c: threads 3 was never profiled


def test_cli_refresh_exit_code_is_non_zero_when_a_device_failed(sshd, tmp_path, monkeypatch, cli):
    project = Project(tmp_path / "proj")
    project.profiles_dir.mkdir(parents=True)
    sshd.trust(project)
    profile_toml(project, sshd.profile("dev-gone"))
    (project.profiles_dir / "fleet.toml").write_text('[fleet]\ndevices = ["dev-gone"]\n')
    sshd.kill()
    use_project(monkeypatch, project)
    res = cli("fleet", "refresh", "--space", SPACE, "--json")
    rows = res.json()
    assert [(r["device"], r["status"]) for r in rows] == [("dev-gone", "failed")]
    assert "device 'dev-gone'" in rows[0]["reason"] and not list(project.luts_dir.glob("**/*.json"))
    assert res.code == 3
    # one red line on stderr, as every error (the exit code alone said it)
    assert res.err.strip().splitlines() == [
        "error: 1 of 1 device(s) failed: dev-gone (see their rows; retry them: edgenas fleet refresh --only-failed "
        f"--space {SPACE})"]
