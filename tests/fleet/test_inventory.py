"""Fleet inventories: ``profiles/fleet.toml`` (devices, groups, per-group overrides) and Ansible YAML
(``all:`` / ``hosts`` / ``children`` / ``vars``), and one clear ``InputError`` for every bad input."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from edgenas.errors import InputError
from edgenas.fleet.inventory import default_inventory_path, load_inventory, with_overrides
from edgenas.project import Project


@pytest.fixture
def project(tmp_path) -> Project:
    proj = Project(tmp_path / "proj")
    proj.profiles_dir.mkdir(parents=True)
    for name, host, threads in (("orin-nano", "orin.lab", 4), ("xavier-nx", "xavier.lab", 6),
                                ("lab-laptop", "laptop.lab", 8)):
        write(proj.profiles_dir / f"{name}.toml", f"""
            [device]
            name = "{name}"
            host = "{host}"
            user = "nvidia"
            runtime = "onnxruntime"
            threads = {threads}
            call_timeout_s = 600
            """)
    return proj


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


FLEET_TOML = """
    [fleet]
    devices = ["orin-nano", "xavier-nx", "lab-laptop"]
    [groups]
    jetsons = ["orin-nano", "xavier-nx"]
    laptops = ["lab-laptop"]
    [group_settings.jetsons]
    call_timeout_s = 900
    runtime = "tensorrt"
    precision = "fp16"
    """


# -- TOML -------------------------------------------------------------------------------------------

def test_toml_inventory_devices_groups_and_group_settings(project):
    path = write(project.profiles_dir / "fleet.toml", FLEET_TOML)
    assert default_inventory_path(project) == path
    inv = load_inventory(project)  # the default path
    assert inv.names() == ["orin-nano", "xavier-nx", "lab-laptop"] and inv.source == str(path)
    assert inv.groups == {"jetsons": ("orin-nano", "xavier-nx"), "laptops": ("lab-laptop",)}
    by = {d.name: d for d in inv.devices}
    # group settings override the profile; the rest of the profile is kept
    assert by["orin-nano"].call_timeout_s == 900.0 and by["orin-nano"].runtime == "tensorrt"
    assert by["orin-nano"].precision == "fp16" and by["orin-nano"].threads == 4
    assert by["orin-nano"].host == "orin.lab" and by["xavier-nx"].threads == 6
    assert by["lab-laptop"].call_timeout_s == 600.0 and by["lab-laptop"].runtime == "onnxruntime"
    assert [d.name for d in inv.select("jetsons")] == ["orin-nano", "xavier-nx"]
    assert [d.name for d in inv.select(names=["lab-laptop"])] == ["lab-laptop"]
    assert [d.name for d in inv.select("jetsons", names=["xavier-nx"])] == ["xavier-nx"]
    assert [d.name for d in inv.select()] == inv.names()
    assert with_overrides(by["lab-laptop"], threads=2).threads == 2 and by["lab-laptop"].threads == 8
    with pytest.raises(dataclasses.FrozenInstanceError):  # a record of the file: callers select, never change it
        inv.groups = {}


def test_toml_inventory_by_explicit_path(project, tmp_path):
    path = write(tmp_path / "elsewhere" / "my-fleet.toml", '[fleet]\ndevices = ["xavier-nx"]\n')
    inv = load_inventory(project, path)
    assert inv.names() == ["xavier-nx"] and inv.groups == {} and inv.devices[0].threads == 6


@pytest.mark.parametrize("text, match", [
    ('[fleet]\ndevices = ["orin-nano"\n', "malformed fleet inventory"),
    ('[fleet]\ndevices = []\n', r"\[fleet\] needs devices"),
    ('[fleet]\ndevices = ["orin-nano", "orin-nano"]\n', "distinct"),
    ('[fleet]\ndevices = ["orin-nano"]\n[extras]\nx = 1\n', "unknown table.*extras"),
    ('[fleet]\ndevices = ["orin-nano"]\n[groups]\njetsons = ["orin-nano", "tx2"]\n',
     "group 'jetsons' names devices not in \\[fleet\\]: tx2"),
    ('[fleet]\ndevices = ["orin-nano"]\n[groups]\njetsons = ["orin-nano"]\n[group_settings.gpus]\nthreads = 2\n',
     "must name a group"),
    ('[fleet]\ndevices = ["orin-nano"]\n[groups]\njetsons = ["orin-nano"]\n[group_settings.jetsons]\n'
     'password = "hunter2"\n', "password.*not allowed"),
    ('[fleet]\ndevices = ["orin-nano"]\n[groups]\njetsons = ["orin-nano"]\n[group_settings.jetsons]\n'
     'threads = "four"\n', "threads must be an integer"),
    ('[fleet]\ndevices = ["ghost"]\n', "unknown device 'ghost'"),
    ('[fleet]\ndevices = ["orin-nano"]\n[groups]\njetsons = ["orin-nano"]\n[group_settings]\njetsons = "x"\n',
     r"\[group_settings.jetsons\] must be a table"),  # was a ValueError out of dict("x")
    # each was an AttributeError or TypeError (5.items(), iterating 5, joining the stray 1)
    ('groups = 5\n[fleet]\ndevices = ["orin-nano"]\n', r"\[groups\] must map group names"),
    ('[fleet]\ndevices = ["orin-nano"]\n[groups]\njetsons = 5\n', "group 'jetsons' must be a list of device names"),
    ('[fleet]\ndevices = ["orin-nano"]\n[groups]\njetsons = [1]\n', "group 'jetsons' must be a list of device names"),
    ('[fleet]\ndevices = ["orin-nano"]\n[groups]\njetsons = "orin-nano"\n',
     "group 'jetsons' must be a list of device names"),  # not its letters, each "not in [fleet]"
    # a group renaming its members filed one machine's fingerprint and tables under another device's name
    ('[fleet]\ndevices = ["orin-nano"]\n[groups]\njetsons = ["orin-nano"]\n[group_settings.jetsons]\n'
     'name = "xavier-nx"\n', r"\[group_settings.jetsons\] sets name"),
    ('[fleet]\ndevices = ["orin-nano"]\n[groups]\njetsons = ["orin-nano"]\n[group_settings.jetsons]\n'
     'transport = "local"\n', r"\[group_settings.jetsons\] sets transport"),
])
def test_bad_toml_inventory_is_one_clear_input_error(project, text, match):
    path = write(project.profiles_dir / "fleet.toml", text)
    before = sorted(p.name for p in project.profiles_dir.iterdir())
    with pytest.raises(InputError, match=match):
        load_inventory(project, path)
    assert sorted(p.name for p in project.profiles_dir.iterdir()) == before  # nothing written


def test_unknown_group_and_device_not_in_fleet(project):
    write(project.profiles_dir / "fleet.toml", FLEET_TOML)
    inv = load_inventory(project)
    with pytest.raises(InputError, match="unknown group 'gpus'") as exc:
        inv.select("gpus")
    assert "jetsons" in exc.value.hint and "laptops" in exc.value.hint
    with pytest.raises(InputError, match="not in the fleet.*ghost") as exc:
        inv.select(names=["orin-nano", "ghost"])
    assert "orin-nano" in exc.value.hint


def test_missing_inventory(project, tmp_path):
    with pytest.raises(InputError, match="fleet inventory not found") as exc:
        load_inventory(project)
    assert "profiles/fleet.toml" in exc.value.hint
    with pytest.raises(InputError, match="not found.*nope.yaml"):
        load_inventory(project, tmp_path / "nope.yaml")


# -- Ansible YAML -----------------------------------------------------------------------------------

ANSIBLE = """
    all:
      vars:
        ansible_user: edge
        edgenas_threads: 2
      hosts:
        lab-laptop:
          ansible_host: 10.0.0.9
      children:
        jetsons:
          vars:
            edgenas_runtime: tensorrt
            edgenas_python: /usr/bin/python3.10
            edgenas_workdir: /data/edgenas
          hosts:
            orin-nano:
              ansible_port: 2222
              edgenas_threads: 4
            jet-1:
              ansible_host: 192.168.1.21
              ansible_ssh_private_key_file: ~/.ssh/jetson_ed25519
              ansible_python_interpreter: /usr/bin/python3
        arm:
          children:
            jetsons2:
              hosts:
                jet-2:
                  ansible_host: jet-2.lab
                  ansible_user: ubuntu
    """


def test_ansible_yaml_inventory_maps_vars_onto_profiles(project):
    path = write(project.profiles_dir / "inventory.yaml", ANSIBLE)
    assert default_inventory_path(project) == path
    inv = load_inventory(project)
    by = {d.name: d for d in inv.devices}
    assert set(by) == {"lab-laptop", "orin-nano", "jet-1", "jet-2"}
    assert inv.groups == {"jetsons": ("jet-1", "orin-nano"), "arm": ("jet-2",), "jetsons2": ("jet-2",)}

    laptop = by["lab-laptop"]  # has profiles/lab-laptop.toml: starts from it, variables override it
    assert (laptop.host, laptop.user, laptop.threads) == ("10.0.0.9", "edge", 2)
    assert laptop.runtime == "onnxruntime" and laptop.call_timeout_s == 600.0

    orin = by["orin-nano"]  # profile + group vars + host vars (host wins over group wins over all)
    assert (orin.host, orin.port, orin.user) == ("orin.lab", 2222, "edge")
    assert (orin.runtime, orin.python, orin.workdir, orin.threads) == (
        "tensorrt", "/usr/bin/python3.10", "/data/edgenas", 4)

    jet1 = by["jet-1"]  # no profile file: built from the variables alone
    assert (jet1.host, jet1.port, jet1.user) == ("192.168.1.21", None, "edge")
    assert jet1.key_file == "~/.ssh/jetson_ed25519" and jet1.transport == "ssh"
    assert jet1.python == "/usr/bin/python3"  # ansible_python_interpreter (host) beats the group's
    assert (jet1.runtime, jet1.workdir, jet1.threads) == ("tensorrt", "/data/edgenas", 2)

    jet2 = by["jet-2"]  # nested children; defaults where nothing is set
    assert (jet2.host, jet2.user, jet2.runtime, jet2.threads) == ("jet-2.lab", "ubuntu", "onnxruntime", 2)
    assert [d.name for d in inv.select("arm")] == ["jet-2"]
    with pytest.raises(InputError, match="unknown group 'all'"):
        inv.select("all")


def test_a_merge_key_may_be_overridden_in_an_inventory(project, tmp_path):
    text = ("all:\n  hosts:\n    a: &base {ansible_host: a.lab, edgenas_threads: 3}\n"
            "    b:\n      <<: *base\n      ansible_host: b.lab\n")
    inv = load_inventory(project, write(tmp_path / "hosts.yml", text))
    assert [(d.name, d.host, d.threads) for d in inv.devices] == [("a", "a.lab", 3), ("b", "b.lab", 3)]


def test_a_merged_mapping_that_merges_itself_is_read_as_yaml_reads_it(project, tmp_path):
    """PyYAML rewrites a merged node in place: checked while it was built, the keys a nested merge brought in
    read as written twice, and this valid file was refused."""
    text = ("all:\n  children:\n    lab:\n      vars: &labvars\n        <<: &common {edgenas_threads: 2}\n"
            "        edgenas_threads: 4\n      hosts:\n        c:\n          ansible_host: c.lab\n"
            "  hosts:\n    a:\n      <<: *labvars\n      ansible_host: a.lab\n")
    inv = load_inventory(project, write(tmp_path / "hosts.yml", text))
    assert sorted((d.name, d.host, d.threads) for d in inv.devices) == [("a", "a.lab", 4), ("c", "c.lab", 4)]


def test_ansible_host_without_ansible_host_uses_its_name(project, tmp_path):
    path = write(tmp_path / "hosts.yml", "all:\n  hosts:\n    edge-box.lab:\n      edgenas_threads: 3\n")
    inv = load_inventory(project, path)
    assert [(d.name, d.host, d.threads) for d in inv.devices] == [("edge-box.lab", "edge-box.lab", 3)]


@pytest.mark.parametrize("text, match", [
    ("all:\n  hosts:\n    a: [1, 2\n", "malformed YAML inventory"),
    ("just a string\n", "top-level 'all:'"),
    ("ungrouped:\n  hosts:\n    a:\n", "top-level 'all:'"),
    # no host at all was read as a fleet of none (an empty table), while a fleet.toml of devices = [] is refused
    ("all: {}\n", "no hosts; an Ansible inventory needs at least one"),
    ("all:\n  hosts:\n  children:\n    jetsons:\n      hosts: {}\n", "no hosts; an Ansible inventory needs"),
    ("all:\n  children:\n    jetsons: [a, b]\n", "group 'jetsons' must be a mapping"),
    ("all:\n  hosts:\n    a:\n      ansible_host: a.lab\n      edgenas_password: hunter2\n",
     "password.*not allowed"),
    ("all:\n  hosts:\n    a:\n      ansible_host: a.lab\n      edgenas_api_token: abc\n", "api_token.*not allowed"),
    ("all:\n  hosts:\n    a:\n      ansible_host: a.lab\n      edgenas_runtime: tflite\n",
     "runtime 'tflite' is not one of"),
    ("all:\n  hosts:\n    a:\n      ansible_host: a.lab\n      edgenas_colour: red\n", "unknown key.*colour"),
    ("all:\n  hosts:\n    a:\n      ansible_host: a.lab\n      ansible_port: 70000\n", "port 70000 out of range"),
    # each was a TypeError or AttributeError (dict(**"x"), "x".items())
    ("all:\n  vars: x\n  hosts:\n    a:\n", "the vars of group 'all' must be a mapping"),
    ("all:\n  hosts: [a, b]\n", "the hosts of group 'all' must be a mapping"),
    ("all:\n  children: 3\n", "the children of group 'all' must be a mapping"),
    ("all:\n  hosts:\n    a: 7\n", "host 'a' must be a mapping"),
    ("all:\n  hosts:\n    ../x:\n      ansible_host: a.lab\n", "invalid host name '../x'"),
    ("all:\n  hosts:\n    a:\n      ansible_host: a.lab\n      edgenas_name: b\n", "host a sets edgenas_name"),
    ("all:\n  vars:\n    edgenas_transport: local\n  hosts:\n    a:\n", "host a sets edgenas_transport"),
    # PyYAML kept the last of two keys silently: the device reached was the one written last
    ("all:\n  hosts:\n    a:\n      ansible_host: a.lab\n      ansible_host: b.lab\n",
     "line 5 column 7: the key 'ansible_host' is given twice"),
    ("all:\n  hosts:\n    a: {ansible_host: a.lab}\n    a: {ansible_host: b.lab}\n", "the key 'a' is given twice"),
    # written differently, one key as PyYAML builds it (it kept the last silently)
    ("all:\n  hosts:\n    1: {ansible_host: a.lab}\n    0x1: {ansible_host: b.lab}\n", "the key '0x1' is given twice"),
    ("all:\n  vars:\n    true: 1\n    True: 2\n", "the key 'True' is given twice"),
])
def test_bad_ansible_inventory_is_one_clear_input_error(project, tmp_path, text, match):
    path = write(tmp_path / "inv.yaml", text)
    with pytest.raises(InputError, match=match) as exc:
        load_inventory(project, path)
    assert str(path) in str(exc.value)


def test_ansible_password_variables_are_refused(tmp_path):
    from edgenas.errors import InputError
    from edgenas.fleet.inventory import load_inventory
    from edgenas.project import Project

    project = Project(tmp_path)
    project.profiles_dir.mkdir()
    inv = project.profiles_dir / "inventory.yaml"
    inv.write_text("all:\n  hosts:\n    board:\n      ansible_host: 10.0.0.5\n      ansible_ssh_pass: hunter2\n")
    with pytest.raises(InputError, match="ansible_ssh_pass"):
        load_inventory(project, inv)


_JETSONS = """
    jetsons:
      vars:
        edgenas_threads: 4
      hosts:
        orin:
          ansible_user: nvidia
          ansible_port: 2222
"""
_GPU = """
    gpu:
      vars:
        edgenas_threads: 6
        edgenas_workdir: /data/gpu
      hosts:
        orin:
        xavier:
"""


@pytest.mark.parametrize("first, second", [(_JETSONS, _GPU), (_GPU, _JETSONS)], ids=["jetsons-first", "gpu-first"])
def test_ansible_host_vars_beat_group_vars_whichever_group_comes_first(project, tmp_path, first, second):
    """Ansible's precedence: all's vars, then group vars (same depth: by group name), then the host's own.
    A later group's inherited ``ansible_user: pi`` used to overwrite orin's own ``nvidia``."""
    children = textwrap.indent(textwrap.dedent(first) + textwrap.dedent(second), " " * 4)
    path = write(tmp_path / "hosts.yml", "all:\n  vars:\n    ansible_user: pi\n  children:\n" + children)
    by = {d.name: d for d in load_inventory(project, path).devices}
    assert (by["orin"].user, by["orin"].port) == ("nvidia", 2222)
    # where the host sets nothing, group vars apply; at the same depth by name, so jetsons' beat gpu's
    assert (by["orin"].threads, by["orin"].workdir) == (4, "/data/gpu")
    assert (by["xavier"].user, by["xavier"].port, by["xavier"].threads) == ("pi", None, 6)


def test_ansible_child_group_vars_beat_their_parents(project, tmp_path):
    path = write(tmp_path / "hosts.yml", """
        all:
          vars:
            edgenas_threads: 1
          children:
            zz-parent:
              vars:
                edgenas_threads: 2
                ansible_user: parent
              children:
                aa-child:
                  vars:
                    edgenas_threads: 3
                  hosts:
                    board:
            other:
              hosts:
                board:
        """)
    [board] = load_inventory(project, path).devices
    assert (board.threads, board.user) == (3, "parent")


def test_all_vars_are_the_lowest_even_under_a_group_named_before_all(project, tmp_path):
    """``all`` is depth 0, its children depth 1: a child group whose name sorts before "all" still wins."""
    path = write(tmp_path / "hosts.yml", """
        all:
          vars:
            ansible_user: root
            edgenas_threads: 1
          children:
            aa:
              vars:
                ansible_user: pi
              hosts:
                board:
        """)
    [board] = load_inventory(project, path).devices
    assert (board.user, board.threads) == ("pi", 1)


@pytest.mark.parametrize("var, value", [("ansible_host", "y$(touch${{IFS}}{marker})"),
                                        ("ansible_host", "x;touch${{IFS}}{marker};true"),
                                        ("edgenas_proxy_jump", "u@j$(touch${{IFS}}{marker})"),
                                        ("ansible_user", "u$(touch${{IFS}}{marker})")])
def test_ansible_host_names_with_shell_characters_are_refused(project, tmp_path, match_exec_config, var, value):
    """An ``ansible_host`` or ``edgenas_proxy_jump`` with '$(...)' or ';' was accepted and reached paramiko's
    ~/.ssh/config lookup, whose ``Match exec "... %h ..."`` ran it in a shell on this machine."""
    from edgenas.devices.ssh import SSHTransport

    marker = match_exec_config
    path = write(tmp_path / "hosts.yml", f"all:\n  hosts:\n    board:\n      {var}: '{value.format(marker=marker)}'\n")
    with pytest.raises(InputError, match="must be a (host|user) name") as exc:
        for device in load_inventory(project, path).devices:
            SSHTransport(device, project)
    assert "hosts.yml host board" in str(exc.value)
    assert not marker.exists()
