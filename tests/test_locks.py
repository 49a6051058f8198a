"""Run-folder and profile locks in one process: ``flock`` locks belong to an open file, so a second open of
the lock file here is refused as a second process would be (the CLI tests use real second processes). Found
by mutation testing: the refusals of a linked, special or held lock file, the pid written for the message,
and ``run_lock_held``'s answers were checked by no test run in-process."""

from __future__ import annotations

import fcntl
import os

import pytest

from edgenas.errors import OutputError
from edgenas.locks import LOCK_NAME, file_lock, run_lock, run_lock_held, run_read


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_held_lock_refuses_a_second_holder_with_the_first_ones_pid_until_released(tmp_path):
    path = tmp_path / "x.lock"
    path.write_text("123456789012345678\n")  # a longer pid of an earlier holder is overwritten whole
    before = fds()
    with file_lock(path, "the table") as held:
        assert held == path and path.read_text() == str(os.getpid())
        for _ in range(3):
            with pytest.raises(OutputError) as exc:
                with file_lock(path, "the table"):
                    pass
            assert exc.value.message == f"the table is in use by another edgenas process (pid {os.getpid()})"
            assert exc.value.hint == "wait for it to finish, or use another folder"
        with pytest.raises(OutputError) as exc:
            with file_lock(path, "the table", hint="wait"):
                pass
        assert exc.value.hint == "wait"
    with file_lock(path, "the table"):  # released: free again
        pass
    with pytest.raises(RuntimeError):  # released when the body raises too
        with file_lock(path, "the table"):
            raise RuntimeError
    with file_lock(path, "the table"):
        pass
    assert fds() == before


@pytest.mark.parametrize("fails", [False, True])
def test_a_lock_file_found_is_left_as_it_was_and_a_new_one_keeps_the_pid(tmp_path, fails):
    """The pid is for the message while the lock is held: a lock file found (a run folder's, from its search) is
    put back as it was, bytes and time, when released, so a refused ``search --resume`` changes nothing in the
    folder. A lock file made now keeps the pid (an empty file would say "pid ?")."""
    old = tmp_path / "old.lock"
    old.write_text("4242")
    os.utime(old, ns=(1_000_000_000, 2_000_000_000))
    try:
        with file_lock(old, "the run"):
            assert old.read_text() == str(os.getpid())
            if fails:
                raise RuntimeError("refused")
    except RuntimeError:
        assert fails
    assert old.read_text() == "4242" and old.stat().st_mtime_ns == 2_000_000_000
    new = tmp_path / "new.lock"
    with file_lock(new, "the run"):
        pass
    assert new.read_text() == str(os.getpid())


def test_a_holder_that_wrote_no_pid_is_named_as_unknown(tmp_path):
    path = tmp_path / "x.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OutputError, match=r"in use by another edgenas process \(pid \?\)"):
            with file_lock(path, "the table"):
                pass
    finally:
        os.close(fd)


def test_a_lock_file_that_is_a_link_a_fifo_or_a_folder_is_refused_and_nothing_leaks(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("DATA\n")
    (tmp_path / "link").symlink_to(victim)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    before = fds()
    for name, message in (("link", "lock file {p} is a symbolic link"), ("fifo", "lock file {p} is not a regular file"),
                          ("dir", "cannot write lock file {p}: Is a directory")):
        with pytest.raises(OutputError) as exc:
            with file_lock(tmp_path / name, "x"):
                pass
        assert exc.value.message.startswith(message.format(p=tmp_path / name)), exc.value.message
    assert fds() == before and victim.read_text() == "DATA\n"


def test_run_lock_held_tells_a_held_lock_from_a_released_one(tmp_path):
    run = tmp_path / "run"
    assert run_lock_held(run) is None  # no such folder here: cannot tell
    run.mkdir()
    assert run_lock_held(run) is False and not (run / LOCK_NAME).exists()  # the probe creates nothing
    with run_lock(run) as path:
        assert path == run / LOCK_NAME
        assert run_lock_held(run) is True
        with pytest.raises(OutputError, match=f"^run folder {run} is in use"):
            with run_lock(run):
                pass
    assert run_lock_held(run) is False
    before = fds()
    (run / LOCK_NAME).unlink()
    os.mkfifo(run / LOCK_NAME)
    assert run_lock_held(run) is None
    (run / LOCK_NAME).unlink()
    (run / LOCK_NAME).symlink_to(tmp_path / "elsewhere")
    assert run_lock_held(run) is None
    assert fds() == before


def test_a_released_lock_is_free_even_while_a_forked_child_keeps_its_file_open(tmp_path):
    """Worker processes forked while a search holds its run folder share the lock file's descriptor; the
    lock is released on leaving the block (``LOCK_UN``), not when the last copy of the file is closed."""
    path = tmp_path / "x.lock"
    r, w = os.pipe()
    with file_lock(path, "the table"):
        pid = os.fork()
        if pid == 0:  # the child: wait until the parent closes the pipe, then leave at once
            try:
                os.close(w)
                os.read(r, 1)
            finally:
                os._exit(0)
    try:
        os.close(r)
        with file_lock(path, "the table"):
            pass
    finally:
        os.close(w)
        os.waitpid(pid, 0)


def test_a_lock_file_is_created_readable_by_all_writable_by_its_owner(tmp_path):
    with file_lock(tmp_path / "x.lock", "the table"):
        pass
    assert oct((tmp_path / "x.lock").stat().st_mode & 0o777) == oct(0o644 & ~current_umask())


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_run_read_shares_the_lock_refuses_a_held_one_and_creates_nothing(tmp_path):
    """``runs import`` of a running search's folder saved a snapshot over the search's own final record."""
    run = tmp_path / "run"
    run.mkdir()
    before = fds()
    with run_read(run), run_read(run):  # never locked: nothing to share, nothing made; two readers at once
        assert not (run / LOCK_NAME).exists()
    with run_lock(run):  # a search writes it
        with pytest.raises(OutputError, match=rf"^run folder {run} is being written by a running search "
                                              rf"\(pid {os.getpid()}\) \(a search records itself"):
            with run_read(run):
                pass
    with run_read(run):  # a search (a resume) that starts while the folder is read is refused, as by a writer
        assert run_lock_held(run) is False  # a reader is no search
        with pytest.raises(OutputError, match="is in use by another edgenas process"):
            with run_lock(run):
                pass
    assert run_lock_held(run) is False and fds() == before
    (run / LOCK_NAME).unlink()
    os.mkfifo(run / LOCK_NAME)  # no search made this: no lock to share, and the read does not hang on it
    with run_read(run):
        pass
    assert fds() == before
