"""Issue 10: a device is untrusted input. Real sshd, real agent (or the real agent with some answers
made hostile, ``hostile.py``), real host code: a device can neither write files on the host, nor change
another device's data, nor drive the user's terminal; replacing a changed host key needs its fingerprint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgenas.errors import DeviceError, HostKeyError, InputError
from edgenas.fleet.lutsync import pull_luts
from edgenas.devices.trust import trust_host
from edgenas.latency.lut import EntryStats, Lut
from edgenas.project import Project
from tests.fleet.hostile import hostile_agent, use_agent, write_profile

pytestmark = pytest.mark.ssh

FP = "ab" * 32


def _stats(ms: float) -> EntryStats:
    return EntryStats(n=10, median_ms=ms, mean_ms=ms, std_ms=0.0, cov=0.0, p90_ms=ms, p99_ms=ms,
                      min_ms=ms, max_ms=ms)


def lut_dict(device: str, **changes) -> dict:
    lut = Lut(device=device, space="mbv3-tiny", fingerprint={"m": 1}, fingerprint_hash=FP, runtime="onnxruntime",
              precision="fp32", threads=1, protocol={}, overhead=_stats(0.1), entries={"k1": _stats(1.0)})
    return dict(lut.to_dict(), **changes)


NAME = f"mbv3-tiny-{FP[:12]}.json"


def on_device(prof, name: str, data: dict) -> Path:
    path = Path(prof.workdir) / "luts" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def setup(sshd, tmp_path):
    project = Project(tmp_path / "proj")
    sshd.trust(project)
    return project, sshd.profile("dev")


@pytest.mark.parametrize("evil", ["../../escaped.json", "ABS", f"{NAME}\n"])
def test_lut_pull_refuses_names_that_are_paths(setup, tmp_path, monkeypatch, evil):
    project, prof = setup
    on_device(prof, NAME, lut_dict("dev"))
    target = tmp_path / "outside" / "escaped.json"
    target.parent.mkdir()
    evil = str(target) if evil == "ABS" else evil
    # the device lists a path as a name and answers lut.get for it with a real, valid table
    patch = (f"EVIL = {evil!r}\n"
             "M['lut.list'] = lambda w, p, pr: [{'name': EVIL, 'sha256': '0', 'size': 1}]\n"
             f"real_get = M['lut.get']\n"
             f"M['lut.get'] = lambda w, p, pr: real_get(w, {{'name': {NAME!r}}}, pr)\n")
    use_agent(monkeypatch, hostile_agent(tmp_path, patch))
    with pytest.raises(DeviceError) as exc:
        pull_luts(project, prof)
    assert "invalid LUT name" in str(exc.value) and "device 'dev'" in str(exc.value)
    assert not target.exists() and not list(tmp_path.rglob("escaped.json"))
    assert files_under(project.luts_dir) == []


def test_lut_pull_refuses_a_table_of_another_device(setup):
    project, prof = setup
    on_device(prof, NAME, lut_dict("victim"))  # a real agent holding a table that names another device
    with pytest.raises(DeviceError) as exc:
        pull_luts(project, prof)
    assert "belongs to device 'victim'" in str(exc.value)
    assert files_under(project.luts_dir) == []


def test_lut_pull_of_an_invalid_table_names_the_device_and_its_file(setup):
    project, prof = setup
    on_device(prof, NAME, lut_dict("dev", entries={}))
    with pytest.raises(DeviceError) as exc:
        pull_luts(project, prof)
    msg = str(exc.value)
    assert "device 'dev'" in msg and f"luts/{NAME}" in msg and "has no entries" in msg
    assert "/tmp" not in msg and "pulled.json" not in msg
    assert files_under(project.luts_dir) == []


def test_lut_pull_of_a_valid_table_lands_under_its_device(setup):
    project, prof = setup
    on_device(prof, NAME, lut_dict("dev"))
    pulled = pull_luts(project, prof)
    assert [p["name"] for p in pulled] == [NAME]
    assert files_under(project.luts_dir) == [f"dev/{NAME}"]


EVIL_TEXT = "\x1b[31m[/x][bold]evil[/bold]\x1b]0;pwned\x07\rX\x9b2J"


def test_device_text_is_escaped_and_stripped_of_controls(setup, tmp_path, monkeypatch, cli):
    project, prof = setup
    write_profile(project, prof)
    patch = (f"EVIL = {EVIL_TEXT!r}\nreal_info = M['info']\n"
             "def info(w, p, pr):\n"
             "    r = real_info(w, p, pr)\n"
             "    r['fingerprint']['evil'] = EVIL\n"
             "    r['agent_version'] = EVIL\n"
             "    r['fingerprint']['model'] = 'Orin\\nruntimes: tensorrt 99 (forged)'\n"
             "    return r\n"
             "M['info'] = info\n")
    use_agent(monkeypatch, hostile_agent(tmp_path, patch))
    monkeypatch.setenv("EDGENAS_PROJECT", str(project.root))
    res = cli("device", "info", "dev")
    assert res.code == 0, res.err
    assert "evil: [/x][bold]evil[/bold]X\n" in res.out  # markup printed as it is, controls gone
    assert not any(c in res.out for c in "\x1b\x07\r\x9b")
    # a newline in a value cannot forge a line of output
    assert "model: Orin runtimes: tensorrt 99 (forged)\n" in res.out
    assert not any(line.startswith("runtimes: tensorrt 99") for line in res.out.splitlines())


@pytest.mark.parametrize("name", ["x[/x].json", "[bold]b[/bold].json"])
def test_file_names_with_markup_print_as_they_are(tmp_path, monkeypatch, cli, name):
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    res = cli("lut", "show", str(tmp_path / name))
    assert res.code == InputError.exit_code, res.err
    assert name in res.err and "not found" in res.err and "internal error" not in res.err


def test_replacing_a_changed_host_key_needs_its_fingerprint(sshd, tmp_path, monkeypatch, cli):
    project = Project(tmp_path / "proj")
    prof = sshd.profile("dev")
    write_profile(project, prof)
    trust_host(project, prof)
    before = project.known_hosts.read_text()
    sshd.restart(new_host_key=True)
    monkeypatch.setenv("EDGENAS_PROJECT", str(project.root))
    res = cli("device", "trust", "dev", "--replace", "--yes")
    assert res.code == InputError.exit_code and "--fingerprint" in res.err
    assert project.known_hosts.read_text() == before
    with pytest.raises(HostKeyError, match="needs the new key's fingerprint"):  # the library says the same
        trust_host(project, prof, replace=True)
    assert project.known_hosts.read_text() == before
    res = cli("device", "trust", "dev", "--replace", "--yes", "--fingerprint", sshd.fingerprint)
    assert res.code == 0, res.err
    assert project.known_hosts.read_text() != before
