"""What the LLM operator keeps in ``RUN/llm/`` (no model needed): the JSON-lines logs, the experience buffer,
the run's counts and shares."""

import json
import os

import pytest

from edgenas.errors import InputError
from edgenas.llm.experience import Experience, ExperienceBuffer, JsonlLog, read_all, share, summary


def test_a_log_appends_one_sorted_line_per_record_and_reads_them_back(tmp_path):
    log = JsonlLog(tmp_path / "llm" / "proposals.jsonl")
    assert log.read() == [] and not log.path.exists()      # created on the first append, its folder too
    log.append({"kind": "lora", "event": 0})
    log.append_many([{"event": 1, "kind": "fallback"}, {"event": 2, "kind": "proposal"}])
    assert log.path.read_text() == ('{"event": 0, "kind": "lora"}\n{"event": 1, "kind": "fallback"}\n'
                                    '{"event": 2, "kind": "proposal"}\n')
    assert [r["event"] for r in log.read()] == [0, 1, 2]
    log.append_many([])
    assert len(log.read()) == 3


def test_a_torn_last_line_is_skipped_on_reading_and_cut_off_by_the_next_append(tmp_path):
    """Reading cut it off the file: a report reading a run changed it, and so did a resume then refused."""
    path = tmp_path / "proposals.jsonl"
    torn = b'{"event": 0}\n{"event": 1}\n{"ev'                       # kill -9 while the last line was written
    path.write_bytes(torn)
    os.utime(path, (1_600_000_000, 1_600_000_000))
    log = JsonlLog(path)
    assert log.read() == [{"event": 0}, {"event": 1}]
    assert JsonlLog(path).read() == [{"event": 0}, {"event": 1}]
    assert path.read_bytes() == torn and path.stat().st_mtime == 1_600_000_000    # only read, not touched
    log.append({"event": 2})
    assert path.read_bytes() == b'{"event": 0}\n{"event": 1}\n{"event": 2}\n'
    assert log.read() == [{"event": 0}, {"event": 1}, {"event": 2}]
    path.write_bytes(b'{"ev')
    log = JsonlLog(path)
    assert log.read() == [] and path.read_bytes() == b'{"ev'
    log.append_many([])
    assert path.read_bytes() == b""


@pytest.mark.parametrize("line, why", [
    (b"{not json", "malformed line 2 in"),
    (b"[" * 100_000 + b"]" * 100_000, "malformed line 2 in"),
    (b'"\xff"', "malformed line 2 in"),
    (b"[1, 2]", "line 2 of .* is not a JSON object"),
    (b"7", "line 2 of .* is not a JSON object"),
])
def test_a_damaged_line_is_one_error_naming_it(tmp_path, line, why):
    path = tmp_path / "outcomes.jsonl"
    path.write_bytes(b'{"proposal": 0}\n' + line + b"\n")
    with pytest.raises(InputError, match=why):
        JsonlLog(path).read()


def test_rewrite_replaces_the_lines_and_writes_nothing_through_a_planted_link(tmp_path):
    """``rewrite`` (a torn batch dropped on resume) wrote ``proposals.jsonl.tmp`` with ``open(tmp, "w")``: a link
    planted there had the file it pointed at overwritten with the run's log, and ``os.replace`` then left
    ``proposals.jsonl`` a link to it."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run = tmp_path / "llm"
    run.mkdir()
    log = JsonlLog(run / "proposals.jsonl")
    log.append_many([{"event": 0}, {"event": 1}, {"event": 2}])
    (run / "proposals.jsonl.tmp").symlink_to(victim)
    log.rewrite([{"kind": "lora", "event": 0}])
    assert victim.read_text() == "precious\n"
    assert not log.path.is_symlink() and log.path.read_text() == '{"event": 0, "kind": "lora"}\n'
    assert log.read() == [{"event": 0, "kind": "lora"}]


def _exp(n, delta=1.0):
    return Experience(n, f"prompt {n}", "think", 'edge_1_0", "value": "none"}', delta)


def test_the_buffer_keeps_the_last_items_and_saves_each_addition(tmp_path):
    path = tmp_path / "llm" / "experience.json"
    buf = ExperienceBuffer(2, path)
    buf.add(_exp(0))
    assert json.loads(path.read_text())["items"][0]["proposal"] == 0       # saved on every add
    buf.add(_exp(1))
    buf.add(_exp(2, -0.5))
    assert len(buf) == 2 and [e.proposal for e in buf] == [1, 2]
    saved = json.loads(path.read_text())
    assert saved["schema"] == 1 and saved["size"] == 2
    assert [i["proposal"] for i in saved["items"]] == [1, 2] and saved["items"][1]["delta"] == -0.5
    back = ExperienceBuffer.load(path)
    assert list(back) == [_exp(1), _exp(2, -0.5)] and back.items.maxlen == 2 and back.path == path
    path.write_text(json.dumps({"schema": 1, "size": 1, "items": [{**_ITEM, "delta": float("nan")}]}))
    assert ExperienceBuffer.load(path).items[0].proposal == 1     # an improvement over an infeasible parent
    unsaved = ExperienceBuffer(3)
    unsaved.add(_exp(5))
    assert len(unsaved) == 1 and unsaved.path is None


@pytest.mark.parametrize("obj", [
    [1],
    {"schema": 2, "size": 4, "items": []},
    {"schema": True, "size": 4, "items": []},  # True == 1 in Python
    {"size": 4, "items": []},
    {"schema": 1, "size": 4, "items": {}},
    {"schema": 1, "size": 4},
    {"schema": 1, "size": 4, "items": [{"proposal": 1}]},
    {"schema": 1, "size": 4, "items": [[1, "p", "t", "c", 0.5]]},
    {"schema": 1, "size": 4, "items": [{"proposal": 1, "prompt": "p", "think": "t", "completion": "c", "x": 1}]},
])
def test_a_damaged_buffer_is_one_error(tmp_path, obj):
    path = tmp_path / "experience.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(InputError, match="experience"):
        ExperienceBuffer.load(path)


_ITEM = {"proposal": 1, "prompt": "p", "think": "t", "completion": "c", "delta": 0.5}


@pytest.mark.parametrize("obj", [
    {"schema": 1, "items": []},                                  # was KeyError: 'size'
    {"schema": 1, "size": None, "items": []},                    # was TypeError from int()
    {"schema": 1, "size": "x", "items": []},                     # was ValueError from int()
    {"schema": 1, "size": -1, "items": []},                      # was ValueError: maxlen must be non-negative
    {"schema": 1, "size": 0, "items": [_ITEM]},                  # a buffer that keeps nothing
    {"schema": 1, "size": 10**30, "items": []},                  # was OverflowError from the deque
    {"schema": 1, "size": 2.5, "items": []},
    {"schema": 1, "size": 4, "items": [{**_ITEM, "prompt": 7}]},  # were taken: LoRA training failed on them
    {"schema": 1, "size": 4, "items": [{**_ITEM, "proposal": "1"}]},
    {"schema": 1, "size": 4, "items": [{**_ITEM, "delta": "0.5"}]},
    {"schema": 1, "size": 4, "items": [{**_ITEM, "delta": True}]},
    {"schema": 1, "size": 4, "items": [_ITEM, {**_ITEM, "think": None}]},
])
def test_a_buffer_with_a_bad_size_or_entry_is_one_error(tmp_path, obj):
    """The size went to ``int()`` and ``deque`` unchecked and the entries' values were taken as they were:
    a KeyError, TypeError, ValueError or OverflowError instead of one ``InputError``."""
    path = tmp_path / "experience.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(InputError, match="experience"):
        ExperienceBuffer.load(path)


def test_share_is_the_true_fraction_or_none():
    assert share([]) is None and share(iter([])) is None
    assert share([True, False, True, True]) == 0.75
    assert share(x for x in [1, None, 0, "yes"]) == 0.5
    assert share([False, False]) == 0.0


def test_summary_counts_a_runs_events(tmp_path):
    assert summary(tmp_path) is None                       # no llm folder: no language model in this run
    (tmp_path / "llm").mkdir()
    assert summary(tmp_path) == {"proposals": 0, "valid": None, "novel": None, "improving": None, "used": 0,
                                 "replaced": 0, "infeasible": 0, "lora_updates": 0, "fallbacks": 0}
    assert read_all(tmp_path) == {"proposals": [], "outcomes": [], "experience": None}
    JsonlLog(tmp_path / "llm" / "proposals.jsonl").append_many([
        {"kind": "proposal", "valid": True, "novel": True},
        {"kind": "proposal", "valid": True, "novel": False},
        {"kind": "lora"},
        {"kind": "proposal", "valid": False, "novel": False},
        {"kind": "proposal", "valid": True, "novel": True},
        {"kind": "fallback"},
        {"kind": "lora"}])
    JsonlLog(tmp_path / "llm" / "outcomes.jsonl").append_many([{"proposal": 0, "improved": True},
                                                              {"proposal": 1, "improved": False}])
    # a log of version 1 (no "log" field) did not record the proposals replaced for being over a budget
    assert summary(tmp_path) == {"proposals": 4, "valid": 0.75, "novel": 0.5, "improving": 0.5, "used": 2,
                                 "replaced": 2, "infeasible": None, "lora_updates": 2, "fallbacks": 1}
    (tmp_path / "llm" / "proposals.jsonl").unlink()
    JsonlLog(tmp_path / "llm" / "proposals.jsonl").append_many(
        [{"kind": "proposal", "valid": True, "novel": True, "log": 2}] * 4)
    JsonlLog(tmp_path / "llm" / "outcomes.jsonl").append(
        {"proposal": 2, "improved": False, "delta": None, "infeasible": True})
    # improving is a share of the evaluated children: the one over its budget is replaced, not used
    assert summary(tmp_path) == {"proposals": 4, "valid": 1.0, "novel": 1.0, "improving": 0.5, "used": 2,
                                 "replaced": 2, "infeasible": 1, "lora_updates": 0, "fallbacks": 0}
    ExperienceBuffer(4, tmp_path / "llm" / "experience.json").add(_exp(3))
    assert read_all(os.fspath(tmp_path))["experience"]["items"][0]["proposal"] == 3


def test_logs_and_buffers_make_their_folders_and_write_sorted_keys(tmp_path):
    log = JsonlLog(tmp_path / "run" / "llm" / "outcomes.jsonl")
    log.append({"round": 0, "proposal": 4, "improved": True})
    assert log.path.read_text() == '{"improved": true, "proposal": 4, "round": 0}\n'
    log.rewrite([{"proposal": 5, "delta": None}])
    assert log.path.read_text() == '{"delta": null, "proposal": 5}\n'
    path = tmp_path / "other" / "llm" / "experience.json"
    ExperienceBuffer(1, path).add(_exp(0))
    assert ExperienceBuffer.load(path).items[0] == _exp(0)


def test_a_bad_entry_is_named_by_its_number_and_the_size_may_be_a_million(tmp_path):
    path = tmp_path / "experience.json"
    path.write_text(json.dumps({"schema": 1, "size": 1_000_000, "items": [_ITEM, {**_ITEM, "delta": None}]}))
    with pytest.raises(InputError, match="malformed experience entry 2:? "):
        ExperienceBuffer.load(path)
    path.write_text(json.dumps({"schema": 1, "size": 1_000_000, "items": [_ITEM]}))
    assert ExperienceBuffer.load(path).items.maxlen == 1_000_000
    path.write_text(json.dumps({"schema": 1, "size": 1_000_001, "items": [_ITEM]}))
    with pytest.raises(InputError, match="size 1000001 is not"):
        ExperienceBuffer.load(path)


def test_an_experience_is_an_immutable_value():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        _exp(0).delta = 2.0
    assert len({_exp(0), _exp(0), _exp(1)}) == 2
