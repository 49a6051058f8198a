"""``edgenas supernet train`` and ``edgenas supernet eval`` as a user runs them: the defaults they train with,
their ``--json`` output and their text output."""

from __future__ import annotations

import json

import numpy as np

from tests.cli.test_bad_input import one_line_error


def _tiny_npz(path):
    """Ten 8x8 RGB images of two classes: five epochs of it are one optimizer step."""
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((10, 8, 8, 3), dtype=np.float32), y=np.arange(10) % 2)
    return path


def _arch_file(path, space_name: str, seed: int):
    from edgenas.spaces import get_space

    space = get_space(space_name)
    path.write_text(json.dumps(space.to_dict(space.sample(np.random.default_rng(seed)))))
    return path


def test_supernet_train_defaults_and_its_json_and_text_output(fresh, cli, tmp_path):
    data = str(_tiny_npz(tmp_path / "tiny.npz"))
    res = cli("supernet", "train", "--space", "mbv3-tiny", "--data", data, "--out", "sn", "--json")
    assert res.code == 0, res.err
    got = json.loads(res.out)
    assert (got["config"]["steps"], got["config"]["epochs"]) == (None, 5.0)  # neither given: five epochs
    assert {k: got["config"][k] for k in ("batch_size", "lr", "n_random", "seed", "checkpoint_every", "out")} == \
        {"batch_size": 64, "lr": 0.05, "n_random": 2, "seed": 0, "checkpoint_every": 100, "out": "sn"}
    assert set(got) == {"checkpoint_path", "config"}  # a file's path is FILE_path (README, --json names)
    assert (fresh / got["checkpoint_path"]).is_file() and got["checkpoint_path"] == "sn/supernet.json"

    res = cli("supernet", "train", "--space", "mbv3-tiny", "--data", data, "--steps", "1", "--out", "sn2")
    assert res.code == 0, res.err
    assert res.out.startswith("supernet checkpoint: ") and not res.out.lstrip().startswith("{")
    assert (fresh / res.out.split(": ", 1)[1].strip()).exists()


def test_supernet_eval_scores_each_file_and_refuses_mixed_spaces(fresh, cli, tmp_path):
    data = str(_tiny_npz(tmp_path / "tiny.npz"))
    assert cli("supernet", "train", "--space", "mbv3-tiny", "--data", data, "--steps", "1", "--out", "sn",
               "--json").code == 0
    a, b = _arch_file(tmp_path / "a.json", "mbv3-tiny", 0), _arch_file(tmp_path / "b.json", "mbv3-tiny", 1)
    res = cli("supernet", "eval", str(a), str(b), "--checkpoint", "sn", "--json")
    assert res.code == 0, res.err
    rows = json.loads(res.out)
    assert [r["arch_path"] for r in rows] == [str(a), str(b)]
    assert all(isinstance(r["accuracy"], float) and 0.0 <= r["accuracy"] <= 100.0 for r in rows)
    one = cli("supernet", "eval", str(a), "--checkpoint", "sn", "--json")  # one file: its space is the space
    assert one.code == 0 and json.loads(one.out) == rows[:1], one.err

    res = cli("supernet", "eval", str(a), str(b), "--checkpoint", "sn")
    assert res.code == 0, res.err
    assert res.out.splitlines() == [f"{r['accuracy']:6.2f}%  {r['arch_path']}" for r in rows]

    other = _arch_file(tmp_path / "c.json", "mbv3-small", 0)
    before = sorted(p.name for p in (fresh / "sn").iterdir())
    one_line_error(cli("supernet", "eval", str(a), str(other), "--checkpoint", "sn"),
                   "architectures of several spaces given: mbv3-small, mbv3-tiny")
    assert sorted(p.name for p in (fresh / "sn").iterdir()) == before
