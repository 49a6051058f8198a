"""Reading the user's ``~/.ssh/config`` for the SSH login: paramiko's parser, with ``Include`` lines read.

paramiko reads no ``Include``: a host defined in an included file (``Include ~/.orbstack/ssh/config``,
``Include config.d/*``, as tools write them) was not found, and edgenas dialled the alias itself. Here each
``Include`` line is replaced by the files it names, as OpenSSH reads them: patterns split like a shell's
words, ``~`` expanded, a relative one under ``~/.ssh``, glob matches in sorted order, nested at most 16 deep.
Inside a ``Host`` or ``Match`` block (other than ``Host *`` and ``Match all``), OpenSSH reads an included file
only for hosts that block matches: its options before its first ``Host`` or ``Match`` line join the block,
and its own blocks are left out (they would also apply to hosts the enclosing block does not match).
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from pathlib import Path

import paramiko

from edgenas.errors import InputError

_INCLUDE = re.compile(r"\s*include(?:\s*=\s*|\s+)(.*?)\s*\Z", re.IGNORECASE)
_BLOCK = re.compile(r"\s*(?:host|match)(?:\s*=\s*|\s+)", re.IGNORECASE)
_UNIVERSAL = re.compile(r"\s*(?:host(?:\s*=\s*|\s+)\*|match(?:\s*=\s*|\s+)all)\s*(?:#.*)?", re.IGNORECASE)
MAX_DEPTH = 16  # OpenSSH's READCONF_MAX_DEPTH


def read_config(path: Path) -> paramiko.SSHConfig:
    """The parsed config (empty when there is no file); one ``InputError`` naming the file for a bad one."""
    try:
        return paramiko.SSHConfig.from_text(config_text(path)) if path.is_file() else paramiko.SSHConfig()
    except (OSError, UnicodeDecodeError, paramiko.ConfigParseError, ValueError) as exc:
        raise InputError(f"cannot read SSH config {path}: {exc}") from None


def config_text(path: Path, depth: int = 0, *, in_block: bool = False) -> str:
    """The file's text with its ``Include`` lines replaced by the text of the files they name (``in_block``:
    the file is included inside a block that does not match every host; its own blocks are left out)."""
    if depth > MAX_DEPTH:
        raise InputError(f"SSH config {path}: Include nested more than {MAX_DEPTH} deep",
                         hint="an included file includes itself, directly or through others")
    out, block = [], None
    for line in path.read_text().splitlines():
        if _BLOCK.match(line):
            if in_block:
                break
            block = None if _UNIVERSAL.fullmatch(line) else line
        include = _INCLUDE.match(line)
        if include is None:
            out.append(line)
            continue
        for pattern in shlex.split(include.group(1), comments=True):
            pattern = os.path.join(Path.home() / ".ssh", os.path.expanduser(pattern))  # an absolute one stays
            out += [config_text(Path(name), depth + 1, in_block=in_block or block is not None)
                    for name in sorted(glob.glob(pattern)) if os.path.isfile(name)]
        if block is None and not in_block:
            out.append("Host *")  # what follows applies to every host again, not to the included last block
    return "\n".join(out) + "\n"
