from __future__ import annotations

import os

import onnx
import pytest
from onnx import TensorProto, helper

from exporters.checks import load_checked
from exporters.errors import ExportCheckError


def _one_line(err: ExportCheckError) -> str:
    text = str(err)
    assert "\n" not in text
    return text


def test_good_file_loads(exported):
    model = load_checked(exported.path)
    assert isinstance(model, onnx.ModelProto)
    assert len(model.graph.node) == exported.n_nodes


def test_missing_file(tmp_path):
    with pytest.raises(ExportCheckError) as info:
        load_checked(tmp_path / "nope.onnx")
    assert "nope.onnx" in _one_line(info.value) and "does not exist" in str(info.value)


def test_directory(tmp_path):
    with pytest.raises(ExportCheckError, match="not a file"):
        load_checked(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ExportCheckError, match="empty.onnx is empty"):
        load_checked(path)


@pytest.mark.parametrize("payload", ["random", "html", "text"])
def test_not_onnx(tmp_path, payload):
    data = {
        "random": os.urandom(4096),
        "html": b"<html><body>404 Not Found</body></html>",
        "text": b"hello, this is not a model\n" * 10,
    }[payload]
    path = tmp_path / f"{payload}.onnx"
    path.write_bytes(data)
    with pytest.raises(ExportCheckError) as info:
        load_checked(path)
    assert f"{payload}.onnx" in _one_line(info.value)


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.9, 0.999])
def test_truncated(exported, tmp_path, fraction):
    data = exported.path.read_bytes()
    path = tmp_path / "trunc.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ExportCheckError) as info:
        load_checked(path)
    assert "trunc.onnx" in _one_line(info.value)


def test_valid_protobuf_that_fails_checker(tmp_path):
    # a node consuming a tensor that nothing produces: parses fine, the checker rejects it
    node = helper.make_node("Relu", ["ghost"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "bad_graph.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ExportCheckError) as info:
        load_checked(path)
    text = _one_line(info.value)
    assert "bad_graph.onnx fails the ONNX checker" in text and "ghost" in text


def test_a_model_this_user_may_not_read_is_said_so_not_called_corrupt(exported, monkeypatch):
    """A model file of mode 000 was "is not a readable ONNX model (corrupt or truncated): [Errno 13] ...", and the
    hint sent the user to export it again. chmod does not stop root, so the open is refused as the kernel would."""
    import builtins
    import errno

    real_open = builtins.open

    def refused(path, *a, **kw):
        if not isinstance(path, int) and os.fspath(path) == str(exported.path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(builtins, "open", refused)
    with pytest.raises(ExportCheckError) as info:
        load_checked(exported.path)
    text = _one_line(info.value)
    assert f"cannot read ONNX file {exported.path}: permission denied" in text and "corrupt" not in text
    assert "read permission" in info.value.hint
