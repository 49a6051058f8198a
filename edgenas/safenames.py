"""Names that become parts of host paths: what a device, a file or a user may send, checked before use.

A device is untrusted input. A device name, a space name, a fingerprint hash or a LUT file name that
reaches ``Path(...) / name`` must be one plain path component of a known shape: no ``/``, never ``..`` or ``.``,
no leading dot, no absolute path, nothing but letters, digits, ``.``, ``_`` and ``-``.
"""

from __future__ import annotations

import os
import re

from edgenas.errors import InputError

#: profile / device names and space names (``profiles.py`` and the few-shot model records use it too)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
#: a fingerprint hash: hex (the agent sends a SHA-256 hexdigest; LUT file names use its first 12)
HASH_RE = re.compile(r"^[0-9a-f]{12,128}\Z")
#: a whole SHA-256 in hex
SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
#: a LUT entry's block key (``SearchSpace.key_vocab``, OFA's tables): printable, no spaces or markup
BLOCK_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+=,-]{0,255}\Z")
#: a LUT file name: ``SPACE-FPHASH12.json`` (see ``latency.store.lut_filename``)
LUT_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}-[0-9a-f]{12}\.json\Z")


def _plain(value: object) -> bool:
    return isinstance(value, str)


def check_name(value: object, what: str = "name") -> str:
    if not (_plain(value) and NAME_RE.match(value)):  # type: ignore[arg-type]
        raise InputError(f"invalid {what} {value!r}",
                         hint="letters, digits, '.', '_' and '-' only, starting with a letter or digit, "
                              "at most 64 characters")
    return value  # type: ignore[return-value]


def check_hash(value: object, what: str = "fingerprint hash") -> str:
    if not (isinstance(value, str) and HASH_RE.match(value)):
        raise InputError(f"invalid {what} {value!r}", hint="expected a lower-case hex digest")
    return value


def check_utf8_path(path: "str | os.PathLike[str]", what: str) -> None:
    """A path edgenas records (run folders and tables go into JSON files and the experiment database) must be
    UTF-8 text: a name in another encoding, or any non-ASCII name under a locale without UTF-8 (``LC_ALL=C``
    with ``PYTHONUTF8=0``), reaches Python as lone surrogates that no file or database can store (a search
    ran to the end, then failed to record itself: an internal error)."""
    text = os.path.abspath(os.fspath(path))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise InputError(f"{what} {shown} has a name that is not UTF-8 text here (bytes of another encoding, "
                         "or a locale without UTF-8)",
                         hint="rename it with UTF-8 characters, or run in a UTF-8 locale (LC_ALL=C.UTF-8)") from None
