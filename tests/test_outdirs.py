"""Output folders: refused before anything is written, removed again when the command fails, and write
failures (a full disk, no file descriptor left) told as one ``OutputError`` with the remedy that fits."""

from __future__ import annotations

import errno
import os

import pytest

from edgenas import outdirs
from edgenas.errors import InputError, OutputError
from edgenas.outdirs import (check_out_dir, check_out_file, disk_error, escaped_error, fd_error, fds_exhausted,
                             new_out_dir, out_of_fds)


def test_an_out_folder_that_is_a_file_lies_under_one_or_under_a_dangling_link_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is an existing file, not a folder"):
        check_out_dir(tmp_path / "f")
    with pytest.raises(OutputError, match=f"--res {tmp_path}/f/a/b lies under {tmp_path}/f, which is a file"):
        check_out_dir(tmp_path / "f" / "a" / "b", "--res")
    (tmp_path / "dead").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match=f"^--out {tmp_path}/dead is a symbolic link to a missing target"):
        check_out_dir(tmp_path / "dead")
    with pytest.raises(OutputError, match=f"^--out {tmp_path}/dead/a: {tmp_path}/dead is a symbolic link"):
        check_out_dir(tmp_path / "dead" / "a")
    assert check_out_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert check_out_dir(tmp_path) == tmp_path and not (tmp_path / "new").exists()


def test_an_out_folder_whose_name_is_not_utf8_text_is_refused_before_it_is_made(tmp_path):
    odd = tmp_path / "caf\udce9"  # the byte 0xe9 of Latin-1, as a non-UTF-8 file system encoding hands it over
    with pytest.raises(InputError, match=f"--out {tmp_path}/caf\ufffd has a name that is not UTF-8 text"):
        check_out_dir(odd)
    with pytest.raises(InputError, match="not UTF-8 text"):
        with new_out_dir(odd / "run"):
            pass
    assert os.listdir(tmp_path) == []


def test_an_out_folder_in_a_folder_this_user_cannot_write_is_refused(tmp_path, monkeypatch):
    asked = []  # (root may write anywhere: os.access is asked, and says no)
    monkeypatch.setattr(outdirs.os, "access", lambda path, mode: asked.append((path, mode)) or False)
    with pytest.raises(OutputError, match=f"--out {tmp_path}/a/b: folder {tmp_path} is not writable"):
        check_out_dir(tmp_path / "a" / "b")
    assert asked == [(tmp_path, os.W_OK | os.X_OK)]


def test_an_out_file_under_a_file_or_a_dangling_link_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match=f"--out {tmp_path}/f/a/r.json lies under {tmp_path}/f, which is a file"):
        check_out_file(tmp_path / "f" / "a" / "r.json")
    (tmp_path / "dead").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match="symbolic link to a missing target"):
        check_out_file(tmp_path / "dead" / "r.json")
    assert check_out_file(tmp_path / "a" / "r.json") == tmp_path / "a" / "r.json" and not (tmp_path / "a").exists()


def test_a_failed_command_leaves_no_folder_it_created(tmp_path):
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError):
        with new_out_dir(tmp_path / "kept" / "a" / "b") as p:
            assert p.is_dir() and p == tmp_path / "kept" / "a" / "b"
            raise RuntimeError("the search failed")
    assert sorted(os.listdir(tmp_path)) == ["kept"] and os.listdir(tmp_path / "kept") == []
    with pytest.raises(RuntimeError):  # a folder it wrote into stays, with its parents
        with new_out_dir(tmp_path / "kept" / "c" / "d") as p:
            (p / "result.json").write_text("{}")
            raise RuntimeError
    assert os.listdir(tmp_path / "kept" / "c" / "d") == ["result.json"]
    with new_out_dir(tmp_path / "ok") as p:
        pass
    assert p.is_dir()


def test_a_failed_command_removes_a_folder_holding_only_its_leftovers(tmp_path):
    for extra, leftovers in (([], (".gone", ".lock")), ([], (".lock",)), (["other.txt"], (".lock",))):
        out = tmp_path / f"run{len(extra)}{len(leftovers)}"
        with pytest.raises(KeyboardInterrupt):
            with new_out_dir(out, leftovers=leftovers) as p:
                for name in [".lock", *extra]:
                    (p / name).write_text("")
                raise KeyboardInterrupt
        assert (sorted(os.listdir(out)) if out.exists() else None) == (sorted([".lock", *extra]) if extra else None)
    (tmp_path / "mine").mkdir()  # a folder that was there before keeps its files
    with pytest.raises(RuntimeError):
        with new_out_dir(tmp_path / "mine", leftovers=(".lock",)) as p:
            (p / ".lock").write_text("")
            raise RuntimeError
    assert os.listdir(tmp_path / "mine") == [".lock"]


def test_a_folder_that_cannot_be_made_is_one_output_error_and_nothing_stays(tmp_path, monkeypatch):
    real = type(tmp_path).mkdir

    def mkdir(self, *a, **kw):
        if self.name == "b":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(type(tmp_path), "mkdir", mkdir)
    with pytest.raises(OutputError, match=f"cannot write --out folder {tmp_path}/a/b/c: the disk is full") as exc:
        with new_out_dir(tmp_path / "a" / "b" / "c"):
            pass
    assert exc.value.hint == "free some space, then run it again" and os.listdir(tmp_path) == []


def test_an_out_path_with_a_name_too_long_is_an_output_error_and_leaves_no_folder(tmp_path):
    """Said by the checks of outputs themselves (``escaped_error`` calls an escaped ENAMETOOLONG an input's)."""
    long = "x" * 256
    with pytest.raises(OutputError, match=f"^cannot write --res folder {tmp_path}/{long}: File name too long"):
        check_out_dir(tmp_path / long, "--res")
    with pytest.raises(OutputError, match=f"^cannot write --out {tmp_path}/{long}/r.html: File name too long"):
        check_out_file(tmp_path / long / "r.html")
    with pytest.raises(OutputError, match=f"^cannot write --out folder {tmp_path}/a/{long}: File name too long"):
        with new_out_dir(tmp_path / "a" / long):
            pass
    assert os.listdir(tmp_path) == []  # `a`, made before the name too long failed, was left behind


def test_an_os_error_no_caller_translated_is_an_inputs_only_for_a_name_too_long():
    long = escaped_error(OSError(errno.ENAMETOOLONG, "File name too long", "/x/aaa"))
    assert isinstance(long, InputError) and long.exit_code == 2
    assert long.message == "cannot read /x/aaa: File name too long" and "longer than the file system" in long.hint
    full = escaped_error(OSError(errno.ENOSPC, "No space left on device", "/x/r.json"))
    assert isinstance(full, OutputError) and full.message.startswith("cannot write /x/r.json: the disk is full")
    assert isinstance(escaped_error(OSError(errno.EACCES, "Permission denied", "/x")), OutputError)
    assert escaped_error(OSError(errno.EMFILE, "Too many open files")).hint == outdirs.FD_HINT
    assert isinstance(escaped_error(OSError(errno.ENAMETOOLONG, "File name too long")), OutputError)  # no name


@pytest.mark.parametrize("code, remedy", [
    (errno.ENOSPC, "free some space"), (errno.EDQUOT, "free some space"), (errno.EFBIG, "free some space"),
    (errno.EMFILE, outdirs.FD_HINT), (errno.ENFILE, outdirs.FD_HINT),
    (errno.EISDIR, "a folder stands where the file goes: move it away"),
    (errno.ENOTDIR, "a file stands where a folder goes: move it away"),
    (errno.EACCES, "check the path and its permissions"), (errno.EROFS, "check the path and its permissions"),
])
def test_each_write_failure_gets_its_own_remedy(code, remedy):
    err = disk_error(OSError(code, os.strerror(code), "/x/r.json"), "the results", then="resume with --resume")
    assert err.hint == f"{remedy}, then resume with --resume" and err.message.endswith("(/x/r.json)")
    full = code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    assert ("the disk is full" in err.message) is full and (os.strerror(code) in err.message) is not full


def test_a_write_failure_names_its_file_but_not_a_descriptor():
    assert disk_error(OSError(errno.EACCES, "Permission denied", "/x"), "the results").message == (
        "cannot write the results: Permission denied (/x)")
    assert disk_error(OSError("odd"), "the results").message == "cannot write the results: odd"
    assert disk_error(OSError(errno.ENOSPC, "full", 7), "the table").message == (
        "cannot write the table: the disk is full (or the file size limit was reached)")
    assert disk_error(OSError(errno.EIO, "I/O error"), "x", "see dmesg").hint == "see dmesg"
    denied = disk_error(OSError(errno.EACCES, "denied"), "x")
    assert denied.hint == "check the path and its permissions, then run it again"
    assert str(fd_error(OSError(errno.EMFILE, "Too many", "/a/b"))).startswith("too many open files (opening /a/b) (")
    assert fd_error(OSError(errno.EMFILE, "Too many", 3)).message == "too many open files"
    assert fd_error(OSError(errno.EMFILE, "Too many")).hint == outdirs.FD_HINT


def test_running_out_of_file_descriptors_is_found_behind_other_errors():
    emfile = OSError(errno.EMFILE, "Too many open files")
    assert out_of_fds(emfile) is emfile and out_of_fds(OSError(errno.ENFILE, "x")) is not None
    assert out_of_fds(OSError(errno.ENOENT, "x")) is None and out_of_fds(None) is None
    for link in ("__cause__", "__context__"):
        outer = ValueError("cannot read")
        setattr(outer, link, emfile)
        assert out_of_fds(outer) is emfile
    kept = ValueError("raised from None")
    kept.fd_cause = emfile
    assert out_of_fds(kept) is emfile
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a  # a loop ends
    assert out_of_fds(a) is None


def test_file_descriptors_are_exhausted_when_the_share_of_the_limit_is_in_use(monkeypatch):
    monkeypatch.setattr(outdirs.os, "listdir", lambda path: [str(i) for i in range(30)])  # 30 open
    monkeypatch.setattr(outdirs.resource, "getrlimit", lambda what: (40, 4000))  # the soft limit counts
    got = fds_exhausted()
    assert got is not None and got.errno == errno.EMFILE and "(30 of 40 in use)" in str(got)
    assert fds_exhausted(share=0.76) is None and fds_exhausted(share=0.75) is not None  # 30 >= 0.75 * 40
    monkeypatch.setattr(outdirs.resource, "getrlimit", lambda what: (outdirs.resource.RLIM_INFINITY,) * 2)
    assert fds_exhausted(share=0.0) is None
    monkeypatch.setattr(outdirs.resource, "getrlimit", lambda what: (1, 1))
    monkeypatch.setattr(outdirs.os.path, "isdir", lambda path: False)  # no /proc: none counted
    assert fds_exhausted(share=1.0) is None

    def no_fd(*a):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(outdirs.os, "open", no_fd)
    assert fds_exhausted().errno == errno.EMFILE
    monkeypatch.setattr(outdirs.os, "open", lambda *a: (_ for _ in ()).throw(OSError(errno.EACCES, "no")))
    assert fds_exhausted() is None
