"""``edgenas device list | info | trust``: what each prints, as text and as ``--json``, with values from files
and devices printed as text. Found by mutation testing: the rows of ``device list``, the tree and runtimes
line of ``device info``, and ``device trust``'s JSON rows, answers to its question and a key trusted only in
the user's known_hosts were checked by no test."""

from __future__ import annotations

import io
import json
import re
import sys

import pytest

from edgenas.errors import InputError
from edgenas.project import Project
from tests.cli.test_bad_input import one_line_error
from tests.devices.test_trust import write_profile


def _toml(root, name: str, text: str) -> None:
    (root / "profiles").mkdir(exist_ok=True)
    (root / "profiles" / f"{name}.toml").write_text("[device]\n" + text)


def test_device_list_shows_every_profile_and_an_invalid_one_as_its_own_row(fresh, cli):
    _toml(fresh, "trt", 'name = "trt"\nhost = "jet.local"\nruntime = "tensorrt"\nprecision = "fp16"\nthreads = 4\n')
    _toml(fresh, "g", 'name = "g"\nhost = "gpu.lan"\nprovider = "cuda"\n')
    _toml(fresh, "bad", f'name = "bad"\nruntime = "[red]x[/red]{"y" * 400}"\n')
    res = cli("device", "list", "--json")
    assert res.code == 0 and res.err == "", res.err
    rows = res.json()
    assert [r["name"] for r in rows] == ["bad", "g", "local", "trt"]
    error = f"profile {fresh}/profiles/bad.toml: runtime '[red]x[/red]{'y' * 400}' is not one of onnxruntime, " \
            "tensorrt, torch"
    assert rows[0] == {"name": "bad", "error": f"{error[:300]}… ({len(error) - 300} more characters)"}
    assert rows[1:] == [
        {"name": "g", "host": "gpu.lan", "runtime": "onnxruntime", "provider": "cuda", "precision": "fp32",
         "threads": 1},
        {"name": "local", "host": "-", "runtime": "onnxruntime", "provider": "cpu", "precision": "fp32", "threads": 1},
        {"name": "trt", "host": "jet.local", "runtime": "tensorrt", "provider": "cpu", "precision": "fp16",
         "threads": 4}]
    res = cli("device", "list")
    assert res.code == 0 and res.err == ""
    assert res.out.splitlines() == [
        f"bad              invalid: {rows[0]['error']}",
        "g                gpu.lan                  onnxruntime/cuda   fp32  threads=1",
        "local            -                        onnxruntime/cpu    fp32  threads=1",
        "trt              jet.local                tensorrt           fp16  threads=4"]


def test_device_info_prints_the_fingerprint_as_a_tree_and_the_runtimes_it_has(fresh, cli):
    res = cli("device", "info", "--json")
    assert res.code == 0, res.err
    info = res.json()
    assert info["device"] == "local" and "power_mode_note" not in info and "power_mode_mismatch" not in info
    text = cli("device", "info", "local")
    assert text.code == 0, text.err
    lines = text.out.splitlines()
    assert lines[0] == f"local fingerprint {info['fingerprint_hash'][:16]}…  agent {info['agent_version'][:12]}"
    assert lines[1] == "  identity:" and lines[2] == f"    machine: {info['fingerprint']['identity']['machine']}"
    assert f"    python: {info['fingerprint']['software']['python']}" in lines
    assert "      onnxruntime:" in lines and f"        version: {info['runtimes']['onnxruntime']['version']}" in lines
    have = [f"{k} {v['version']}" for k, v in info["runtimes"].items() if v]
    assert lines[-1] == "runtimes: " + ", ".join(have) and "tensorrt" not in lines[-1]


# -- device trust, against a real sshd ---------------------------------------------------------------------

def _row(sshd, project: Project, name: str = "dev") -> dict:
    return {"device": name, "host": f"[127.0.0.1]:{sshd.port}", "key_type": "ssh-ed25519",
            "fingerprint": sshd.fingerprint, "known_hosts": str(project.known_hosts)}


@pytest.mark.ssh
def test_device_trust_json_is_the_row_of_the_key_and_a_second_trust_says_so(fresh, cli, sshd):
    project = Project(fresh)
    write_profile(project, sshd.profile("dev"))
    res = cli("device", "trust", "dev", "--yes", "--json")
    assert res.code == 0 and res.json() == _row(sshd, project), res.err
    assert f"presents a ssh-ed25519 key {sshd.fingerprint}" in res.err and len(res.err.splitlines()) == 1
    recorded = project.known_hosts.read_text()
    assert recorded.splitlines() == [sshd.known_hosts_line()]
    again = cli("device", "trust", "dev", "--yes", "--fingerprint", sshd.fingerprint)
    assert again.code == 0 and again.out == (f"already trusted [127.0.0.1]:{sshd.port}: {sshd.fingerprint} "
                                             f"({project.known_hosts})\n"), again.err
    assert cli("device", "trust", "dev", "--json").json() == _row(sshd, project)  # no question when trusted
    assert project.known_hosts.read_text() == recorded


@pytest.mark.ssh
def test_device_trust_asks_and_records_only_on_yes(fresh, cli, sshd, monkeypatch):
    project = Project(fresh)
    write_profile(project, sshd.profile("dev"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    res = cli("device", "trust", "dev")  # the key, the question, and after the answer the error
    assert res.code == InputError.exit_code and res.out == "", res.err
    assert res.err.endswith("[y/N]: error: host key not trusted (compare the fingerprint with the host's (ssh-keygen "
                            "-lf /etc/ssh/ssh_host_ed25519_key.pub on it) and re-run)\n"), res.err
    assert not project.known_hosts.exists()
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    res = cli("device", "trust", "dev")
    assert res.code == 0, res.err
    assert res.out.startswith("trusted dev (")  # click's prompt wrote its last space to stdout
    assert res.out.endswith(f": {sshd.fingerprint} -> {project.known_hosts}\n")
    assert "Trust this key and record it in the project's known_hosts?" in res.err
    assert project.known_hosts.read_text().splitlines() == [sshd.known_hosts_line()]


@pytest.mark.ssh
def test_a_key_trusted_in_the_users_known_hosts_only_is_recorded_in_the_projects(fresh, cli, sshd, monkeypatch,
                                                                                 tmp_path):
    project = Project(fresh)
    write_profile(project, sshd.profile("dev"))
    user = tmp_path / "user_known_hosts"
    user.write_text(sshd.known_hosts_line() + "\n")
    monkeypatch.setenv("EDGENAS_USER_KNOWN_HOSTS", str(user))
    res = cli("device", "trust", "dev", "--yes")
    assert res.code == 0 and res.out.startswith("trusted dev ("), res.err
    assert project.known_hosts.read_text().splitlines() == [sshd.known_hosts_line()]
    assert user.read_text() == sshd.known_hosts_line() + "\n"


@pytest.mark.ssh
def test_replace_yes_with_the_jump_fingerprint_only_still_needs_the_changed_devices(fresh, cli, sshd):
    project = Project(fresh)
    write_profile(project, sshd.profile("dev"))
    assert cli("device", "trust", "dev", "--yes").code == 0
    before = project.known_hosts.read_text()
    sshd.restart(new_host_key=True)
    res = cli("device", "trust", "dev", "--replace", "--yes", "--jump-fingerprint", "SHA256:x")
    one_line_error(res, "offers a changed host key: --replace --yes needs --fingerprint SHA256:")
    assert res.code == InputError.exit_code and project.known_hosts.read_text() == before


@pytest.mark.ssh
def test_device_trust_json_with_a_jump_host_nests_the_jump_hosts_row(fresh, cli, sshd_factory):
    jump, target = sshd_factory(), sshd_factory()
    project = Project(fresh)
    write_profile(project, target.profile("tj", proxy_jump=f"127.0.0.1:{jump.port}"))
    res = cli("device", "trust", "tj", "--yes", "--json")
    assert res.code == 0, res.err
    assert res.json() == {**_row(target, project, "tj"), "jump_host": _row(jump, project, "tj")}


@pytest.mark.ssh
@pytest.mark.parametrize("sig, code, said", [
    ("SIGINT", 130, "aborted"),
    ("SIGTERM", 143, "error: terminated (SIGTERM); the files written are complete; run the command again")])
def test_ctrl_c_or_sigterm_at_the_question_on_a_terminal_ends_it_and_records_nothing(fresh, sshd, sig, code, said):
    import os
    import pty
    import signal
    import subprocess
    import time
    from pathlib import Path

    project = Project(fresh)
    write_profile(project, sshd.profile("dev"))
    main, sub = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), EDGENAS_PROJECT=str(fresh))
    proc = subprocess.Popen([sys.executable, "-c", "from edgenas.cli import main; main()", "device", "trust", "dev"],
                            stdin=sub, stdout=sub, stderr=sub, env=env, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(sub)
    seen, deadline = b"", time.monotonic() + 60
    while b"[y/N]" not in seen and time.monotonic() < deadline:
        seen += os.read(main, 4096)
    proc.send_signal(getattr(signal, sig))  # Ctrl-C (or a kill) at the question
    try:
        while True:
            seen += os.read(main, 4096)
    except OSError:  # EIO: the process is gone
        pass
    os.close(main)
    assert proc.wait(timeout=60) == code
    text = re.sub(r"\x1b\[[0-9;]*m", "", seen.decode())  # (red on a terminal)
    last = text.rstrip().splitlines()[-1]
    assert last.startswith("Trust this key") and last.endswith(said) and "Traceback" not in text, text
    assert not project.known_hosts.exists()


def test_a_fifo_among_the_profiles_blocks_no_command(tmp_path):
    """``device list`` and every unknown-device hint read each ``profiles/*.toml``: a FIFO blocked them for ever."""
    import os
    import subprocess
    from pathlib import Path

    _toml(tmp_path, "g", 'name = "g"\nhost = "gpu.lan"\n')
    os.mkfifo(tmp_path / "profiles" / "f.toml")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), EDGENAS_PROJECT=str(tmp_path))

    def edgenas(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", "from edgenas.cli import main; main()", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=60)

    res = edgenas("device", "list", "--json")
    assert res.returncode == 0 and [r["name"] for r in json.loads(res.stdout)] == ["g", "local"], res.stderr
    res = edgenas("device", "info", "nosuch")
    assert res.returncode == 2 and len(res.stderr.splitlines()) == 1 and "known devices: g, local" in res.stderr, \
        res.stderr
    res = edgenas("device", "info", "f")  # named: one line saying what it is
    assert res.returncode == 2 and "is not a regular file" in res.stderr and len(res.stderr.splitlines()) == 1


def test_replace_yes_without_a_fingerprint_is_refused_before_any_contact(fresh, cli):
    _toml(fresh, "dev", 'name = "dev"\nhost = "127.0.0.1"\nport = 9\n')  # nothing to reach: it is never tried
    one_line_error(cli("device", "trust", "dev", "--replace", "--yes"),
                   "--replace --yes replaces a changed host key without showing it to you: it needs --fingerprint "
                   "(or --jump-fingerprint) SHA256:... of the new key")
    assert sorted(p.name for p in fresh.iterdir()) == ["profiles"]


@pytest.mark.ssh
def test_device_info_cuts_a_huge_key_or_value_from_the_device(sshd, tmp_path, monkeypatch, cli):
    from tests.fleet.hostile import answering, hostile_agent, use_agent
    from tests.fleet.hostile import write_profile as write_device

    project = Project(tmp_path / "proj")
    sshd.trust(project)
    write_device(project, sshd.profile("dev"))
    patch = answering("info", "r['fingerprint']['k' * 400] = {'v': 'x' * 2000}")
    use_agent(monkeypatch, hostile_agent(tmp_path, patch))
    monkeypatch.setenv("EDGENAS_PROJECT", str(project.root))
    res = cli("device", "info", "dev")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert "  " + "k" * 299 + "…" in lines and "    v: " + "x" * 996 + "…" in lines


def test_device_list_escapes_the_undecodable_bytes_of_a_profile_file_name(tmp_path):
    """A profile file named with bytes that are no UTF-8 (read as lone surrogates) was printed as its raw
    bytes: 0x9b is an 8-bit CSI (``x\x9b31mRED`` turned a terminal red), 0xff no text at all. Each byte now
    prints as ``repr`` shows it, in the name column as in the error."""
    import os
    import subprocess
    from pathlib import Path

    (tmp_path / "profiles").mkdir()
    text = b'[device]\nname = "laptop"\n'
    for stem in (b"x\x9b31mRED\x9b0m", b"bad\xff"):
        with open(os.path.join(os.fsencode(tmp_path / "profiles"), stem + b".toml"), "wb") as f:
            f.write(text)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), EDGENAS_PROJECT=str(tmp_path),
               PYTHONUTF8="1", COLUMNS="200")
    res = subprocess.run([sys.executable, "-c", "from edgenas.cli import main; main()", "device", "list"],
                         cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert res.returncode == 0 and res.stderr == b"", res.stderr
    assert b"\x9b" not in res.stdout and b"\xff" not in res.stdout and b"\x1b" not in res.stdout, res.stdout
    assert res.stdout.decode().splitlines() == [
        "bad\\udcff        invalid: invalid device name 'bad\\udcff'",
        "local            -                        onnxruntime/cpu    fp32  threads=1",
        "x\\udc9b31mRED\\udc9b0m invalid: invalid device name 'x\\udc9b31mRED\\udc9b0m'"]
