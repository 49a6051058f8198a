"""Export an architecture: PyTorch model -> checked ONNX + parity report + manifest.

The export folder holds ``model.onnx`` and ``manifest.json``; an export whose manifest names the same
architecture, input shape, opset and batch mode, records a passed parity check (``vouches_for``) and whose
ONNX file still has the recorded SHA-256 is reused (not for ``simplify``, which the manifest does not
record: a simplified export is made anew each time). For devices whose runtime is ``torch``, ``model.pt``
(TorchScript) is traced beside it when first needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgenas.errors import ExportError, InputError
from edgenas.limits import is_finite
from edgenas.project import Project
from edgenas.spaces.base import SearchSpace


@dataclass(frozen=True)
class ExportResult:
    onnx_path: Path
    manifest_path: Path
    sha256: str
    reused: bool
    parity: dict[str, Any]
    input_shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        # a file's path is FILE_path in every --json (deploy's onnx_path, profile's lut_path)
        return {"onnx_path": str(self.onnx_path), "manifest_path": str(self.manifest_path), "sha256": self.sha256,
                "reused": self.reused, "parity": self.parity, "input_shape": list(self.input_shape)}


def arch_hash(space: SearchSpace, arch: Any) -> str:
    return hashlib.sha256(space.arch_id(arch).encode()).hexdigest()


def default_export_dir(project: Project, space: SearchSpace, arch: Any) -> Path:
    return project.root / "exports" / f"{space.name}-{arch_hash(space, arch)[:12]}"


def export_arch(space: SearchSpace, arch: Any, out_dir: Path, *, opset: int = 17,
                dynamic_batch: bool = False, simplify: bool = False, precision: str = "fp32",
                force: bool = False, progress: Callable[[str, int, int], None] | None = None) -> ExportResult:
    """Export ``arch`` to ``out_dir/model.onnx`` (checked, parity-tested) with a manifest.

    A non-empty ``out_dir`` that is not an export of this architecture is refused unless ``force``;
    a failed export (check, parity, full disk) leaves no file and no folder it created behind."""
    from exporters.errors import ExportCheckError
    from exporters.manifest import Manifest

    from edgenas.io import sha256_file
    from edgenas.outdirs import DISK_ERRNOS, disk_error, new_out_dir

    out_dir = Path(out_dir)
    check_export(space, arch, out_dir, opset=opset, force=force)
    onnx_path, manifest_path = out_dir / "model.onnx", out_dir / "manifest.json"
    record = space.to_dict(arch)
    # a FIFO there hung the hash: export again; and so does --simplify (no manifest says a graph was simplified,
    # so a plain export there was reused for it)
    if not force and not simplify and onnx_path.is_file() and manifest_path.exists():
        try:
            man = Manifest.load(manifest_path)
            if (vouches_for(man, space, arch, onnx_path, opset=opset, dynamic_batch=dynamic_batch, precision=precision)
                    and man.onnx_sha256 == sha256_file(onnx_path)):
                return ExportResult(onnx_path, manifest_path, man.onnx_sha256, True, dict(man.parity),
                                    tuple(man.input_shape))
        except (ExportCheckError, InputError, ValueError, KeyError, TypeError):
            pass  # stale, foreign, edited or damaged manifest: export again
    step = progress or (lambda name, done, total: None)
    try:
        with new_out_dir(out_dir):
            return _export(space, arch, record, out_dir, opset, dynamic_batch, simplify, precision, step)
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        raise disk_error(exc, f"the export to {out_dir}") from None


def check_export(space: SearchSpace, arch: Any, out_dir: Path, *, opset: int = 17, force: bool = False) -> None:
    """Refuse what ``export_arch`` would refuse (the opset, a folder it could not or must not write) before
    anything is written: commands that export after other work (``deploy`` opens a device session first,
    ``export --format trt`` may ask the device) call it up front, so bad input starts no session."""
    from exporters.errors import ExportCheckError
    from exporters.onnx_export import check_opset

    from edgenas.outdirs import check_out_dir

    try:
        check_opset(opset)
    except ExportCheckError as exc:
        raise InputError(exc.message, hint=exc.hint) from None
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    if not force:
        _refuse_foreign_folder(out_dir, space, arch)


#: the temporary file an export writes before its checks pass; one left behind (``kill -9``) is ours to replace
PARTIAL_NAME = ".model.onnx.partial"


def same_network(space: SearchSpace, record: Any, arch: Any) -> bool:
    """Whether an export's recorded architecture is the network ``arch`` is: compared as the space's canonical
    id, as the export folder is named (genes past a stage's depth build nothing, so two records that differ
    only there are one network, one folder; comparing the records refused the second in its own folder)."""
    try:
        return space.arch_id(space.from_dict(record)) == space.arch_id(arch)
    except (InputError, ValueError, KeyError, TypeError, AttributeError):
        return False


def vouches_for(man: Any, space: SearchSpace, arch: Any, onnx_path: Path, *, opset: int, dynamic_batch: bool,
                precision: str) -> bool:
    """Whether an export's manifest may stand in for the checks an export runs: it says what this export would
    say (the space, the network, the space's input shape for it, the file, the opset and batch mode) and records
    a parity check at today's tolerances for ``precision`` that passed, each output and all. edgenas writes a
    manifest only after its check passed, so one that says otherwise was edited or damaged: the export is made
    again, and the check decides (a real failure is an ``ExportError``, exit 5, as for any export). A hand-set
    ``"passed": false`` was reused as it was (``export`` printed FAIL with exit 0, ``deploy`` measured it), and
    so was an input shape of [1, 3, 1e9, 28]."""
    from exporters.parity import tolerances

    p = man.parity
    outputs = p.get("outputs") if isinstance(p, dict) else None
    return (man.space == space.name and same_network(space, man.arch, arch)
            and tuple(man.input_shape) == tuple(space.input_shape(arch)) and man.onnx_file == onnx_path.name
            and man.opset == opset and man.dynamic_batch == dynamic_batch
            and isinstance(p, dict) and p.get("passed") is True and p.get("precision") == precision
            and p.get("tolerances") == tolerances(precision)
            and all(is_finite(p.get(k)) and p[k] >= 0 for k in ("max_abs", "median_abs"))
            and isinstance(outputs, list) and bool(outputs)
            and all(isinstance(o, dict) and o.get("passed") is True for o in outputs))


def _refuse_foreign_folder(out_dir: Path, space: SearchSpace, arch: Any) -> None:
    """An existing, non-empty folder is written only when it holds an export of this very architecture (or
    only the temporary file of an export killed before it finished, which refused every later export and
    deploy of the architecture to its folder)."""
    if not out_dir.is_dir() or not any(p.name != PARTIAL_NAME for p in out_dir.iterdir()):
        return
    from exporters.errors import ExportCheckError
    from exporters.manifest import Manifest

    from edgenas.errors import OutputError

    manifest = out_dir / "manifest.json"
    try:
        same = manifest.is_file() and same_network(space, Manifest.load(manifest).arch, arch)
    except (ExportCheckError, InputError, ValueError, KeyError, TypeError, OSError):
        same = False
    if not same:
        raise OutputError(f"--out {out_dir} is not empty and holds no edgenas export of this architecture",
                          hint="choose an empty or new folder, or pass --force to overwrite model.onnx and "
                               "manifest.json there")


def _export(space: SearchSpace, arch: Any, record: dict[str, Any], out_dir: Path, opset: int,
            dynamic_batch: bool, simplify: bool, precision: str, step: Callable[[str, int, int], None]
            ) -> ExportResult:
    from exporters.errors import ExportCheckError
    from exporters.manifest import Manifest
    from exporters.onnx_export import export_onnx
    from exporters.parity import check_parity

    onnx_path, manifest_path = out_dir / "model.onnx", out_dir / "manifest.json"
    step("export", 0, 3)
    model = build_for_export(space, arch)
    shape = tuple(space.input_shape(arch))
    # Export to a temporary name so a failed check never leaves a half-valid model.onnx behind.
    tmp_path = out_dir / PARTIAL_NAME
    try:
        info = export_onnx(model, shape, tmp_path, opset=opset, dynamic_batch=dynamic_batch,
                           simplify=simplify)
        step("export", 1, 3)
        # checked under its temporary name, reported under the name it is kept (or refused) as
        report = dataclasses.replace(check_parity(model, tmp_path, precision=precision, batch=1),
                                     onnx_path=str(onnx_path))
        step("export", 2, 3)
        report.raise_if_failed()
    except ExportCheckError as exc:
        tmp_path.unlink(missing_ok=True)
        raise ExportError(str(exc)) from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    tmp_path.replace(onnx_path)
    try:
        man = Manifest.create(arch=record, space=space.name, opset=opset, input_shape=list(shape),
                              dynamic_batch=dynamic_batch, onnx_path=onnx_path, parity=report.to_dict())
        man.save(manifest_path)
    except BaseException:
        onnx_path.unlink(missing_ok=True)  # a model without its manifest is no export
        raise
    step("export", 3, 3)
    return ExportResult(onnx_path, manifest_path, info.sha256, False, report.to_dict(), shape)


def build_for_export(space: SearchSpace, arch: Any) -> Any:
    """The architecture's network, its weights drawn from a seed of its id: an export of the same record
    is the same file, and ``model.pt`` the same network as ``model.onnx`` (nb201's PyTorch-default
    initialisation drew from the global generator: every export differed, and the two files beside each
    other were two networks). The caller's random state is left as it was."""
    import torch

    from edgenas.spaces.mbv3_blocks import key_seed

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(key_seed(space.arch_id(arch)))
        return space.build_model(arch).eval()


def torchscript_beside(space: SearchSpace, arch: Any, exp: ExportResult) -> Path:
    """``model.pt`` beside the export's ``model.onnx``: the same model traced to TorchScript, with its input
    shape and the ONNX file's SHA-256 inside (what the devices' ``torch`` runtime times). Made again when
    the file is missing or was traced for another ONNX file."""
    from exporters.errors import ExportCheckError
    from exporters.torchscript_export import export_torchscript, stored_meta

    path = exp.onnx_path.with_name("model.pt")
    meta = stored_meta(path) if path.is_file() else None
    if meta is not None and meta.get("onnx_sha256") == exp.sha256:
        return path
    from exporters.parity import check_parity

    model = build_for_export(space, arch)
    if exp.reused and not check_parity(model, exp.onnx_path, batch=1).passed:
        # an export made before the weights were seeded (nb201): tracing this network would put another one
        # beside model.onnx
        raise ExportError(f"{exp.onnx_path} holds other weights than this edgenas builds for the architecture "
                          "(it was exported by an earlier version), so model.pt would be another network",
                          hint="export it again with --force, which makes both files from one network")
    try:
        export_torchscript(model, tuple(exp.input_shape), path, meta={"onnx_sha256": exp.sha256, "space": space.name})
    except ExportCheckError as exc:
        raise ExportError(str(exc)) from None
    return path
