"""LutStore: replacing a table keeps every previous version; a bad table changes nothing."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from edgenas.errors import InputError
from edgenas.latency.lut import EntryStats, Lut
from edgenas.latency.store import LutStore
from edgenas.safenames import check_hash, check_name


def _stats(ms: float) -> EntryStats:
    return EntryStats(n=10, median_ms=ms, mean_ms=ms, std_ms=0.0, cov=0.0, p90_ms=ms, p99_ms=ms,
                      min_ms=ms, max_ms=ms)


def _lut(scale: float) -> Lut:
    return Lut(device="dev", space="mbv3-tiny", fingerprint={"m": 1}, fingerprint_hash="a" * 64,
               runtime="onnxruntime", precision="fp32", threads=1, protocol={}, overhead=_stats(0.1),
               entries={"k1": _stats(1.0 * scale), "k2": _stats(2.0 * scale)})


def test_every_replaced_table_is_kept_even_within_one_second(tmp_path):
    store = LutStore(tmp_path)
    versions = [_lut(s) for s in (1.0, 2.0, 3.0)]
    for v in versions:  # three saves well inside one second
        path = store.save(v)
    assert Lut.load(path).entries == versions[-1].entries
    kept = sorted(Lut.load(p).entries["k1"].median_ms for p in (path.parent / "history").glob("*.json"))
    assert kept == [1.0, 2.0]
    assert store.list("dev", "mbv3-tiny") == [path]  # history is not a current table


def test_saving_the_table_the_file_holds_changes_nothing(tmp_path):
    """``lut pull`` of an unchanged table saved it again: a byte-identical copy went to the history each time."""
    store = LutStore(tmp_path)
    path = store.save(_lut(1.0))
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    assert store.save(Lut.load(path)) == path and store.save(Lut.load(path)) == path
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before and not (path.parent / "history").exists()
    store.save(dataclasses.replace(Lut.load(path), threads=2))  # one field changed: kept as before
    assert len(list((path.parent / "history").glob("*.json"))) == 1 and Lut.load(path).threads == 2


def test_a_table_is_used_only_where_it_belongs(tmp_path):
    """A table of device 'other' copied into luts/dev/ under a valid name was used as dev's table, and a
    run recorded luts/other/... (which did not exist); the same for a table renamed to another space or
    fingerprint. Each lookup now refuses it, naming the file."""
    store = LutStore(tmp_path)
    path = store.save(_lut(1.0))
    assert store.choose("dev", "mbv3-tiny").path == path
    for wrong in ({"device": "other"}, {"fingerprint_hash": "b" * 64}):
        path.write_text(json.dumps(dict(_lut(1.0).to_dict(), **wrong)))
        for lookup in (lambda: store.find("dev", "mbv3-tiny", "a" * 64), lambda: store.choose("dev", "mbv3-tiny"),
                       lambda: store.choose("dev", "mbv3-tiny", "a" * 64)):
            with pytest.raises(InputError, match=f"LUT {path} holds .*not the table that lies there") as exc:
                lookup()
            assert exc.value.hint.endswith("re-profile: edgenas profile dev --space mbv3-tiny")


def test_invalid_table_changes_nothing(tmp_path):
    store = LutStore(tmp_path)
    path = store.save(_lut(1.0))
    before = path.read_bytes()
    bad = dataclasses.replace(_lut(2.0), entries={"k1": dataclasses.replace(_stats(1.0), median_ms=-1.0)})
    with pytest.raises(InputError):
        store.save(bad)
    assert path.read_bytes() == before and not (path.parent / "history").exists()


@pytest.mark.parametrize("key", ["\x1b[2Jk1", "k1[link=http://x]", "../k1", "", "k 1", "k1\n", "x" * 300,
                                 "x" * 257, "/k1", " k1"])
def test_a_malformed_block_key_is_refused_with_the_key_escaped(tmp_path, key):
    data = _lut(1.0).to_dict()
    data["entries"][key] = data["entries"]["k1"]
    with pytest.raises(InputError, match="malformed block key") as exc:
        Lut.from_dict(data, where="LUT t.json")
    assert "\x1b" not in str(exc.value) and "\n" not in str(exc.value)
    data["entries"].pop(key)
    assert set(Lut.from_dict(data).entries) == {"k1", "k2"}


def test_a_block_key_of_256_characters_is_a_key():
    data = _lut(1.0).to_dict()
    data["entries"]["k" * 256] = data["entries"].pop("k1")
    assert set(Lut.from_dict(data).entries) == {"k" * 256, "k2"}


@pytest.mark.parametrize("device, space, fp", [
    ("d" * 65, "mbv3-tiny", "a" * 64),    # a name is at most 64 characters
    ("/etc", "mbv3-tiny", "a" * 64),      # an absolute path
    (" dev", "mbv3-tiny", "a" * 64),      # a name starts with a letter or digit
    ("dev", "/tmp", "a" * 64),
    ("dev", "mbv3-tiny", "/" * 64),       # a hash is hex: its first 12 characters name the file
    ("dev", "mbv3-tiny", "a" * 129),      # at most 128 hex digits
    ("dev", "mbv3-tiny", "a" * 11),       # at least 12
])
def test_a_table_path_is_made_only_of_plain_names_and_a_hex_hash(tmp_path, device, space, fp):
    with pytest.raises(InputError, match="invalid (device name|space name|fingerprint hash)"):
        LutStore(tmp_path).path_for(device, space, fp)
    with pytest.raises(InputError, match="malformed '(device|space|fingerprint_hash)'"):
        Lut.from_dict(dict(_lut(1.0).to_dict(), device=device, space=space, fingerprint_hash=fp))


def test_the_longest_names_and_hash_make_a_table_path(tmp_path):
    device, space, fp = "d" * 64, "s" * 64, "a" * 128
    assert LutStore(tmp_path).path_for(device, space, fp) == tmp_path / device / f"{space}-{'a' * 12}.json"
    assert check_name(device) == device and check_hash(fp) == fp
    lut = Lut.from_dict(dict(_lut(1.0).to_dict(), device=device, space=space, fingerprint_hash=fp))
    assert (lut.device, lut.space, lut.fingerprint_hash) == (device, space, fp)


def test_only_files_named_space_fphash12_json_are_listed_as_tables(tmp_path):
    store = LutStore(tmp_path)
    path = store.save(_lut(1.0))
    longest = path.parent / f"{'s' * 64}-{'a' * 12}.json"
    longest.write_bytes(path.read_bytes())
    for name in (f"{'s' * 65}-{'a' * 12}.json", f" mbv3-tiny-{'a' * 12}.json", f"mbv3-tiny-{'a' * 11}.json",
                 "mbv3-tiny-AAAAAAAAAAAA.json", ".mbv3-tiny-aaaaaaaaaaaa.json"):
        (path.parent / name).write_bytes(path.read_bytes())
    assert store.list("dev") == sorted([path, longest])


def test_the_devices_are_the_folders_a_device_name_could_have(tmp_path):
    assert LutStore(tmp_path / "luts").devices() == []  # no luts/ yet
    for name in ("pi4", "orin.nano", ".git", "old tables", "-x", "a" * 65, "b" * 64):
        (tmp_path / "luts" / name).mkdir(parents=True)
    (tmp_path / "luts" / "notes.json").write_text("{}")  # a file is no device
    assert LutStore(tmp_path / "luts").devices() == ["b" * 64, "orin.nano", "pi4"]


@pytest.mark.parametrize("field, value", [("device", "dev\n"), ("space", "mbv3-tiny\n"),
                                          ("fingerprint_hash", "a" * 64 + "\n")])
def test_a_trailing_newline_is_not_a_name(field, value):
    with pytest.raises(InputError, match=f"malformed '{field}'"):
        Lut.from_dict(dict(_lut(1.0).to_dict(), **{field: value}))


@pytest.mark.parametrize("link", ["history", "device folder", "table"])
def test_a_linked_folder_or_table_is_refused_and_nothing_moves_out(tmp_path, link):
    store = LutStore(tmp_path / "proj" / "luts")
    path = store.save(_lut(1.0))
    outside = tmp_path / "outside"
    if link == "history":
        outside.mkdir()
        (path.parent / "history").symlink_to(outside)
    elif link == "device folder":
        path.parent.rename(outside)
        path.parent.symlink_to(outside)
    else:
        path.rename(outside)
        path.symlink_to(outside)
    seen = sorted(p.name for p in outside.iterdir()) if outside.is_dir() else outside.read_bytes()
    with pytest.raises(InputError, match="symbolic link"):
        store.check_writable("dev")
    with pytest.raises(InputError, match="symbolic link"):
        store.save(_lut(2.0))
    assert (sorted(p.name for p in outside.iterdir()) if outside.is_dir() else outside.read_bytes()) == seen


def test_a_table_of_unknown_age_says_so():
    """An imported table (Once-for-All's, created_at 0) was described as made 20,792 days ago."""
    import time

    from edgenas.latency.store import LutChoice

    lut = _lut(1.0)
    unknown = LutChoice(dataclasses.replace(lut, created_at=0.0), Path("x.json"), None)
    assert "made at an unknown time" in unknown.describe()
    assert "made 1.0 h ago" in LutChoice(dataclasses.replace(lut, created_at=time.time() - 3600), Path("x.json"),
                                         None).describe()
    assert re.search(r"made \d+ s ago\)$", LutChoice(dataclasses.replace(lut, created_at=time.time() - 5),
                                                     Path("x.json"), None).describe())
    ahead = LutChoice(dataclasses.replace(lut, created_at=time.time() + 3600), Path("x.json"), None)
    assert ahead.age_s == 0.0 and ahead.to_dict()["age_s"] == 0.0


@pytest.mark.parametrize("link", ["history into the project", "table to nowhere"])
def test_a_link_into_the_project_or_to_nowhere_is_refused_too(tmp_path, link):
    """Any link is refused, not only one that leads outside now: a link to nowhere outside the project is
    one the next save writes through, and a link's target can change after the check."""
    store = LutStore(tmp_path / "proj" / "luts")
    path = store.save(_lut(1.0))
    if link == "history into the project":
        (tmp_path / "proj" / "elsewhere").mkdir()
        (path.parent / "history").symlink_to(tmp_path / "proj" / "elsewhere")
    else:
        path.unlink()
        path.symlink_to(tmp_path / "outside.json")
    with pytest.raises(InputError, match="symbolic link"):
        store.check_writable("dev")
    with pytest.raises(InputError, match="symbolic link"):
        store.save(_lut(2.0))
    assert not (tmp_path / "outside.json").exists() and not any((tmp_path / "proj").glob("elsewhere/*"))


def test_a_damaged_table_file_is_replaced_by_a_save(tmp_path):
    store = LutStore(tmp_path)
    path = store.save(_lut(1.0))
    path.write_text("{ damaged")
    assert store.save(_lut(1.0)) == path and Lut.load(path).entries == _lut(1.0).entries
    assert [p.read_text() for p in (path.parent / "history").glob("*.json")] == ["{ damaged"]
