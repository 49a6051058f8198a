"""Limits on input files read into memory: size and nesting depth, each one clear error; and the type
predicates the readers of edited files share (``is_number``, ``is_finite``, ``is_whole``, ``is_count``).

A 60 MB architecture file used to be read whole (934 MB of memory); a JSON file nested 200,000 deep
raised RecursionError. Every file edgenas reads into memory goes through ``read_bytes_limited`` and
JSON through ``loads_json_limited``. ``EDGENAS_MAX_INPUT_MB`` raises the size limit for unusual tables.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

from edgenas.errors import InputError


def _limit_mb() -> tuple[float, str | None]:
    """``EDGENAS_MAX_INPUT_MB`` (default 32), and what is wrong with it if it is not a size: then the
    default holds and ``check_env`` (the CLI calls it first) says so, instead of an import failing."""
    raw = os.environ.get("EDGENAS_MAX_INPUT_MB")
    if raw is None:
        return 32.0, None
    try:
        mb = float(raw)
    except ValueError:
        mb = math.nan
    if not (math.isfinite(mb) and 0 < mb <= 1 << 20):
        return 32.0, f"EDGENAS_MAX_INPUT_MB must be a number of MB above 0 and at most 1048576, got {raw!r}"
    return mb, None


_LIMIT_MB, _ENV_PROBLEM = _limit_mb()
#: the largest JSON/TOML/YAML input read into memory (the largest LUT we know, ofa-mbv3's, is < 2 MB)
MAX_JSON_BYTES = int(_LIMIT_MB * (1 << 20))
#: an architecture record is a few hundred bytes
MAX_ARCH_BYTES = 1 << 20
#: deeper nesting than this is not an edgenas record
MAX_DEPTH = 64
#: more lists and tables than this are not an edgenas record (ofa-mbv3's LUT, the largest, has about 10,000)
MAX_NODES = 1_000_000
#: the float32 tensors of a dataset (an image folder at the resolution asked for, a .npz file's arrays);
#: loading holds two or three copies at its peak
MAX_DATASET_BYTES = 4 << 30
#: the largest evaluation number, seed or count a record may hold (SQLite's INTEGER is 64-bit)
MAX_INT = 2 ** 63 - 1
#: the largest learning rate a training loop takes: far past any that trains (those diverge, and say so), and
#: inside float32 after torch's own scaling (Adam's lr / bias correction): 1e39 overflowed at the first step
MAX_LEARNING_RATE = 1e30
#: the smallest integer ``float()`` overflows on (halfway from the largest float to 2**1024 rounds up, to even):
#: JSON, YAML and TOML read 400 digits as an int, and no edgenas number is one
FIRST_OVERFLOW = 2 ** 1024 - 2 ** 970
#: the latest time (seconds since 1970) a record may state: the end of the year 9999 UTC, the last a date shows.
#: A LUT dated 1e300 was "dated ?, in the future", and the newest table by its date, chosen over every real one
MAX_TIME = 253402300799.0


#: sizes from a quarter MB up are stated in MB (of 2^20 bytes), smaller ones in bytes
_MB_FROM = 1 << 18


def size_text(n: int) -> str:
    """``n`` bytes as a message states a file's size: MB to a tenth ("3.0 MB"), or bytes under a quarter MB
    ("1,000 bytes", where "0.0 MB" said nothing)."""
    return f"{n / (1 << 20):.1f} MB" if n >= _MB_FROM else f"{n:,} bytes"


def limit_text(n: int, *, before_limit: bool = True) -> str:
    """A size limit of ``n`` bytes: "32 MB", "0.25 MB", or under a quarter MB in bytes ("1,000-byte" before the
    word "limit", else "1,000 bytes"): EDGENAS_MAX_INPUT_MB=0.0000001 is a limit of 0 bytes, which "the 0 MB
    limit" hid, and 1,000 bytes were "0.000953674 MB"."""
    if n >= _MB_FROM:
        return f"{n / (1 << 20):g} MB"
    return f"{n:,}-byte" if before_limit else f"{n:,} bytes"


def over_limit(size: int, limit: int) -> str:
    """"SIZE, over the LIMIT limit": in MB where they show the size over the limit, else in bytes (a limit of 0
    bytes was "0.0 MB, over the 0 MB limit"; a file a byte over 32 MB "32.0 MB, over the 32 MB limit")."""
    if limit >= _MB_FROM and float(f"{size / (1 << 20):.1f}") > float(f"{limit / (1 << 20):g}"):  # as printed
        return f"{size_text(size)}, over the {limit_text(limit)} limit"
    return f"{size:,} bytes, over the {limit:,}-byte limit"


def check_env() -> None:
    """One ``InputError`` for a malformed ``EDGENAS_MAX_INPUT_MB``."""
    if _ENV_PROBLEM:
        raise InputError(_ENV_PROBLEM, hint="unset it, or set e.g. EDGENAS_MAX_INPUT_MB=64")


def is_number(v: Any) -> bool:
    """An int or float (not a bool): what a score, latency or time may be (NaN and infinities too)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_finite(v: Any) -> bool:
    """A number that is neither NaN nor infinite (nor an int too large for a float: JSON reads 400 digits as
    an int, and ``math.isfinite`` cannot convert it)."""
    try:
        return is_number(v) and math.isfinite(v)
    except OverflowError:
        return False


def is_whole(v: Any) -> bool:
    """An int (not a bool, not a float) >= 0."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def port_number(text: str) -> int | None:
    """The TCP port ``text`` names (ASCII digits, 1-65535), else None: ``int()`` reads other scripts' digits and
    refuses more than 4,300 of them with a ``ValueError``, and the socket library wraps 71915 round to 6379."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 5 and 0 < int(text) < 65536 else None


def is_schema(v: Any, number: int) -> bool:
    """A record's ``schema`` is ``number``: an int (JSON's ``true`` and ``1.0`` equal 1 in Python)."""
    return type(v) is int and v == number


def is_count(v: Any) -> bool:
    """A whole number from 0 to ``MAX_INT`` (an int, or a float such as ``3.0``)."""
    return is_finite(v) and float(v).is_integer() and 0 <= v <= MAX_INT


def open_regular(path: str | os.PathLike, what: str, hint: str = "check the path") -> BinaryIO:
    """``path`` opened for reading if it is a regular file, else one ``InputError``. It is opened with
    ``O_NONBLOCK``, so a FIFO is seen for what it is instead of blocking the command, and a device
    (``/dev/zero`` never ends) is refused before it is read. A folder raises ``IsADirectoryError``, and a
    missing or unreadable file its ``OSError``, for the caller to name."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            raise InputError(f"{what} {path} is not a regular file (a FIFO, a device or a socket)", hint=hint)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def plural(noun: str) -> str:
    """``noun`` + s, a consonant's y as ies ("YAML inventories", not "inventorys")."""
    return f"{noun[:-1]}ies" if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou") else f"{noun}s"


def read_bytes_limited(path: str | os.PathLike, what: str, limit: int = MAX_JSON_BYTES, *,
                       limit_of: str | None = None, hint: str = "check the path; this is not an edgenas record"
                       ) -> bytes:
    """The bytes of ``path`` (``open_regular``), refusing (without reading it) a file larger than ``limit``:
    "over the limit for ``limit_of``" (default: ``what`` + s), with ``hint``."""
    path = Path(path)
    limit_of = limit_of or plural(what)
    try:
        with open_regular(path, what) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                if limit == MAX_JSON_BYTES and _LIMIT_MB < 32:  # the setting, not the file, may be what is wrong
                    hint = f"{hint}; EDGENAS_MAX_INPUT_MB={_LIMIT_MB:g} lowered the limit from 32 MB"
                raise InputError(f"{what} {path} is {over_limit(size, limit)} for {limit_of}", hint=hint)
            chunks, total = [], 0  # in steps: fh.read(limit + 1) would allocate the whole limit each time
            while total <= limit:
                chunk = fh.read(min(1 << 20, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            data = b"".join(chunks)
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}", hint="check the path") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a folder, not a file", hint="check the path") from None
    except PermissionError:
        raise InputError(f"cannot read {what} {path}: permission denied") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:  # grew while we read, or a special file
        raise InputError(f"{what} {path} is over the {limit_text(limit)} limit for {limit_of}")
    return data


def read_table_bytes(path: str | os.PathLike, what: str = "benchmark table") -> bytes:
    """The bytes of a CSV table: a regular file of at most ``MAX_JSON_BYTES`` (``EDGENAS_MAX_INPUT_MB``),
    read by ``read_bytes_limited``: a FIFO, a device or a folder is one ``InputError``, never a hang or a
    read without end."""
    mb = MAX_JSON_BYTES / (1 << 20)
    return read_bytes_limited(path, what, MAX_JSON_BYTES, limit_of="tables",
                              hint=f"check the path; a larger table needs EDGENAS_MAX_INPUT_MB above {mb:g}")


def check_depth(obj: Any, where: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES, *,
                values: bool = True) -> Any:
    """Walk ``obj`` iteratively; nesting deeper than ``max_depth`` is an ``InputError``, as is a value no
    edgenas record holds and later code fails on: an integer a float cannot hold (YAML and TOML read 400
    digits as an int; ``float()`` of it was an internal OverflowError in the checks after) and a string or
    key with a lone surrogate (YAML's ``"\\ud800"``; writing it as UTF-8 was an internal UnicodeEncodeError).
    A container met again no deeper is not walked again: YAML aliases share one object, and a 561-byte file
    of nine levels of ten aliases each (a "billion laughs") is 10^9 nodes when walked as a tree, which hung
    the command. ``values=False``: the values are not looked at (``loads_json`` has refused those already)."""
    deepest: dict[int, int] = {}  # id -> the deepest level a container was walked at
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if values and (problem := _value_problem(o)):
            raise InputError(f"{where}: {problem}", hint="this is not an edgenas record")
        if isinstance(o, (dict, list)):
            if d > max_depth:
                raise InputError(f"{where}: nested more than {max_depth} levels deep",
                                 hint="this is not an edgenas record")
            if deepest.get(id(o), 0) >= d:
                continue
            deepest[id(o)] = d
            if len(deepest) > max_nodes:
                raise InputError(f"{where}: more than {max_nodes:,} lists and tables",
                                 hint="this is not an edgenas record")
            if values and isinstance(o, dict):
                stack.extend((k, d + 1) for k in o if type(k) is not str or not k.isascii())
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return obj


def _value_problem(o: Any) -> str | None:
    """What is wrong with a single value (see ``check_depth``), or None."""
    if type(o) is int:
        return None if -FIRST_OVERFLOW < o < FIRST_OVERFLOW else "a number too large to read"
    if type(o) is str and not o.isascii():
        try:
            o.encode("utf-8")
        except UnicodeEncodeError:
            return "text that is not Unicode (a lone surrogate such as \\ud800)"
    return None


class UnreadableValue(ValueError):
    """A JSON value that parses but no edgenas record holds (see ``loads_json``): a ``ValueError``, as
    malformed JSON is, so that every reader's handling of malformed JSON applies."""


class TooDeep(UnreadableValue):
    """JSON nested deeper than ``json.loads`` reads (its ``RecursionError``, which readers that catch only
    ``ValueError`` let through as an internal error)."""


class DuplicateKey(UnreadableValue):
    """A key given twice in one JSON object: ``json.loads`` keeps the last one silently (an architecture file's
    second ``"d"`` was the one exported, a LUT's second ``"threads"`` the one used), as PyYAML did before
    ``_unique_key_loader``; tomllib refuses them itself."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' ``object_pairs_hook`` for documents: the object, or ``DuplicateKey`` naming the key.
    Building the dict and comparing lengths is the whole cost for an object without repeats."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(f"the key {_short_repr(key)} is given twice in one object")
            seen.add(key)
    return obj


def _float_sized_int(text: str) -> int:
    v = int(text)
    if not -FIRST_OVERFLOW < v < FIRST_OVERFLOW:
        raise UnreadableValue("a number too large to read")
    return v


#: every digit a '0', any other byte a space: 309 zeros in a row after ``translate`` are an integer of 309
#: digits or more (``bytes.find`` finds them ten times faster than a regular expression scans for digits)
_DIGITS_AS_ZEROS = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
#: an escaped surrogate (\ud800-\udfff), or one in the text itself (UTF-8 with surrogatepass: ED A0-BF ..)
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def loads_json(data: bytes | str, *, unique_keys: bool = False) -> Any:
    """``json.loads`` that refuses, as ``UnreadableValue`` (a ``ValueError``, as malformed JSON is), what JSON
    allows and later code fails on deep in its checks: an integer a float cannot hold (``float()``,
    ``math.isfinite`` and numpy raise ``OverflowError``) and a lone surrogate (``"\\ud800"``: writing the
    string as UTF-8 raises ``UnicodeEncodeError``; a pair, an emoji, is fine). (Python itself refuses ints
    of more than 4,300 digits, as a ``ValueError``.) Only text holding 309 digits in a row or a surrogate is
    looked at closer, so ordinary records parse at ``json.loads``' speed (the two scans take about a tenth
    of the parse). ``unique_keys``: a key given twice in one object is a ``DuplicateKey`` (documents; the
    line logs, read a line at a time, are left at ``json.loads``' own speed)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    long_int = raw.translate(_DIGITS_AS_ZEROS).find(b"0" * 309) >= 0
    hook = _unique_keys if unique_keys else None
    try:
        if not long_int and _SURROGATE.search(raw) is None:
            return json.loads(data, object_pairs_hook=hook)
        obj = json.loads(data, object_pairs_hook=hook, parse_int=_float_sized_int if long_int else None)
    except RecursionError:
        raise TooDeep("nested too deeply") from None
    stack = [obj]
    while stack:  # (json.loads has bounded the depth: deeper is a RecursionError)
        o = stack.pop()
        if isinstance(o, dict):
            stack.extend(o)
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
        elif (problem := _value_problem(o)) is not None:
            raise UnreadableValue(problem)
    return obj


def loads_json_limited(data: bytes | str, where: str, max_depth: int = MAX_DEPTH, *, unique_keys: bool = False
                       ) -> Any:
    """``json.loads`` with the depth limit; malformed JSON is one ``InputError`` naming ``where``, as is (with
    ``unique_keys``: a document, not a log line or a database value) a key given twice in one object."""
    try:
        obj = loads_json(data, unique_keys=unique_keys)
    except UnicodeDecodeError:
        raise InputError(f"{where}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed {where}: {exc.msg} at line {exc.lineno} column {exc.colno}",
                         hint="fix the JSON syntax") from None
    except DuplicateKey as exc:
        raise InputError(f"{where}: {exc}", hint="keep one of them: edgenas does not guess which was meant") from None
    except UnreadableValue as exc:  # too large for a float, not text, or nested too deeply
        raise InputError(f"{where}: {exc}", hint="this is not an edgenas record") from None
    except ValueError:  # an integer of more than 4,300 digits (Python's limit)
        raise InputError(f"{where}: a number too large to read", hint="this is not an edgenas record") from None
    return check_depth(obj, where, max_depth, values=False)


@functools.lru_cache(maxsize=1)
def _unique_key_loader():
    """A ``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last one silently;
    in an inventory that is two ``ansible_host`` lines, and the device reached is the one written last). The
    mappings are checked as written, on the composed node tree before anything is built: PyYAML rewrites a
    merged node in place (``<<: *base``), so keys a merge brings in, which may be overridden, are never seen
    as written twice. Each node is checked once (aliases share nodes: a "billion laughs" stays cheap)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_document(self, node):
            seen_nodes: set[int] = set()
            stack = [node]
            while stack:
                n = stack.pop()
                if id(n) in seen_nodes:
                    continue
                seen_nodes.add(id(n))
                if isinstance(n, yaml.MappingNode):
                    keys: set = set()
                    for key_node, value_node in n.value:
                        stack.extend((key_node, value_node))
                        if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                            continue
                        # as PyYAML builds it: `true`/`True`, `1`/`0x1`, `~`/`null` are one key, and one of them
                        # was kept silently
                        key = key_node.value if key_node.tag == "tag:yaml.org,2002:str" else \
                            self.construct_object(key_node)
                        try:
                            hash(key)
                        except TypeError:
                            continue
                        if key in keys:
                            raise yaml.constructor.ConstructorError(
                                None, None, f"the key {_short_repr(key_node.value)} is given twice in one mapping",
                                key_node.start_mark)
                        keys.add(key)
                elif isinstance(n, yaml.SequenceNode):
                    stack.extend(n.value)
            return super().construct_document(node)

    return UniqueKeyLoader


def _short_repr(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 80 else text[:77] + "..."


def load_yaml_limited(path: str | os.PathLike, what: str, hint: str = "fix the YAML syntax") -> Any:
    """``yaml.safe_load`` of a size-limited file; a syntax error names the line and column, as does a key given
    twice in one mapping."""
    import yaml

    data = read_bytes_limited(path, what)
    try:
        obj = yaml.load(data.decode("utf-8"), Loader=_unique_key_loader())  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError:
        raise InputError(f"cannot read {what} {path}: not UTF-8 text") from None
    except RecursionError:
        raise InputError(f"malformed {what} {path}: nested too deeply", hint=hint) from None
    except ValueError:  # an integer of more than 4,300 digits (Python's limit on int parsing)
        raise InputError(f"{what} {path}: a number too large to read", hint="this is not an edgenas record") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise InputError(f"malformed {what} {path}{at}: {problem}", hint=hint) from None
    return check_depth(obj, f"{what} {path}")


def check_seed(seed: object, flag: str = "--seed") -> int:
    """Seeds are integers in [0, 2**63): numpy's generators refuse negative ones."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
        raise InputError(f"{flag} must be an integer from 0 to 2**63-1, got {seed!r}", hint="e.g. --seed 0")
    return seed


def check_count(value: object, flag: str, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{flag} must be an integer >= {low}, got {value!r}")
    if high is not None and value > high:
        raise InputError(f"{flag} must be at most {high}, got {value}")
    return value
