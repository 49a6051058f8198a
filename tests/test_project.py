"""Where a project keeps its files (``edgenas.project``), and which folder is the project."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgenas.project import Project


def test_each_folder_and_file_of_a_project_lies_where_the_docs_say(tmp_path):
    p = Project(str(tmp_path))  # a string root is a Path
    assert p.root == tmp_path and isinstance(p.root, Path)
    assert (p.profiles_dir, p.luts_dir, p.runs_dir, p.measurements_dir, p.known_hosts) == (
        tmp_path / "profiles", tmp_path / "luts", tmp_path / "runs", tmp_path / "measurements",
        tmp_path / "known_hosts")
    assert p.state_dir == tmp_path / ".edgenas" and p.block_cache == tmp_path / ".edgenas" / "blocks"
    assert p.local_workdir == tmp_path / ".edgenas" / "devices" / "local"
    assert p.local_workdir_of("jetson-1.lab_2") == tmp_path / ".edgenas" / "devices" / "jetson-1.lab_2"
    with pytest.raises(dataclasses.FrozenInstanceError):  # a value: it can key a dict, and no one moves it
        p.root = tmp_path / "other"
    assert {p: 1}[Project(tmp_path)] == 1


@pytest.mark.parametrize("name", ["", "../x", ".hidden", "a/b", "a\n", "x" * 65])
def test_a_work_dir_is_only_for_a_device_name(tmp_path, name):
    with pytest.raises(ValueError, match="not a device name"):
        Project(tmp_path).local_workdir_of(name)


def test_the_project_is_edgenas_project_or_else_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path / "link"))
    assert Project.default().root == (tmp_path / "real").resolve()  # resolved
    for unset in ("", None):
        if unset is None:
            monkeypatch.delenv("EDGENAS_PROJECT")
        else:
            monkeypatch.setenv("EDGENAS_PROJECT", unset)
        assert Project.default().root == (tmp_path / "cwd").resolve()
