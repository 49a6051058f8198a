"""The host's side of the runtime names (``devices.runtimes``): what a call sends as its provider, where
calls overlap on the device, and which precisions each runtime measures."""

from __future__ import annotations

import dataclasses

import pytest

from edgenas.devices.runtimes import RUNTIMES, calls_overlap, precisions_for, provider_for, runtime_names


def test_the_registered_runtimes_and_what_each_builds():
    assert runtime_names() == ["onnxruntime", "tensorrt", "torch"]
    assert [RUNTIMES.get(n).builds_engine for n in runtime_names()] == [False, True, False]
    assert RUNTIMES.get("onnxruntime").providers == ("cpu", "cuda", "tensorrt")
    assert RUNTIMES.get("torch").providers == ("cpu", "cuda") and RUNTIMES.get("tensorrt").providers == ()
    with pytest.raises(dataclasses.FrozenInstanceError):  # the registry's entries are shared by every caller
        RUNTIMES.get("torch").builds_engine = True


@pytest.mark.parametrize("runtime, provider, sent", [
    ("onnxruntime", None, None), ("onnxruntime", "cpu", None), ("onnxruntime", "cuda", "cuda"),
    ("onnxruntime", "tensorrt", "tensorrt"), ("torch", "cpu", None), ("torch", "cuda", "cuda"),
    ("torch", "tensorrt", "cuda"),  # a GPU provider torch lacks: its GPU
    ("tensorrt", None, None), ("tensorrt", "cuda", None), ("tensorrt", "cpu", None),  # always the GPU
])
def test_the_provider_a_call_sends(runtime, provider, sent):
    assert provider_for(runtime, provider) == sent


@pytest.mark.parametrize("runtime, provider, overlap", [
    ("tensorrt", None, True), ("torch", "cuda", True), ("torch", None, False),
    ("onnxruntime", None, False), ("onnxruntime", "cuda", False), ("onnxruntime", "tensorrt", False),
])
def test_calls_overlap_only_where_a_call_returns_before_the_device_is_done(runtime, provider, overlap):
    assert calls_overlap(runtime, provider) is overlap


@pytest.mark.parametrize("runtime, provider, precisions", [
    ("tensorrt", None, ("fp32", "fp16", "int8")), ("torch", None, ("fp32", "fp16")),
    ("torch", "cuda", ("fp32", "fp16")), ("onnxruntime", "tensorrt", ("fp32", "fp16")),
    ("onnxruntime", None, ("fp32",)), ("onnxruntime", "cuda", ("fp32",)),
])
def test_the_precisions_each_runtime_measures(runtime, provider, precisions):
    assert precisions_for(runtime, provider) == precisions
