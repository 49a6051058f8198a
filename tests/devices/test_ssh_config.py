"""``~/.ssh/config``'s Include lines (paramiko reads none): no server needed."""

from __future__ import annotations

import pytest

from edgenas.devices.login import SSHTarget, resolve_target
from edgenas.devices.profiles import DeviceProfile
from edgenas.devices.ssh_config import config_text
from edgenas.errors import InputError


def test_a_host_defined_in_an_included_file_is_found_and_lines_after_the_include_are_the_files_again(
        tmp_path, monkeypatch):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b.conf").write_text("Host myjet\n  HostName 10.0.0.9\n  User late\n")
    (tmp_path / "conf.d" / "a.conf").write_text(f"Include {tmp_path}/nested.conf\nHost myjet\n  Port 2200\n")
    (tmp_path / "conf.d" / "skipped.txt").write_text("Host myjet\n  Port 1\n")
    (tmp_path / "nested.conf").write_text("Host myjet\n  User jetson\n")
    config = tmp_path / "ssh_config"
    config.write_text(f"Include = \"{tmp_path}/conf.d/*.conf\" {tmp_path}/none-*.conf  # comment\n"
                      "IdentityFile /keys/all\n")
    monkeypatch.setenv("EDGENAS_SSH_CONFIG", str(config))
    # first value wins, files in sorted order: a.conf (and nested.conf inside it) before b.conf
    assert resolve_target(DeviceProfile(name="cfg", host="myjet")) == SSHTarget(
        "10.0.0.9", 2200, "jetson", ("/keys/all",), None, f"ProxyJump in {config} for myjet")
    assert resolve_target(DeviceProfile(name="cfg", host="other")).key_files == ("/keys/all",)  # every host's


def test_an_include_inside_a_host_block_adds_options_to_that_block_only(tmp_path, monkeypatch):
    """As OpenSSH reads it: the included file counts only for hosts the enclosing block matches."""
    (tmp_path / "inner.conf").write_text("User inner\nHost myjet\n  HostName 10.0.0.4\n")
    config = tmp_path / "ssh_config"
    config.write_text(f"Host other\n  Include {tmp_path}/inner.conf\n  Port 2201\nHost *\n  Include "
                      f"{tmp_path}/inner.conf\n")
    monkeypatch.setenv("EDGENAS_SSH_CONFIG", str(config))
    other = resolve_target(DeviceProfile(name="cfg", host="other"))
    assert (other.user, other.port, other.hostname) == ("inner", 2201, "other")
    myjet = resolve_target(DeviceProfile(name="cfg", host="myjet"))  # Host *: the file is read for every host
    assert (myjet.user, myjet.port, myjet.hostname) == ("inner", 22, "10.0.0.4")


def test_a_relative_include_is_under_the_users_ssh_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh" / "config.d").mkdir(parents=True)
    (tmp_path / ".ssh" / "config.d" / "jet").write_text("Host myjet\n  HostName 10.0.0.3\n")
    config = tmp_path / "elsewhere.conf"
    config.write_text("Include config.d/*\nInclude ~/.ssh/config.d/jet\n")
    assert config_text(config) == "Host myjet\n  HostName 10.0.0.3\n\nHost *\n" * 2


@pytest.mark.parametrize("line, message", [
    ("Include {self}", "Include nested more than 16 deep"),
    ("Include \"unclosed", "No closing quotation"),
])
def test_an_include_loop_or_a_bad_include_line_is_one_input_error_naming_the_file(tmp_path, monkeypatch, line,
                                                                                  message):
    config = tmp_path / "ssh_config"
    config.write_text(line.format(self=config) + "\n")
    monkeypatch.setenv("EDGENAS_SSH_CONFIG", str(config))
    with pytest.raises(InputError, match=message) as exc:
        resolve_target(DeviceProfile(name="cfg", host="myjet"))
    assert str(config) in str(exc.value)


def test_includes_nest_sixteen_deep_as_in_openssh_and_a_comment_on_an_include_line_names_no_file(
        tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "comment").write_text("Host myjet\n  User from-a-comment\n")
    files = [tmp_path / f"f{i}.conf" for i in range(18)]
    for here, there in zip(files, files[1:]):
        here.write_text(f"Include {there}  # comment\n")
    files[16].write_text("Host myjet\n  User deep\n")  # the main file is depth 0: this one is 16 deep
    files[0].write_text("Include  # no file: ~/.ssh/comment is not read\n" + files[0].read_text())
    monkeypatch.setenv("EDGENAS_SSH_CONFIG", str(files[0]))
    assert resolve_target(DeviceProfile(name="cfg", host="myjet")).user == "deep"
    files[16].write_text(f"Include {files[17]}\n")
    files[17].write_text("Host myjet\n  User deeper\n")
    with pytest.raises(InputError, match=f"SSH config {files[17]}: Include nested more than 16 deep"):
        resolve_target(DeviceProfile(name="cfg", host="myjet"))
