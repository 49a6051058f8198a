"""Device profiles: strict validation, the built-in local device, the shipped examples."""

from __future__ import annotations

import re
import shutil
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from edgenas.errors import InputError
from edgenas.devices.profiles import (DeviceProfile, list_profiles, load_profile, load_profile_file, profile_fields,
                                      profile_from_dict)
from edgenas.project import Project

REPO_PROFILES = Path(__file__).resolve().parents[2] / "profiles"
EXAMPLES = ["orin-nano", "xavier-nx", "laptop-gpu", "laptop-cpu"]

GOOD = """[device]
name = "board"
host = "board.lab"
port = 2222
user = "nvidia"
key_file = "~/.ssh/id_ed25519"
python = "python3"
workdir = "~/.edgenas"
runtime = "tensorrt"
precision = "fp16"
threads = 4
power_mode = "MAXN"
connect_timeout_s = 10
call_timeout_s = 600
"""


@pytest.fixture
def project(tmp_path) -> Project:
    (tmp_path / "profiles").mkdir()
    return Project(tmp_path)


def write(project: Project, name: str, text: str) -> None:
    (project.profiles_dir / f"{name}.toml").write_text(text)


def test_good_profile_loads_every_field(project):
    write(project, "board", GOOD)
    p = load_profile(project, "board")
    assert p == DeviceProfile(name="board", host="board.lab", port=2222, user="nvidia",
                              key_file="~/.ssh/id_ed25519", python="python3", workdir="~/.edgenas",
                              runtime="tensorrt", precision="fp16", threads=4, power_mode="MAXN",
                              connect_timeout_s=10.0, call_timeout_s=600.0)
    assert isinstance(p.call_timeout_s, float) and not p.is_local
    with pytest.raises(AttributeError):
        p.host = "elsewhere"  # frozen


@pytest.mark.parametrize("name", EXAMPLES)
def test_shipped_examples_load(name, project):
    shutil.copy(REPO_PROFILES / f"{name}.toml", project.profiles_dir)
    p = load_profile(project, name)
    assert p.name == name and p.transport == "ssh" and p.host
    assert p.runtime in ("onnxruntime", "tensorrt") and p.threads >= 1


def test_builtin_local_profile_without_file(project):
    p = load_profile(project, "local")
    assert (p.transport, p.runtime, p.precision, p.threads) == ("local", "onnxruntime", "fp32", 1)
    assert "local" in list_profiles(project)


def test_local_toml_overrides_builtin(project):
    write(project, "local", '[device]\nname = "local"\nthreads = 4\n')
    p = load_profile(project, "local")
    assert p.is_local and p.threads == 4


def test_unknown_device_lists_existing(project):
    write(project, "board", GOOD)
    with pytest.raises(InputError) as exc:
        load_profile(project, "nope")
    assert "unknown device 'nope'" in str(exc.value)
    assert "board" in str(exc.value) and "local" in str(exc.value)


def test_the_known_devices_a_hint_offers_are_names_only(project):
    """``device list`` shows a profile file whose stem is no name as an invalid row; a hint offered it."""
    from edgenas.devices.profiles import list_profiles

    for stem in ("board", "a b", "evil\x1b[2J", "-x"):
        write(project, stem, GOOD)
    assert list_profiles(project) == sorted(["board", "a b", "evil\x1b[2J", "-x", "local"])
    for name in ("nope", "no pe"):
        with pytest.raises(InputError) as exc:
            load_profile(project, name)
        assert exc.value.hint.startswith("known devices: board, local"), exc.value.hint


@pytest.mark.parametrize("name", ["b" * 65, "/etc", " board", "board\n", "../board", ""])
def test_a_device_name_that_is_not_one_short_plain_path_component_is_refused(project, name):
    """The device name becomes host paths (``profiles/NAME.toml``, ``luts/NAME/``, the agent's work dir)."""
    with pytest.raises(InputError, match="invalid device name"):
        load_profile(project, name)


@pytest.mark.parametrize("name", ["b" * 65, " board", "-board"])
def test_a_profile_file_that_names_its_device_badly_is_refused(project, name):
    write(project, name, GOOD.replace('name = "board"', f'name = "{name}"'))
    with pytest.raises(InputError, match="must be 1-64 letters"):
        load_profile_file(project.profiles_dir / f"{name}.toml")


def test_a_device_name_of_64_characters_is_a_name(project):
    name = "b" * 64
    write(project, name, GOOD.replace('name = "board"', f'name = "{name}"'))
    assert load_profile(project, name).name == name


@pytest.mark.parametrize("key", ["password", "passphrase", "api_token", "sudo_pass"])
def test_passwords_and_secrets_refused(project, key):
    write(project, "board", GOOD + f'{key} = "hunter2"\n')
    with pytest.raises(InputError) as exc:
        load_profile(project, "board")
    msg = str(exc.value)
    assert key in msg and "passwords" in msg and "ssh-agent" in msg
    assert "hunter2" not in msg


@pytest.mark.parametrize("line,needle", [
    ('colour = "red"', "unknown key(s) colour"),
    ('runtime = "openvino"', "runtime 'openvino' is not one of onnxruntime, tensorrt, torch"),
    ('precision = "fp8"', "precision 'fp8'"),
    ("port = 70000", "port 70000 out of range"),
    ("port = 0", "port 0 out of range"),
    ('port = "22"', "port must be an integer"),
    ("threads = true", "threads must be an integer"),
    ("threads = 0", "threads 0 out of range"),
    ("call_timeout_s = -1", "call_timeout_s must be > 0"),
    ('python = "python3 -c evil"', "python 'python3 -c evil' must be one word"),
    ('workdir = "~root/x"', "workdir"),
    ('workdir = "/tmp/../etc"', "workdir"),
    # control characters would reach commands, paths and the terminal
    ('host = "jetson\\u001b[2J"', "host 'jetson\\x1b[2J' contains a control character"),
    ('user = "me\\u0007"', "user 'me\\x07' contains a control character"),
    ('power_mode = "MAXN\\u001b]0;x\\u0007"', "power_mode 'MAXN\\x1b]0;x\\x07' contains a control character"),
    ('workdir = "~/w\\u001b"', "workdir '~/w\\x1b' contains a control character"),
    ('key_file = "~/.ssh/k\\u009b"', "key_file '~/.ssh/k\\x9b' contains a control character"),
    # each range at its edge
    ("port = 65536", "port 65536 out of range"),
    ("threads = 1025", "threads 1025 out of range"),
    ("connect_timeout_s = 0", "connect_timeout_s must be > 0"),
    ("call_timeout_s = 86400.5", "call_timeout_s must be > 0 and at most 86400 seconds, got 86400.5"),
    ('transport = "telnet"', "transport 'telnet' is not one of ssh, local"),
    # host names that are no host name or address: a space or '/', a broken IPv6 address, half a bracket,
    # one character too many, a user name one character too long
    ('host = "board lab"', "host 'board lab' must be a host name"),
    ('host = "lab/board"', "host 'lab/board' must be a host name"),
    ('host = "1::2::3"', "host '1::2::3' must be a host name"),
    ('host = "fe80::1]"', "host 'fe80::1]' must be a host name"),
    ('host = "[fe80::1"', "host '[fe80::1' must be a host name"),
    (f'host = "{"a" * 254}"', "must be a host name"),
    (f'user = "{"u" * 129}"', "must be a user name"),
    # a jump host that is not one '[user@]host[:port]', or whose port is out of range
    ('proxy_jump = "bastion]x"', "must be one '[user@]host[:port]'"),
    ('proxy_jump = "bastion:0"', "port 0 out of range"),
    ('proxy_jump = "bastion:65536"', "port 65536 out of range"),
    ('proxy_jump = "bastion:000022"', "must be one '[user@]host[:port]'"),
    # a mode is its name or number (whole, from 0): these are neither
    ("power_mode = -1", "power_mode -1 is no mode number (nvpmodel numbers them from 0)"),
    ("power_mode = 2.0", "power_mode must be a mode name or whole number, got float 2.0"),
    ("power_mode = true", "power_mode must be a mode name or whole number, got bool True"),
])
def test_invalid_values_give_one_clear_error(project, line, needle):
    text = "\n".join(ln for ln in GOOD.splitlines() if not ln.startswith(line.split(" =")[0] + " "))
    write(project, "board", text + "\n" + line + "\n")
    with pytest.raises(InputError) as exc:
        load_profile(project, "board")
    assert needle in str(exc.value)
    assert "board.toml" in str(exc.value)


@pytest.mark.parametrize("line", ["power_mode = 2", 'power_mode = "2"'])
def test_a_power_mode_is_its_name_or_its_number_written_with_or_without_quotes(project, line):
    """The README says the setting is the mode's "name or number"; a number unquoted was refused as "must be
    a string, got int 2". Either way it is the text the device's mode is compared with."""
    write(project, "board", GOOD.replace('power_mode = "MAXN"', line))
    assert load_profile(project, "board").power_mode == "2"


def test_missing_host_and_name_mismatch_and_bad_toml(project):
    write(project, "a", '[device]\nname = "a"\n')
    with pytest.raises(InputError, match="host"):
        load_profile(project, "a")
    write(project, "b", GOOD)  # says name = "board"
    with pytest.raises(InputError, match="differs from the file name"):
        load_profile(project, "b")
    write(project, "c", "[device\nname=")
    with pytest.raises(InputError, match="malformed device profile"):
        load_profile(project, "c")
    write(project, "d", GOOD.replace("[device]", "[board]"))
    with pytest.raises(InputError, match=r"\[device\]"):
        load_profile(project, "d")


def test_list_profiles_ignores_non_device_toml(project):
    write(project, "board", GOOD)
    write(project, "fleet", '[fleet]\ndevices = ["board"]\n')
    assert list_profiles(project) == ["board", "local"]


@pytest.mark.parametrize("line", [
    'host = "x;touch${{IFS}}{marker};true"',
    'host = "y$(touch${{IFS}}{marker})"',
    'proxy_jump = "u@j$(touch${{IFS}}{marker})"',
    'proxy_jump = "u$(touch${{IFS}}{marker})@bastion"',
    'user = "me;touch${{IFS}}{marker}"',
])
def test_host_names_with_shell_characters_are_refused_before_ssh_config(project, match_exec_config, line):
    """A profile host (or jump host or user) with ';' or '$(...)' passed validation (only whitespace and a
    leading '-' were refused) and reached paramiko's ~/.ssh/config lookup, whose ``Match exec`` ran it in a
    shell on this machine."""
    from edgenas.devices.ssh import SSHTransport

    marker = match_exec_config
    text = "\n".join(ln for ln in GOOD.splitlines() if not ln.startswith(line.split(" =")[0] + " "))
    write(project, "board", text + "\n" + line.format(marker=marker) + "\n")
    with pytest.raises(InputError) as exc:
        SSHTransport(load_profile(project, "board"), project)
    assert "board.toml" in str(exc.value) and "must be a" in str(exc.value)
    assert not marker.exists()


@pytest.mark.parametrize("value", ["a,b", "u@a:22,v@b:22"])
def test_a_chain_of_jump_hosts_is_refused_with_a_hint_that_helps(project, value):
    """'a,b' was taken as one host name "a,b", and a chain's hint sent the user to ~/.ssh/config."""
    write(project, "board", GOOD + f'proxy_jump = "{value}"\n')
    with pytest.raises(InputError, match="chain of jump hosts") as exc:
        load_profile(project, "board")
    assert "ssh/config" not in str(exc.value) and "-L" in exc.value.hint


@pytest.mark.parametrize("host", ["jetson.lab", "10.0.0.5", "::1", "[fe80::1]", "orin-nano_2", "jetson-lab.",
                                  "fe80::1%eth0", "[fe80::1%eth0]", "nano+1", "[::1]", "[2001:db8::]",
                                  "a." * 126 + "a"])
def test_ordinary_host_names_and_addresses_are_accepted(project, host):
    """The shell-safe checks refused a zone id (fe80::1%eth0) and '+' in an ssh config alias at first."""
    write(project, "board", GOOD.replace('host = "board.lab"', f'host = "{host}"'))
    assert load_profile(project, "board").host == host


@pytest.mark.parametrize("user", ["john.doe@corp.example", "AD\\\\john", "BUILD01$", "nvidia", "2nd.user",
                                  "u" * 128])
def test_domain_and_machine_account_users_are_accepted(project, user):
    """A domain login (SSSD, Active Directory) or a machine account was refused by the first user-name rule."""
    write(project, "board", GOOD.replace('user = "nvidia"', f'user = "{user}"'))
    assert load_profile(project, "board").user == user.replace("\\\\", "\\")


def test_a_jump_host_in_ssh_uri_form_or_with_a_domain_user_is_read():
    from edgenas.devices.profiles import JumpHost, parse_jump

    assert parse_jump("ssh://admin@bastion:2222", "proxy_jump") == JumpHost("bastion", 2222, "admin")
    assert parse_jump("john@corp.example@bastion", "proxy_jump") == JumpHost("bastion", None, "john@corp.example")
    assert parse_jump("[fe80::1%eth0]:22", "proxy_jump") == JumpHost("fe80::1%eth0", 22, None)
    assert parse_jump("bastion:1", "j").port == 1 and parse_jump("bastion:65535", "j").port == 65535
    with pytest.raises(FrozenInstanceError):
        parse_jump("bastion", "proxy_jump").port = 22


def test_device_list_shows_an_invalid_profile_as_its_row(project, cli, monkeypatch):
    """One invalid profile failed the whole `device list`."""
    write(project, "board", GOOD)
    write(project, "bad", GOOD.replace('name = "board"', 'name = "bad"').replace('host = "board.lab"', 'host = "a;b"'))
    monkeypatch.setenv("EDGENAS_PROJECT", str(project.root))
    rows = {r["name"]: r for r in cli("device", "list", "--json").json()}
    assert rows["board"]["host"] == "board.lab" and "must be a host name" in rows["bad"]["error"]


def test_a_profile_that_leaves_settings_out_is_named_by_its_file_and_gets_the_defaults(project):
    write(project, "board", '[device]\nhost = "board.lab"\n')
    assert load_profile(project, "board") == DeviceProfile(
        name="board", host="board.lab", port=None, user=None, key_file=None, proxy_jump=None, python="python3",
        workdir="~/.edgenas", runtime="onnxruntime", provider=None, precision="fp32", threads=1, power_mode=None,
        connect_timeout_s=10.0, call_timeout_s=600.0, keepalive_s=15.0, transport="ssh")
    assert profile_fields() == ["name", "host", "port", "user", "key_file", "proxy_jump", "python", "workdir",
                                "runtime", "provider", "precision", "threads", "power_mode", "connect_timeout_s",
                                "call_timeout_s", "keepalive_s", "transport"]


@pytest.mark.parametrize("line", ["port = 1", "port = 65535", "threads = 1", "threads = 1024", "keepalive_s = 0.5",
                                  "call_timeout_s = 86400", 'proxy_jump = "admin@bastion:65535"'])
def test_values_at_the_edges_of_their_ranges_are_accepted(project, line):
    key, value = line.split(" = ")
    text = "\n".join(ln for ln in GOOD.splitlines() if not ln.startswith(key + " "))
    write(project, "board", text + "\n" + line + "\n")
    got = getattr(load_profile(project, "board"), key)
    assert got == (value.strip('"') if value.startswith('"') else float(value))


@pytest.mark.parametrize("runtime, provider, precision, needle, hint", [
    ("onnxruntime", "quantum", "fp32", "provider 'quantum' is not one of", None),
    ("tensorrt", "cuda", "fp16", "provider is not a setting of runtime 'tensorrt'", "remove the provider line"),
    ("onnxruntime", None, "fp16", "precision 'fp16' is not measured by runtime 'onnxruntime' (it measures fp32)",
     'provider = "tensorrt"'),
    ("onnxruntime", "cuda", "int8", "precision 'int8' is not measured by runtime 'onnxruntime' on provider 'cuda'",
     'provider = "tensorrt"'),
    ("torch", None, "int8", "precision 'int8' is not measured by runtime 'torch' (it measures fp32, fp16)",
     'use precision = "fp32" or "fp16"'),
])
def test_a_provider_or_precision_the_runtime_does_not_have_is_refused(project, runtime, provider, precision,
                                                                       needle, hint):
    text = "\n".join(ln for ln in GOOD.splitlines() if not ln.startswith(("runtime ", "precision ")))
    text += f'\nruntime = "{runtime}"\nprecision = "{precision}"\n' + (f'provider = "{provider}"\n' if provider else "")
    write(project, "board", text)
    with pytest.raises(InputError) as exc:
        load_profile(project, "board")
    assert needle in str(exc.value) and "board.toml" in str(exc.value)
    assert hint is None or hint in exc.value.hint


@pytest.mark.parametrize("text, needle", [
    ("device = 5\n", "[device] must be a table"),
    ('device = "board"\n', "[device] must be a table"),
    ("", "expected exactly one [device] table"),
    (GOOD + "[extra]\nx = 1\n", "expected exactly one [device] table, found extra"),
])
def test_a_profile_file_without_exactly_one_device_table_is_one_error(project, text, needle):
    write(project, "board", text)
    with pytest.raises(InputError) as exc:
        load_profile(project, "board")
    assert needle in str(exc.value) and "board.toml" in str(exc.value)


def test_only_files_with_a_device_table_at_the_start_of_a_line_are_listed(project):
    write(project, "notes", 'title = "copy a [device] table from the examples"\n')
    (project.profiles_dir / "latin1.toml").write_bytes(GOOD.replace("nvidia", "nvidi\xe4").encode("latin-1"))
    write(project, "board", "# a board\n" + GOOD)
    assert list_profiles(project) == ["board", "local"]


@pytest.mark.parametrize("key, value", [
    ("host", "a;" + "x" * 300), ("user", ";" + "x" * 300), ("proxy_jump", "a," + "x" * 300),
    ("proxy_jump", "]" + "x" * 300), ("proxy_jump", "a;" + "x" * 300), ("proxy_jump", "u;" + "x" * 300 + "@bastion"),
    ("proxy_jump", "x" * 250 + ":70000"), ("power_mode", "\x1b" + "x" * 300),
])
def test_a_long_bad_value_is_echoed_cut_to_80_characters(key, value):
    data = {"name": "board", "host": "board.lab", key: value}
    with pytest.raises(InputError) as exc:
        profile_from_dict(data, where="board.toml")
    prefix = len(value) - len(value.lstrip(";a,]u\x1b"))
    assert max(len(run) for run in re.findall("x+", str(exc.value))) == 80 - prefix
