"""TorchScript export for the devices' torch runtime: shapes and metadata inside, checked against the module."""

from __future__ import annotations

import pytest

from exporters.errors import ExportCheckError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

from exporters.torchscript_export import EXTRA_FILE, export_torchscript, stored_meta  # noqa: E402


def test_export_stores_shapes_and_meta_and_matches_the_module(tmp_path):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
    path = tmp_path / "m.pt"
    sha = export_torchscript(module, (1, 3, 12, 12), path, meta={"onnx_sha256": "ab" * 32})
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert stored_meta(path) == {"input_shapes": [[1, 3, 12, 12]], "onnx_sha256": "ab" * 32}
    x = torch.randn(1, 3, 12, 12)
    loaded = torch.jit.load(str(path), _extra_files={EXTRA_FILE: ""})
    with torch.no_grad():
        assert torch.allclose(loaded(x), module.eval()(x), atol=1e-5)


class _Pair(torch.nn.Module):
    def forward(self, x):
        return x, x


class _Random(torch.nn.Module):
    def forward(self, x):
        return x + torch.rand_like(x)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("module, shape, text", [
    (torch.nn.ReLU(), (1, 0, 4), "positive sizes"),
    (torch.nn.ReLU(), "abc", "sequence of ints"),
    (_Pair(), (1, 4), "one tensor output"),
    (_Random(), (1, 64), "differs from the module"),
    (torch.nn.Conv2d(3, 4, 3), (1, 5, 8, 8), "tracing failed"),
])
def test_bad_modules_and_shapes_write_nothing(tmp_path, module, shape, text):
    path = tmp_path / "m.pt"
    with pytest.raises(ExportCheckError, match=text):
        export_torchscript(module, shape, path)
    assert list(tmp_path.iterdir()) == []


def test_stored_meta_of_other_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 64)
    plain = tmp_path / "plain.pt"
    torch.jit.trace(torch.nn.ReLU(), torch.randn(1, 4)).save(str(plain))
    assert stored_meta(junk) is None and stored_meta(plain) is None and stored_meta(tmp_path / "nope.pt") is None
