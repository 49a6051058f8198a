"""torch -> ONNX export (and TorchScript for the torch runtime), ONNX checks and parity, ONNX -> TensorRT
(see DESIGN.md).

Importing ``exporters`` (and ``exporters.tensorrt``) needs neither torch nor onnx: the device agent
ships ``DEVICE_FILES`` in its zipapp (Python 3.8). Everything is loaded on first attribute access.
"""

# What the device agent must ship (stdlib + optional tensorrt/CUDA bindings/numpy, Python 3.8).
# tensorrt.py builds engines; _trt_runner.py (imported by it) loads TensorRT and runs engines.
DEVICE_FILES = ("__init__.py", "errors.py", "_io.py", "tensorrt.py", "_trt_runner.py")

_LAZY = {
    "ExportCheckError": "exporters.errors",
    "TensorRTMissing": "exporters.errors",
    "ExportInfo": "exporters.onnx_export",
    "export_onnx": "exporters.onnx_export",
    "export_torchscript": "exporters.torchscript_export",
    "load_checked": "exporters.checks",
    "ParityReport": "exporters.parity",
    "check_parity": "exporters.parity",
    "Manifest": "exporters.manifest",
    "build_engine": "exporters.tensorrt",
    "builder_flags_for": "exporters.tensorrt",
    "tensorrt_available": "exporters.tensorrt",
    "open_runner": "exporters.tensorrt",
    "EngineRunner": "exporters._trt_runner",
}

__all__ = ["DEVICE_FILES"] + sorted(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module 'exporters' has no attribute {!r}".format(name))
    import importlib

    return getattr(importlib.import_module(module), name)
