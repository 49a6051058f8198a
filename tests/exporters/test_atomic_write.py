"""``atomic_write_bytes``: a new file gets the mode ``open()`` would give it (the umask's), not
mkstemp's 0600 (reports and exports others should read came out private); a replaced file keeps its own."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_new_file_follows_the_umask_and_a_replaced_one_keeps_its_mode(tmp_path):
    code = ("import os, sys; os.umask(int(sys.argv[2], 8)); from exporters._io import atomic_write_bytes; "
            "p = atomic_write_bytes(sys.argv[1], b'x'); print(oct(os.stat(p).st_mode & 0o777))")
    for umask, want in (("022", "0o644"), ("077", "0o600"), ("002", "0o664")):
        path = tmp_path / f"new-{umask}.html"
        out = subprocess.run([sys.executable, "-c", code, str(path), umask], capture_output=True, text=True,
                             check=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__)))).stdout
        assert out.strip() == want, (umask, out)
    from exporters._io import atomic_write_bytes

    old = tmp_path / "old.json"
    old.write_bytes(b"{}")
    old.chmod(0o640)
    atomic_write_bytes(old, b"[]")
    assert old.read_bytes() == b"[]" and (old.stat().st_mode & 0o777) == 0o640


def test_a_failed_write_names_the_file_not_its_temp_file_or_nothing(tmp_path):
    """A full disk (here the file size limit: the same EFBIG/ENOSPC with no file name) said only "cannot write a
    file"; a read-only folder named the hidden ``.NAME.xxxx.tmp``. Run in a child: the limit is per process."""
    code = ("import errno, resource, sys; from exporters._io import atomic_write_bytes\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))\n"
            "try:\n    atomic_write_bytes(sys.argv[1], b'x' * 100000)\n"
            "except OSError as exc:\n    print(errno.errorcode[exc.errno], exc.filename)\n")
    target = tmp_path / "table.json"
    out = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__)))).stdout
    assert out.split() == ["EFBIG", str(target)], out
    assert list(tmp_path.iterdir()) == []  # no temp file left
