"""Bad input to the device and fleet commands (found by a hostile-input probe): huge statistics in OFA tables,
a device listing another device's table, planted links in ``luts/``, unreachable devices, unknown spaces,
group settings that rename a machine, control characters in profiles. Each is one error line, a non-zero
exit, and nothing created or changed in the project, ``.edgenas/`` included.

The real ``local`` device (its agent a subprocess) and a real sshd on 127.0.0.1 serve as the devices.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from edgenas.project import Project
from tests.cli.test_bad_input import one_line_error
from tests.fleet.hostile import write_profile

OFA_KEY = "expanded_conv-input:112x112x24-output:56x56x24-expand:72-kernel:3-stride:2-idskip:0-se:0-hs:0"


def state(root: Path) -> tuple[dict[str, str], list[Path]]:
    """The project as a test compares it: the bytes of every file but the host cache (``snapshot``), and
    every path, ``.edgenas/`` included."""
    from tests.cli.conftest import _snapshot

    return _snapshot(root), sorted(p.relative_to(root) for p in root.rglob("*"))


@pytest.fixture
def fresh(fresh):
    """The empty project of tests/cli/conftest.py, with a ``profiles/`` folder."""
    (fresh / "profiles").mkdir()
    return fresh


def _profile_toml(root: Path, name: str, **device: object) -> None:
    lines = ["[device]"] + [f"{k} = {json.dumps(v)}" for k, v in device.items()]
    (root / "profiles" / f"{name}.toml").write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- 1: lut import-ofa with huge statistics
@pytest.mark.parametrize("stats, needle", [("{count: 10, mean: 1.0e+308, std: 1.0e+308}", "mean"),
                                           ("{count: 1.0e+308, mean: 1.5, std: 0.1}", "count"),
                                           ("{count: 10, mean: 1.5, std: 1.0e+200}", "std")])
def test_ofa_tables_with_huge_statistics_are_one_error(fresh, cli, tmp_path, stats, needle):
    tables = tmp_path / "ofa"
    tables.mkdir()
    for res in (160, 192):  # a key in two files is pooled: where count * mean overflowed
        (tables / f"{res}_lookup_table.yaml").write_text(f"{OFA_KEY}: {stats}\n")
    before = state(fresh)
    res = cli("lut", "import-ofa", str(tables))
    assert res.code == 2
    one_line_error(res, "160_lookup_table.yaml", OFA_KEY[:40], needle)
    assert state(fresh) == before


# ---------------------------------------------------------------- 2: lut pull is all or nothing
def test_lut_pull_stores_nothing_when_one_table_is_invalid(proj, cli):
    shutil.rmtree(proj / "luts")
    on_device = proj / ".edgenas/devices/local/luts"
    table = json.loads(next(on_device.glob("*.json")).read_text())
    table.update(device="other", fingerprint_hash="f" * 64)  # sorts after the valid table: fetched last
    (on_device / "mbv3-tiny-ffffffffffff.json").write_text(json.dumps(table))
    before = state(proj)
    res = cli("lut", "pull", "local")
    assert res.code == 3
    one_line_error(res, "belongs to device 'other'", "nothing was written")
    assert state(proj) == before and not (proj / "luts").exists()


# ---------------------------------------------------------------- 3: links planted in luts/
def _plant(proj: Path, outside: Path, what: str) -> None:
    dev = proj / "luts/local"
    if what == "history":
        shutil.rmtree(dev / "history", ignore_errors=True)
        outside.mkdir()
        (dev / "history").symlink_to(outside)
    elif what == "device folder":
        dev.rename(outside)
        dev.symlink_to(outside)
    elif what == "luts":
        (proj / "luts").rename(outside)
        (proj / "luts").symlink_to(outside)
    else:  # the table file itself
        table = next(dev.glob("*.json"))
        table.rename(outside)
        table.symlink_to(outside)


def _tree_with_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} \
        if root.is_dir() else {"": root.read_bytes()}


@pytest.mark.parametrize("what", ["history", "device folder", "luts", "table"])
def test_profile_refuses_a_linked_lut_folder_before_it_runs(proj, cli, tmp_path, what):
    outside = tmp_path / "outside"
    _plant(proj, outside, what)
    before, seen_outside = state(proj), _tree_with_bytes(outside)
    res = cli("profile", "local", "--space", "mbv3-tiny", "--force")
    assert res.code == 2
    one_line_error(res, "symbolic link", "nothing was written")
    assert state(proj) == before and _tree_with_bytes(outside) == seen_outside


# ---------------------------------------------------------------- 4: an unreachable device writes nothing
@pytest.mark.parametrize("device, needle", [
    (dict(host="127.0.0.1", port=2299, key_file="/nonexistent/id_ed25519"), "key file"),
    (dict(host="no-such-host.invalid", port=2299), "cannot resolve")])
def test_an_unreachable_device_leaves_the_project_as_it_was(fresh, cli, device, needle):
    _profile_toml(fresh, "dev", **device)
    before = state(fresh)
    for args in (("device", "info", "dev"), ("profile", "dev", "--space", "mbv3-tiny")):
        res = cli(*args)
        assert res.code == 3
        one_line_error(res, "device 'dev'", needle)
        assert state(fresh) == before, args


@pytest.mark.ssh
def test_an_unknown_host_key_leaves_the_project_as_it_was(fresh, cli, sshd):
    write_profile(Project(fresh), sshd.profile("dev"))  # never trusted
    before = state(fresh)
    for args in (("device", "info", "dev"), ("profile", "dev", "--space", "mbv3-tiny")):
        res = cli(*args)
        assert res.code == 3
        one_line_error(res, "unknown SSH host key")
        assert state(fresh) == before, args


# ---------------------------------------------------------------- 5, 6: fleet status input
FLEET_LOCAL = '[fleet]\ndevices = ["local"]\n'


@pytest.mark.parametrize("files, args, needles", [
    ({"fleet.toml": FLEET_LOCAL}, ("--space", "nope"), ("unknown search space 'nope'",)),
    ({"fleet.toml": FLEET_LOCAL + '[groups]\ng = ["local"]\n[group_settings.g]\nname = "orin-nano"\n'},
     ("--space", "mbv3-tiny"), ("[group_settings.g]", "name")),
    ({"fleet.toml": FLEET_LOCAL + '[groups]\ng = ["local"]\n[group_settings.g]\ntransport = "ssh"\n'},
     ("--space", "mbv3-tiny"), ("[group_settings.g]", "transport")),
    ({"fleet.yaml": "all:\n  hosts:\n    local:\n      edgenas_name: orin-nano\n"},
     ("--space", "mbv3-tiny"), ("host local", "edgenas_name")),
    ({"fleet.yaml": "all:\n  vars:\n    edgenas_transport: local\n  hosts:\n    a:\n    b:\n"},
     ("--space", "mbv3-tiny"), ("host a", "edgenas_transport"))])
def test_fleet_status_refuses_bad_input_before_contacting_anything(fresh, cli, files, args, needles):
    for name, text in files.items():
        (fresh / "profiles" / name).write_text(text)
    before = state(fresh)
    for cmd in ("status", "refresh"):
        res = cli("fleet", cmd, *args)
        assert res.code == 2
        one_line_error(res, *needles)
        assert state(fresh) == before and not (fresh / ".edgenas").exists()


# ---------------------------------------------------------------- 7a: one damaged table is one device's row
def test_fleet_status_reports_a_damaged_table_and_goes_on(proj, cli):
    (proj / "profiles").mkdir(exist_ok=True)
    (proj / "profiles/fleet.toml").write_text(FLEET_LOCAL)
    next((proj / "luts/local").glob("mbv3-tiny-*.json")).write_text("{")
    res = cli("fleet", "status", "--space", "mbv3-tiny", "--space", "nb201", "--json")
    assert res.code == 0, res.err
    (row,) = res.json()
    assert row["reachable"] and row["luts"] == {"mbv3-tiny": "damaged", "nb201": "missing"}
    res = cli("fleet", "status", "--space", "mbv3-tiny")
    assert res.code == 0 and "damaged" in res.out and "--force" in res.out


# ---------------------------------------------------------------- 7b: a wrong fingerprint is one line
@pytest.mark.ssh
def test_trust_with_a_wrong_fingerprint_is_one_line(fresh, cli, sshd):
    write_profile(Project(fresh), sshd.profile("dev"))
    before = state(fresh)
    res = cli("device", "trust", "dev", "--yes", "--fingerprint", "SHA256:wrong")
    assert res.code == 2
    one_line_error(res, "not the expected SHA256:wrong", sshd.fingerprint)
    assert state(fresh) == before


# ---------------------------------------------------------------- 7c: control characters in a profile
@pytest.mark.parametrize("field", ["host", "user", "power_mode", "workdir", "key_file", "python"])
def test_a_profile_value_with_a_control_character_is_one_error(fresh, cli, field):
    values = dict(host="127.0.0.1", port=2299, user="me", workdir="~/.edgenas", key_file="/k",
                  python=sys.executable, power_mode="MAXN")
    values[field] = f"{values[field]}\x1b[2J"
    _profile_toml(fresh, "dev", **values)
    before = state(fresh)
    res = cli("device", "info", "dev")
    assert res.code == 2
    one_line_error(res, f"{field} ", "control character")
    assert "\x1b" not in res.err and state(fresh) == before
