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
from tests.fleet.hostile import answering, hostile_agent, use_agent, write_profile
from tests.protocols import FAST

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


@pytest.mark.parametrize("name", [f"/{NAME}", f" {NAME}", f"{'s' * 65}-{FP[:12]}.json", f"{NAME}\n", f"../{NAME}"])
def test_a_listed_table_name_is_one_plain_file_name(name):
    """``lut.list`` names become ``luts/DEVICE/NAME``: '/mbv3-...json' would be a file at the root."""
    from edgenas.fleet.lutsync import _listing

    with pytest.raises(DeviceError, match="invalid LUT name"):
        _listing("dev", [{"name": NAME}, {"name": name}])
    longest = f"{'s' * 64}-{FP[:12]}.json"
    assert [e["name"] for e in _listing("dev", [{"name": NAME}, longest])] == [NAME, longest]


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
    assert exc.value.hint.startswith("re-profile it: edgenas profile dev --space mbv3-tiny --force")
    assert files_under(project.luts_dir) == []


def test_lut_pull_of_a_valid_table_lands_under_its_device(setup):
    project, prof = setup
    on_device(prof, NAME, lut_dict("dev"))
    pulled = pull_luts(project, prof)
    assert [p["name"] for p in pulled] == [NAME]
    assert files_under(project.luts_dir) == [f"dev/{NAME}"]
    with pytest.raises(InputError, match=f"device 'dev' holds no LUT named 'nb201-{FP[:12]}.json'") as exc:
        pull_luts(project, prof, name=f"nb201-{FP[:12]}.json")
    assert exc.value.hint == f"it holds: {NAME}"


EVIL_TEXT = "\x1b[31m[/x][bold]evil[/bold]\x1b]0;pwned\x07\rX\x9b2J"


def test_device_text_is_escaped_and_stripped_of_controls(setup, tmp_path, monkeypatch, cli):
    project, prof = setup
    write_profile(project, prof)
    patch = f"EVIL = {EVIL_TEXT!r}\n" + answering(
        "info", "r['fingerprint']['evil'] = EVIL", "r['agent_version'] = EVIL",
        "r['fingerprint']['model'] = 'Orin\\nruntimes: tensorrt 99 (forged)'")
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


JUNK_PROGRESS = ("real_bm = M['bench_many']\n"
                 "def bench_many(w, p, pr):\n"
                 "    for junk in ('x', [1], {'done': 'x'}, {'done': -5}, {'done': 10**9}, {'done': True}):\n"
                 "        pr(junk)\n"
                 "    return FINISH(real_bm(w, p, pr))\n"
                 "M['bench_many'] = bench_many\n")


def _profile_with(setup, tmp_path, monkeypatch, finish: str):
    from edgenas.fleet.profiler import profile_device

    project, prof = setup
    use_agent(monkeypatch, hostile_agent(tmp_path, finish + JUNK_PROGRESS))
    seen = []
    return project, lambda: profile_device(project, prof, "mbv3-tiny", protocol=FAST,
                                           progress=lambda name, done, total: seen.append((done, total))), seen


def test_junk_progress_from_a_device_is_ignored(setup, tmp_path, monkeypatch):
    project, run, seen = _profile_with(setup, tmp_path, monkeypatch, "FINISH = lambda r: r\n")
    res = run()  # was an AttributeError ('str' object has no attribute 'get') on the first junk line
    assert res.measured == 22 and all(0 <= d <= t == 22 for d, t in seen)


@pytest.mark.parametrize("finish, needle", [
    ("def FINISH(r):\n    k = sorted(r['results'])[0]\n    r['results'][k]['k'] = 'abc'\n    return r\n",
     "bad statistics for entry .*: k must be a finite number"),
    ("def FINISH(r):\n    k = sorted(r['results'])[0]\n    r['results'][k]['ref_ms'] = -1.0\n    return r\n",
     "bad statistics for entry .*: ref_ms must be a finite number"),
    ("def FINISH(r):\n    k = sorted(r['results'])[0]\n    r['results'][k].update(median_ms=1e308, max_ms=1e308,"
     " p90_ms=1e308, p99_ms=1e308, mean_ms=1e308)\n    return r\n",
     "bad statistics for entry .*: median_ms must be at most 1e\\+07"),
    ("def FINISH(r):\n    for v in r['results'].values():\n        v.update(ratio=1e6, ref_ms=1e6)\n    return r\n",
     "costs .* ms \\(ratio x reference\\), over 1e\\+07"),  # each number plausible, their product not
    ("def FINISH(r):\n    r['results'] = list(r['results'])\n    return r\n", "bench_many answer is malformed"),
    ("def FINISH(r):\n    return [r]\n", "bench_many answer is malformed"),
])
def test_malformed_block_statistics_are_one_device_error_and_write_no_lut(setup, tmp_path, monkeypatch,
                                                                          finish, needle):
    project, run, _ = _profile_with(setup, tmp_path, monkeypatch, finish)
    with pytest.raises(DeviceError, match=needle) as exc:
        run()
    assert exc.value.device == "dev"
    assert files_under(project.luts_dir) == []


def _raw_answer(line_expr: str) -> str:
    """A patch whose ``lut.list`` answer is the raw line ``line_expr`` (Python, with the request id ``i``)."""
    return ("real_send = server.Server.send\n"
            "def send(self, obj):\n"
            "    if isinstance(obj, dict) and obj.get('result') == 'RAW':\n"
            "        i = obj['id']\n"
            f"        self._out.write(({line_expr}).encode() + b'\\n'); self._out.flush(); return\n"
            "    real_send(self, obj)\n"
            "server.Server.send = send\n"
            "M['lut.list'] = lambda w, p, pr: 'RAW'\n")


@pytest.mark.parametrize("line, needle", [
    ("'{\"id\":%d,\"result\":\"%s\"}' % (i, 'A' * 300_000)", "a line of more than 0.25 MB"),
    ("'{\"id\":%d,\"result\":%s}' % (i, '[' * 100_000 + ']' * 100_000)", "nested more than 64 levels"),
    ("'{\"id\":%d,\"result\":%s}' % (i, '[' * 100 + ']' * 100)", "nested more than 64 levels"),
])
def test_an_oversized_or_deeply_nested_answer_is_one_error(setup, tmp_path, monkeypatch, cli, line, needle):
    project, prof = setup
    write_profile(project, prof)
    monkeypatch.setattr("edgenas.devices.transport.MAX_LINE_BYTES", 1 << 18)
    use_agent(monkeypatch, hostile_agent(tmp_path, _raw_answer(line)))
    monkeypatch.setenv("EDGENAS_PROJECT", str(project.root))
    res = cli("lut", "list", "dev")
    assert res.code == DeviceError.exit_code, res.err
    assert needle in res.err and "internal error" not in res.err and "Traceback" not in res.err
    assert len(res.err.strip().splitlines()) == 1


def lut_get_answering(change: str) -> str:
    """An agent patch whose ``lut.get`` gives the real answer ``r`` after the line ``change`` edits it."""
    return answering("lut.get", change)


def test_lut_pull_stops_at_the_size_limit_whatever_size_the_device_claims(setup, tmp_path, monkeypatch):
    project, prof = setup
    big = on_device(prof, NAME, dict(lut_dict("dev"), padding="x" * 400_000))
    monkeypatch.setattr("edgenas.fleet.lutsync.MAX_JSON_BYTES", 1 << 18)
    # the device lies about the size; the file is 400 KB
    use_agent(monkeypatch, hostile_agent(tmp_path, lut_get_answering("r['size'] = 10")))
    with pytest.raises(DeviceError, match="larger than 0.25 MB.*nothing was copied") as exc:
        pull_luts(project, prof)
    assert exc.value.device == "dev" and big.stat().st_size > 400_000
    assert files_under(project.luts_dir) == []


# ---------------------------------------------------------------- lut pull: every check of a device's answers
def test_a_listing_of_10000_tables_is_read_and_one_more_is_refused():
    from edgenas.fleet.lutsync import _listing

    assert len(_listing("dev", [NAME] * 10_000)) == 10_000
    with pytest.raises(DeviceError, match="sent 10001 tables, over the 10000 limit"):
        _listing("dev", [NAME] * 10_001)


def test_a_listed_size_is_a_whole_number_of_bytes_from_0():
    from edgenas.fleet.lutsync import _listing

    listed = _listing("dev", [{"name": NAME, "size": size, "sha256": "a" * 64} for size in (0, 7, -1, True, 1.5)])
    assert [e["size"] for e in listed] == [0, 7, None, None, None]


@pytest.mark.parametrize("answer", [{}, None, NAME])
def test_lut_pull_refuses_a_listing_that_is_not_a_list(setup, tmp_path, monkeypatch, answer):
    project, prof = setup
    on_device(prof, NAME, lut_dict("dev"))
    use_agent(monkeypatch, hostile_agent(tmp_path, f"M['lut.list'] = lambda w, p, pr: {answer!r}\n"))
    with pytest.raises(DeviceError, match="lut.list answered with something that is not a list") as exc:
        pull_luts(project, prof)
    assert exc.value.device == "dev" and files_under(project.luts_dir) == []


@pytest.mark.parametrize("change", [
    f"r['path'] = 'copy/{NAME}'",    # another file of the device (the same valid table, with its right hash)
    "r = [r]",                          # not an object
    "r['sha256'] = None",               # no hash to check the download against
])
def test_lut_pull_downloads_only_the_listed_file_with_its_hash(setup, tmp_path, monkeypatch, change):
    """``lut.get`` says where the table lies and its hash: only ``luts/NAME`` of the name listed, with a hash."""
    project, prof = setup
    table = on_device(prof, NAME, lut_dict("dev"))
    (table.parent.parent / "copy").mkdir()
    (table.parent.parent / "copy" / NAME).write_bytes(table.read_bytes())
    use_agent(monkeypatch, hostile_agent(tmp_path, lut_get_answering(change)))
    with pytest.raises(DeviceError, match=f"lut.get {NAME}: unexpected answer \\(path must be luts/{NAME}\\)"):
        pull_luts(project, prof)
    assert files_under(project.luts_dir) == []


def test_lut_pull_refuses_a_download_whose_hash_is_not_the_one_announced(setup, tmp_path, monkeypatch):
    project, prof = setup
    on_device(prof, NAME, lut_dict("dev"))
    use_agent(monkeypatch, hostile_agent(tmp_path, lut_get_answering("r['sha256'] = '0' * 64")))
    with pytest.raises(DeviceError, match=f"LUT {NAME} arrived corrupted"):
        pull_luts(project, prof)
    assert files_under(project.luts_dir) == []


@pytest.mark.parametrize("over", [True, False])
def test_lut_pull_refuses_a_table_the_device_says_is_over_the_limit(setup, tmp_path, monkeypatch, over):
    """A size claimed over the limit is refused before the download; the limit itself is a size allowed."""
    from edgenas.limits import MAX_JSON_BYTES

    project, prof = setup
    on_device(prof, NAME, lut_dict("dev"))
    claim = MAX_JSON_BYTES + 1 if over else MAX_JSON_BYTES
    use_agent(monkeypatch, hostile_agent(tmp_path, lut_get_answering(f"r['size'] = {claim}")))
    if not over:
        assert [p["name"] for p in pull_luts(project, prof)] == [NAME]
        return
    with pytest.raises(DeviceError, match=f"LUT {NAME} is {claim} bytes, over the {MAX_JSON_BYTES} limit"):
        pull_luts(project, prof)
    assert files_under(project.luts_dir) == []


def test_lut_pull_refuses_a_compact_table_the_host_would_write_past_the_size_it_reads(setup, monkeypatch):
    """The device's file is compact JSON; the host writes tables indented. A fingerprint of 200,000 zeros is a
    0.4 MB file on the device and 1.8 MB on the host: over a 1 MB limit, it was stored, and every later command
    refused the device's table as damaged."""
    import edgenas.limits

    project, prof = setup
    on_device(prof, NAME, lut_dict("dev", fingerprint={"pad": [0] * 200_000}))
    monkeypatch.setattr(edgenas.limits, "MAX_JSON_BYTES", 1 << 20)  # EDGENAS_MAX_INPUT_MB=1
    with pytest.raises(DeviceError, match=rf"LUT {NAME}: the table of device 'dev' would be 1\.\d MB, over the 1 MB"):
        pull_luts(project, prof)
    assert files_under(project.luts_dir) == []

@pytest.mark.parametrize("changes", [{"fingerprint_hash": "cd" * 32}, {"space": "nb201"}])
def test_lut_pull_refuses_a_table_that_is_not_the_one_its_name_says(setup, changes):
    """A table listed as mbv3-tiny-abab... but holding another space or fingerprint is not stored under either."""
    project, prof = setup
    on_device(prof, NAME, lut_dict("dev", **changes))
    with pytest.raises(DeviceError, match=f"LUT {NAME} holds space .* which do not match its name"):
        pull_luts(project, prof)
    assert files_under(project.luts_dir) == []


def test_lut_pull_refuses_a_linked_lut_folder_before_it_asks_for_any_table(setup, tmp_path, monkeypatch):
    project, prof = setup
    on_device(prof, NAME, lut_dict("dev"))
    outside = tmp_path / "outside"
    outside.mkdir()
    project.luts_dir.mkdir(parents=True)
    (project.luts_dir / "dev").symlink_to(outside)
    patch = ("import os\nreal_get = M['lut.get']\n"
             "def get(w, p, pr):\n"
             "    open(os.path.join(w, 'asked'), 'w').close()\n"
             "    return real_get(w, p, pr)\n"
             "M['lut.get'] = get\n")
    use_agent(monkeypatch, hostile_agent(tmp_path, patch))
    with pytest.raises(InputError, match="symbolic link"):
        pull_luts(project, prof)
    assert not (Path(prof.workdir) / "asked").exists() and list(outside.iterdir()) == []


def test_a_device_python_that_answers_garbage_to_the_hash_helper_is_one_error(sshd, tmp_path, monkeypatch, cli):
    project = Project(tmp_path / "proj")
    sshd.trust(project)
    fake = tmp_path / "fakepython"
    fake.write_text("#!/bin/sh\necho '{}'\n")  # valid JSON, but no hash for the file asked about
    fake.chmod(0o755)
    write_profile(project, sshd.profile("dev", python=str(fake)))
    monkeypatch.setenv("EDGENAS_PROJECT", str(project.root))
    res = cli("device", "info", "dev")
    assert res.code == DeviceError.exit_code, res.err
    assert "hashing files with" in res.err and "internal error" not in res.err  # was a KeyError


def test_lut_list_shows_only_checked_names_and_fields(setup, tmp_path, monkeypatch, cli):
    """``lut list`` printed whatever the device listed (a path as a name, 100,000 entries, any extra field
    in ``--json``); the names are now checked as ``lut pull`` checks them, and only name, size and sha256
    are kept (null where the device sent something else)."""
    project, prof = setup
    write_profile(project, prof)
    monkeypatch.setenv("EDGENAS_PROJECT", str(project.root))
    listing = [{"name": NAME, "size": "1e999", "sha256": "zz", "extra": {"x": [1, 2]}},
               {"name": f"nb201-{'c' * 12}.json", "size": 42, "sha256": "d" * 64}]
    use_agent(monkeypatch, hostile_agent(tmp_path, f"M['lut.list'] = lambda w, p, pr: {listing!r}\n"))
    res = cli("lut", "list", "dev", "--json")
    assert res.code == 0, res.err
    assert res.json()["on_device"] == [{"name": NAME, "size": None, "sha256": None},
                                       {"name": f"nb201-{'c' * 12}.json", "size": 42, "sha256": "d" * 64}]
    for bad in ([{"name": "../../../etc/passwd", "size": 1}], [{"name": NAME}] * 10_001):
        use_agent(monkeypatch, hostile_agent(tmp_path, f"M['lut.list'] = lambda w, p, pr: {bad!r}\n"))
        res = cli("lut", "list", "dev")
        assert res.code == DeviceError.exit_code and len(res.err.strip().splitlines()) == 1, res.err
        assert "dev" in res.err and ("invalid LUT name" in res.err or "over the 10000 limit" in res.err)
        assert res.out == ""
