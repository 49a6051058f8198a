"""Issue 10: one LUT lookup policy (``LutStore.choose``) for every command.

``search`` used to take the newest table by FILE TIME whatever its fingerprint, while ``deploy``
insisted on the device's current fingerprint: after a JetPack or power-mode change a search optimised
against a table deploy then refused. Now both go through ``choose``; search prints which table it used
and warns when the device last reported another fingerprint."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from edgenas.errors import InputError
from edgenas.fleet.measure import current_lut
from edgenas.latency.lut import EntryStats, Lut
from edgenas.latency.store import LutStore, fingerprint_changes
from edgenas.project import Project

A, B, C = "a" * 64, "b" * 64, "c" * 64


def _stats(ms: float) -> EntryStats:
    return EntryStats(n=10, median_ms=ms, mean_ms=ms, std_ms=0.0, cov=0.0, p90_ms=ms, p99_ms=ms, min_ms=ms, max_ms=ms)


def _lut(fp: str, created_at: float) -> Lut:
    return Lut(device="dev", space="mbv3-tiny", fingerprint={"m": fp[0]}, fingerprint_hash=fp, runtime="onnxruntime",
               precision="fp32", threads=1, protocol={}, overhead=_stats(0.1), entries={"k": _stats(1.0)},
               created_at=created_at)


def test_one_policy_for_search_and_deploy(tmp_path):
    project = Project(tmp_path)
    store = LutStore(project.luts_dir)
    path_a, path_b = store.save(_lut(A, 1000.0)), store.save(_lut(B, 2000.0))
    os.utime(path_a, (9e9, 9e9))  # A's FILE is newer (copied, touched): it must not matter
    newest = store.choose("dev", "mbv3-tiny")  # newest by its own created_at
    assert newest.lut.fingerprint_hash == B and newest.path == path_b
    assert store.latest("dev", "mbv3-tiny").fingerprint_hash == B

    store.remember_fingerprint("dev", A)  # the device last reported A: its table, as deploy would use
    choice = store.choose("dev", "mbv3-tiny")
    assert choice.lut.fingerprint_hash == A and choice.current and choice.warning is None
    assert choice.path == path_a and "fingerprint aaaaaaaaaaaa" in choice.describe()
    assert current_lut(project, "dev", "mbv3-tiny", A).fingerprint_hash == A

    store.remember_fingerprint("dev", C)  # then C (a JetPack update): no table for it
    choice = store.choose("dev", "mbv3-tiny")
    assert not choice.current and choice.lut.fingerprint_hash == B
    assert "cccccccccccc" in choice.warning and "deploy will not predict" in choice.warning
    with pytest.raises(InputError, match="current fingerprint cccccccccccc"):
        current_lut(project, "dev", "mbv3-tiny", C)  # what deploy and calibrate ask for
    assert store.last_fingerprint("dev") == C
    assert not any(p.name.startswith("fingerprint") for p in (project.luts_dir / "dev").iterdir())


def test_a_missing_table_says_what_changed_in_the_fingerprint(tmp_path):
    """An edgenas upgrade changes the agent, whose version is part of the fingerprint: every table goes stale, and
    the error said "the device changed since it was profiled" (it had not); a device never profiled was told the
    same."""
    project = Project(tmp_path)
    store = LutStore(project.luts_dir)
    with pytest.raises(InputError) as exc:
        current_lut(project, "dev", "mbv3-tiny", A, fingerprint={"m": "a"})
    assert "has no table for this space yet" in exc.value.hint and "changed" not in exc.value.hint
    old = {"software": {"agent_version": "1" * 64, "kernel": "6.1"}, "performance": {"nvpmodel": "MAXN"}}
    store.save(dataclasses.replace(_lut(A, 1000.0), fingerprint=old))
    upgraded = {"software": {"agent_version": "2" * 64, "kernel": "6.1"}, "performance": {"nvpmodel": "MAXN"}}
    with pytest.raises(InputError) as exc:
        current_lut(project, "dev", "mbv3-tiny", B, fingerprint=upgraded)
    assert "only edgenas's device agent changed" in exc.value.hint
    assert "edgenas profile dev --space mbv3-tiny" in exc.value.hint
    moved = {"software": {"agent_version": "1" * 64, "kernel": "6.6"}, "performance": {"nvpmodel": "15W\x1b[31m"},
             "new\x1b[2J": 1}
    with pytest.raises(InputError) as exc:
        current_lut(project, "dev", "mbv3-tiny", B, fingerprint=moved)
    assert "the device changed since it was profiled (?, performance.nvpmodel, software.kernel)" in exc.value.hint
    assert "agent" not in exc.value.hint


def test_a_fingerprint_record_is_only_ever_a_hex_hash(tmp_path):
    """The record names the table every offline command uses: a hash that is no hex digest is neither
    written nor read (it would become part of a path), and a damaged record leaves the newest table chosen."""
    store = LutStore(Project(tmp_path).luts_dir)
    with pytest.raises(InputError, match="no LUT for device 'dev' and space 'mbv3-tiny'") as exc:
        store.choose("dev", "mbv3-tiny")  # nothing recorded, no table
    assert exc.value.hint == "run: edgenas profile dev --space mbv3-tiny"
    store.save(_lut(A, 1000.0))
    with pytest.raises(InputError, match="invalid fingerprint hash"):
        store.remember_fingerprint("dev", "../" + "a" * 12)
    assert not store.fingerprint_record("dev").exists()
    store.fingerprint_record("dev").parent.mkdir(parents=True)
    for damaged in ({"fingerprint_hash": "../" + "a" * 12}, {"fingerprint_hash": 5}, ["a" * 64], "x"):
        store.fingerprint_record("dev").write_text(json.dumps(damaged))
        assert store.last_fingerprint("dev") is None
        assert store.choose("dev", "mbv3-tiny").lut.fingerprint_hash == A


def test_a_damaged_table_does_not_hide_the_valid_ones_from_the_hint(tmp_path):
    project = Project(tmp_path)
    store = LutStore(project.luts_dir)
    store.save(_lut(A, 1000.0))
    (project.luts_dir / "dev" / "mbv3-tiny-000000000000.json").write_text("{ damaged")  # listed first
    with pytest.raises(InputError) as exc:
        current_lut(project, "dev", "mbv3-tiny", B, fingerprint={"m": "b"})
    assert "the device changed since it was profiled (m)" in exc.value.hint


@pytest.mark.parametrize("old, new, changed", [
    ({"a b": 1}, {"a b": 2}, ["?"]),                          # names come from the device: odd ones are '?'
    ({"a/b": 1}, {"a/b": 2}, ["?"]),
    ({"x" * 120: 1}, {"x" * 120: 2}, ["x" * 120]),
    ({"x" * 121: 1}, {"x" * 121: 2}, ["?"]),
    ({"software": {"kernel": "6.1"}}, {"software": "6.6"}, ["software"]),  # a group become a value
    ({"software": "6.6"}, {"software": {"kernel": "6.1"}}, ["software"]),
    ({f"k{i}": 1 for i in range(6)}, {f"k{i}": 2 for i in range(6)}, [f"k{i}" for i in range(6)]),
    ({f"k{i}": 1 for i in range(7)}, {f"k{i}": 2 for i in range(7)}, [f"k{i}" for i in range(6)] + ["..."]),
])
def test_fingerprint_changes_names_at_most_six_plain_fields(old, new, changed):
    assert fingerprint_changes(old, new) == changed

