"""``edgenas.export`` in process: what a default export is, when an export is reused, and what
``check_export`` refuses up front (``deploy`` and ``fleet`` call both without the CLI's flags)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import onnx
import pytest

from edgenas.errors import InputError, OutputError
from edgenas.export import check_export, export_arch
from edgenas.spaces import get_space


@pytest.fixture(scope="module")
def tiny():
    space = get_space("mbv3-tiny")
    return space, space.sample(np.random.default_rng(0))


def test_a_default_export_is_opset_17_with_a_static_batch_unsimplified_and_reused_as_it_is(tiny, tmp_path):
    """The library's defaults are the CLI's: ``deploy`` and ``fleet`` export with them and must find (reuse) what
    ``edgenas export`` made, and a default export asks for no simplifier (absent here: a RuntimeWarning)."""
    from exporters.manifest import Manifest

    space, arch = tiny
    out = tmp_path / "exp"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = export_arch(space, arch, out)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    assert not first.reused and first.onnx_path == out / "model.onnx"
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.reused = True  # type: ignore[misc]  # a result, not a state to change
    man = Manifest.load(first.manifest_path)
    assert (man.opset, man.dynamic_batch) == (17, False)
    model = onnx.load(str(first.onnx_path))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    again = export_arch(space, arch, out, opset=17, dynamic_batch=False)
    assert again.reused and again.sha256 == first.sha256 and again.input_shape == first.input_shape


def _edit_parity(m, **kw):
    m["parity"].update(kw)


@pytest.mark.parametrize("edit", [
    lambda m: _edit_parity(m, passed=False),  # printed "-> FAIL" with exit 0; deploy measured it
    lambda m: m["parity"]["outputs"][0].update(passed=False),
    lambda m: m["parity"]["tolerances"].update(atol=1.0),  # passed at a tolerance edgenas does not use
    lambda m: _edit_parity(m, max_abs=None),  # the CLI's {:.2e} of it was an internal error
    lambda m: _edit_parity(m, precision="fp16"),
    lambda m: m.update(parity=None),  # (dict(None) failed, so this one was made again already)
    lambda m: m.update(input_shape=[1, 3, 1_000_000_000, 28]),  # reused, and handed on as the input shape
    lambda m: m.update(space="mbv3-small"),
    lambda m: m.update(onnx_file="other.onnx"),
], ids=["failed", "output-failed", "tolerance", "max-abs-null", "precision", "no-parity", "input-shape", "space",
        "file"])
def test_an_export_whose_manifest_does_not_vouch_for_it_is_made_again(tiny, tmp_path, edit):
    """A manifest is reused only when it says what this export would and records a passed parity check (edgenas
    writes none that does not): an edited or damaged one is replaced by the export made and checked again."""
    import json

    space, arch = tiny
    first = export_arch(space, arch, tmp_path / "exp")
    honest = json.loads(first.manifest_path.read_text())
    edited = json.loads(first.manifest_path.read_text())
    edit(edited)
    first.manifest_path.write_text(json.dumps(edited))
    again = export_arch(space, arch, tmp_path / "exp")
    assert not again.reused and again.sha256 == first.sha256 and again.parity["passed"] is True
    assert again.input_shape == tuple(space.input_shape(arch)) == first.input_shape
    now = json.loads(again.manifest_path.read_text())
    assert {k: v for k, v in now.items() if k != "created_at"} == {k: v for k, v in honest.items() if k != "created_at"}
    assert export_arch(space, arch, tmp_path / "exp").reused  # and the new manifest is reused


def test_an_export_with_another_opset_or_batch_mode_is_made_again_not_reused(tiny, tmp_path):
    from exporters.manifest import Manifest

    space, arch = tiny
    out = tmp_path / "exp"
    steps: list[tuple[str, int, int]] = []
    export_arch(space, arch, out, progress=lambda *step: steps.append(step))
    assert steps == [("export", i, 3) for i in range(4)]
    newer = export_arch(space, arch, out, opset=18)
    assert not newer.reused and Manifest.load(newer.manifest_path).opset == 18
    dynamic = export_arch(space, arch, out, opset=18, dynamic_batch=True)
    assert not dynamic.reused and Manifest.load(dynamic.manifest_path).dynamic_batch
    assert export_arch(space, arch, out, opset=18, dynamic_batch=True).reused
    with warnings.catch_warnings():   # no simplifier here: the export goes on unsimplified, with a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        # the manifest does not say whether a graph was simplified: --simplify never takes a plain export
        assert not export_arch(space, arch, out, opset=18, dynamic_batch=True, simplify=True).reused


def test_check_export_refuses_by_default_what_export_arch_would_refuse(tiny, tmp_path):
    """``deploy`` calls ``check_export`` before it opens a device session: a bad opset, an --out that is a
    file, or a foreign non-empty folder must be refused there, and ``export_arch`` without ``force`` writes
    nothing into a foreign folder."""
    space, arch = tiny
    with pytest.raises(InputError, match="opset 999 is newer"):
        check_export(space, arch, tmp_path / "new", opset=999)
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    with pytest.raises(OutputError, match="existing file"):
        check_export(space, arch, a_file)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "model.onnx").write_bytes(b"someone else's model")
    with pytest.raises(OutputError, match="--force"):
        check_export(space, arch, foreign)
    with pytest.raises(OutputError, match="--force"):
        export_arch(space, arch, foreign)
    assert [p.name for p in foreign.iterdir()] == ["model.onnx"]
    assert (foreign / "model.onnx").read_bytes() == b"someone else's model"
    assert not (tmp_path / "new").exists()


def test_same_network_is_false_for_a_record_of_no_architecture(tiny):
    from edgenas.export import same_network

    space, arch = tiny
    assert same_network(space, space.to_dict(arch), arch) is True
    assert same_network(space, {"space": "mbv3-tiny", "ks": "not a list"}, arch) is False


def test_a_full_disk_during_an_export_is_one_output_error_and_leaves_no_folder(tiny, tmp_path):
    """A write past the file-size limit fails with EFBIG (SIGXFSZ ignored), as a full disk does with ENOSPC:
    ``export_arch`` raises one ``OutputError`` (not the bare OSError) and removes the folder it made."""
    import resource
    import signal

    space, arch = tiny
    out = tmp_path / "new" / "exp"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8000, hard))
    try:
        with pytest.raises(OutputError, match="disk is full"):
            export_arch(space, arch, out)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    assert not (tmp_path / "new").exists()


def test_the_default_export_folder_is_named_by_the_space_and_12_hex_digits_of_the_arch_hash(tiny, tmp_path):
    """The name is how a project finds an earlier export of the architecture again (deploy, calibrate)."""
    from edgenas.export import arch_hash, default_export_dir
    from edgenas.project import Project

    space, arch = tiny
    folder = default_export_dir(Project(tmp_path), space, arch)
    assert folder == tmp_path / "exports" / f"mbv3-tiny-{arch_hash(space, arch)[:12]}"
    assert len(folder.name) == len("mbv3-tiny-") + 12


def test_torchscript_beside_returns_the_model_pt_it_traced_and_then_the_one_it_finds(tiny, tmp_path):
    from edgenas.export import torchscript_beside

    space, arch = tiny
    exp = export_arch(space, arch, tmp_path / "exp")
    made = torchscript_beside(space, arch, exp)
    assert made == tmp_path / "exp" / "model.pt" and made.is_file()
    mtime = made.stat().st_mtime_ns
    assert torchscript_beside(space, arch, exp) == made and made.stat().st_mtime_ns == mtime  # found, not traced


class _Rebuilt:
    """A space as it is, except that each network it builds is wrapped by ``wrap``: a user's network that the
    export's checks must catch."""

    def __init__(self, space, wrap):
        self._space, self._wrap = space, wrap

    def __getattr__(self, name):
        return getattr(self._space, name)

    def build_model(self, arch):
        return self._wrap(self._space.build_model(arch))


def _counting(inner):
    """A network whose output adds how often it ran: a Python number, so the ONNX file keeps the count it was
    traced with while PyTorch's outputs move on."""
    import torch

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.calls = inner, 0

        def forward(self, x):
            self.calls += 1
            return self.inner(x) + self.calls

    return Counting()


def _failing_after_export(inner):
    """A network that reads a device once it has been exported, and the read fails (EIO: not a disk error)."""
    import errno

    import torch

    class Failing(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.exported = inner, False

        def forward(self, x):
            if torch.onnx.is_in_onnx_export():
                self.exported = True
            elif self.exported:  # the parity check's run
                raise OSError(errno.EIO, "Input/output error", "/dev/sensor0")
            return self.inner(x)

    return Failing()


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_an_export_that_fails_its_parity_check_is_one_export_error_and_changes_nothing(tiny, tmp_path):
    """The ONNX model's outputs differ from PyTorch's: one ``ExportError`` naming the file it would have been,
    no new folder left, and an earlier export in the folder (``--force``) kept as it was, with no temporary
    file beside it."""
    from edgenas.errors import ExportError

    space, arch = tiny
    with pytest.raises(ExportError, match=r"parity failed for .*exp.model\.onnx: output: max_abs="):
        export_arch(_Rebuilt(space, _counting), arch, tmp_path / "new" / "exp")
    assert not (tmp_path / "new").exists()
    kept = export_arch(space, arch, tmp_path / "exp")
    before = _files(tmp_path / "exp")
    with pytest.raises(ExportError, match="parity failed"):
        export_arch(_Rebuilt(space, _counting), arch, tmp_path / "exp", force=True)
    assert _files(tmp_path / "exp") == before and export_arch(space, arch, tmp_path / "exp").sha256 == kept.sha256


def test_an_os_error_that_is_no_disk_error_while_exporting_is_raised_as_it_is_and_changes_nothing(tiny, tmp_path):
    """Only a disk error (full, read-only, not permitted...) is told as "cannot write the export"; another
    OSError reaches the caller as it was raised, and still leaves no folder and no temporary file behind."""
    import errno

    space, arch = tiny
    with pytest.raises(OSError) as caught:
        export_arch(_Rebuilt(space, _failing_after_export), arch, tmp_path / "new" / "exp")
    assert type(caught.value) is OSError and caught.value.errno == errno.EIO, repr(caught.value)
    assert not (tmp_path / "new").exists()
    export_arch(space, arch, tmp_path / "exp")
    before = _files(tmp_path / "exp")
    with pytest.raises(OSError, match="Input/output error"):
        export_arch(_Rebuilt(space, _failing_after_export), arch, tmp_path / "exp", force=True)
    assert _files(tmp_path / "exp") == before


def test_a_manifest_that_cannot_be_written_leaves_no_model_onnx_without_it(tiny, tmp_path):
    """A folder standing where manifest.json goes (``--force``): one ``OutputError``, and the model.onnx already
    moved into place is removed again (a model without its manifest is no export)."""
    space, arch = tiny
    out = tmp_path / "exp"
    (out / "manifest.json").mkdir(parents=True)
    (out / "manifest.json" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="Is a directory"):
        export_arch(space, arch, out, force=True)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["manifest.json", "manifest.json/notes.txt"]


def test_torchscript_beside_traces_a_reused_export_and_refuses_a_network_its_file_would_not_be(tiny, tmp_path):
    """A reused export of today's network gets its model.pt (its parity with the network checked first); a network
    whose TorchScript file would compute something else is refused with one ``ExportError`` and no model.pt."""
    from edgenas.errors import ExportError
    from edgenas.export import torchscript_beside

    space, arch = tiny
    export_arch(space, arch, tmp_path / "exp")
    reused = export_arch(space, arch, tmp_path / "exp")
    assert reused.reused and torchscript_beside(space, arch, reused) == tmp_path / "exp" / "model.pt"
    other = export_arch(space, arch, tmp_path / "other")
    with pytest.raises(ExportError, match="TorchScript file differs from the module"):
        torchscript_beside(_Rebuilt(space, _counting), arch, other)
    assert sorted(_files(tmp_path / "other")) == ["manifest.json", "model.onnx"]


def test_a_network_that_fails_on_its_input_shape_is_one_export_error_before_any_file(tiny, tmp_path):
    import torch

    from edgenas.errors import ExportError

    space, arch = tiny
    with pytest.raises(ExportError, match="the module fails on an input of shape"):  # a head of 3, after 10 logits
        export_arch(_Rebuilt(space, lambda inner: torch.nn.Sequential(inner, torch.nn.Linear(3, 3))), arch,
                    tmp_path / "exp")
    assert not (tmp_path / "exp").exists()


def test_an_nb201_export_is_the_same_file_whatever_the_global_random_state(tmp_path):
    """nb201's layers draw their initial weights from torch's global generator: the export seeds it from the
    architecture's id, so another use of the generator before it changes nothing (in one process, exports that
    followed each other drew the same weights either way), and leaves the caller's state as it was."""
    import torch

    space = get_space("nb201")
    arch = space.sample(np.random.default_rng(0))
    torch.manual_seed(1)
    first = export_arch(space, arch, tmp_path / "a")
    torch.manual_seed(2)
    state = torch.random.get_rng_state()
    second = export_arch(space, arch, tmp_path / "b")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert second.sha256 == first.sha256 and second.onnx_path.read_bytes() == first.onnx_path.read_bytes()
