"""Models and flags the host can refuse itself, before a device session: huge or empty inputs, types and
operators the device cannot run, weights in external files, bad TorchScript shapes, misleading suffixes,
deploy and export flags checked too late. Each is one error line, and the project (``.edgenas/`` included:
the agent's install, the device's work dir, the block cache) is left as it was."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli.test_bad_input import one_line_error

ARCH = {"space": "mbv3-tiny", "schema": 1, "ks": [3, 3, 3, 3], "e": [3, 3, 3, 3], "d": [1, 1], "r": 16}


def tree(root: Path) -> list[Path]:
    """Every path under ``root``, ``.edgenas/`` included."""
    return sorted(p.relative_to(root) for p in root.rglob("*"))


@pytest.fixture
def fresh(fresh, tmp_path):
    """The empty project of tests/cli/conftest.py; the files handed to the CLI lie outside it, in
    ``tmp_path / "in"``."""
    (tmp_path / "in").mkdir()
    return fresh


def arch_file(folder: Path) -> Path:
    path = folder / "a.json"
    path.write_text(json.dumps(ARCH))
    return path


def onnx_model(path: Path, shape: list, *, elem: str = "FLOAT", op: str = "Relu", domain: str = "",
               external: bool = False) -> Path:
    """A one-node model ``input -> op -> output``; with ``external`` an Add of a weight kept in ``m.data``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    kind = getattr(TensorProto, elem)
    x = helper.make_tensor_value_info("input", kind, shape)
    y = helper.make_tensor_value_info("output", kind, shape)
    nodes, inits = [helper.make_node(op, ["input"], ["output"], domain=domain)], []
    if external:
        inits = [numpy_helper.from_array(np.ones(shape, np.float32), "w")]
        nodes = [helper.make_node("Add", ["input", "w"], ["output"])]
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=opsets)
    model.ir_version = 8
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, location="m.data", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("shape, kw, fragments", [
    ([100000, 100000, 1000], {}, ("1e+13 elements", "shape [100000, 100000, 1000]", "268,435,456")),
    ([2 ** 62, 2 ** 62], {}, ("over the limit", "1 GiB as float32")),
    (["n", 100000, 100000], {}, ("over the limit",)),  # a dynamic size is drawn as 1: still 1e10
    # (2^62)^17 is about 10^317.3, more than a float holds: the message's "{total:.3g}" raised OverflowError
    ([2 ** 62] * 17, {}, ("at least 1e+317 elements", "over the limit")),
    ([1, 3], {"elem": "STRING", "op": "Identity"}, ("type STRING", "cannot feed", "cast inside the model")),
    ([0, 3], {}, ("size 0", "shape [0, 3]", "give that dimension a size")),
    ([1, 3], {"op": "Foo", "domain": "my.custom"}, ("operator Foo", "custom domain 'my.custom'",
                                                    "standard ONNX operators")),
    ([64, 64], {"external": True}, ("external data file (m.data)", "onnx.save_model(onnx.load(")),
])
def test_measure_refuses_a_model_the_device_could_not_run_on_the_host(fresh, cli, tmp_path, shape, kw, fragments):
    # each passed the host's check and failed on the device (MemoryError for 72.8 TiB, an unsupported type,
    # an unregistered op, a missing data file) as a raw agent error, exit 3, after .edgenas/ was set up
    model = onnx_model(tmp_path / "in" / "m.onnx", shape, **kw)
    res = cli("measure", "local", str(model))
    one_line_error(res, "m.onnx", *fragments)
    assert res.code == 2
    assert tree(fresh) == []


def test_a_model_with_dynamic_sizes_is_still_measured(fresh, cli, tmp_path):
    # named and negative sizes are drawn as 1, and the inputs' check leaves them alone
    model = onnx_model(tmp_path / "in" / "m.onnx", ["batch", -1, 8])
    res = cli("measure", "local", str(model), "--json")
    assert res.code == 0, res.err
    assert res.json()["stats"]["n"] > 0 and res.json()["model_path"] == str(model)


@pytest.fixture(scope="module")
def traced_relu():
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(torch.nn.ReLU(), torch.randn(1, 8))


@pytest.mark.parametrize("shapes, fragment", [
    ([[100000, 100000, 1000]], "1e+13 input elements, over the limit of 268,435,456"),
    ([[-1, 3, 16, 16]], "each size must be a whole number of at least 1"),
    ([[True, 3]], "each size must be a whole number of at least 1"),
    ([[2.0, 3]], "each size must be a whole number of at least 1"),
    ([], "expected a list of 1 to 64 shapes"),
    (["x"], "each shape must be a list of 1 to 8 sizes"),
    ([[1] * 9], "each shape must be a list of 1 to 8 sizes"),
    ([[100000, 10000]] * 3, "3e+09 input elements"),  # each under the agent's per-input cap, too many together
    ([[10 ** 200, 10 ** 200]], "at least 1e+400 input elements"),  # no float holds 10^400: was an OverflowError
    # the stored shapes are shown whole up to 80 characters, then cut
    ([[-1, 1, 1] + [10] * 17], "input_shapes [[-1, 1, 1" + ", 10" * 17 + "]]: each shape must be"),
    ([[-1, 1] + [10] * 18], "input_shapes [[-1, 1" + ", 10" * 18 + "]…: each shape must be"),  # 81
])
def test_measure_refuses_torchscript_with_bad_input_shapes(fresh, cli, tmp_path, traced_relu, shapes, fragment):
    import warnings

    import torch

    model = tmp_path / "in" / "m.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(traced_relu, str(model), _extra_files={"edgenas.json": json.dumps({"input_shapes": shapes})})
    res = cli("measure", "local", str(model), "--runtime", "torch")
    one_line_error(res, "m.pt stores input_shapes", fragment, "edgenas export ARCH.json --format torchscript")
    assert res.code == 2
    assert tree(fresh) == []


def test_a_file_of_the_wrong_suffix_gets_a_hint_that_fits_it(fresh, cli, tmp_path, traced_relu):
    # an ONNX file named model.bin was told to export a TorchScript file
    import shutil

    onnx_file = onnx_model(tmp_path / "in" / "m.onnx", [1, 8])
    shutil.copy(onnx_file, tmp_path / "in" / "model.bin")
    res = cli("measure", "local", str(tmp_path / "in" / "model.bin"))
    one_line_error(res, "not model.bin", "if it is an ONNX model, rename it to model.onnx")
    assert "TorchScript" not in res.err and res.code == 2
    traced_relu.save(str(tmp_path / "in" / "ts.bin"))
    one_line_error(cli("measure", "local", str(tmp_path / "in" / "ts.bin")),
                   "it looks like TorchScript: rename it to ts.pt and measure it with --runtime torch")
    one_line_error(cli("measure", "local", str(tmp_path / "in" / "model.bin"), "--runtime", "torch"),
                   "times TorchScript (.pt) files", "if it is a TorchScript file, rename it to model.pt")
    one_line_error(cli("measure", "local", str(onnx_file), "--runtime", "torch"),
                   "measure ONNX files with --runtime onnxruntime")
    traced_relu.save(str(tmp_path / "in" / "ts.pt"))
    one_line_error(cli("measure", "local", str(tmp_path / "in" / "ts.pt")), "runtime onnxruntime times ONNX",
                   "measure TorchScript files with --runtime torch")
    assert tree(fresh) == []


def _dangling(folder: Path) -> Path:
    os.symlink(folder / "nowhere", folder / "dangling")
    return folder / "dangling"


@pytest.mark.parametrize("flags, code, fragments", [
    (lambda d: ["--runtime", "bogus"], 2, ("unknown runtime 'bogus'",)),
    (lambda d: ["--out", str(d / "afile")], 6, ("afile is an existing file",)),
    (lambda d: ["--out", str(_dangling(d))], 6, ("dangling is a symbolic link to a missing target",)),
    (lambda d: ["--out", str(d / "full")], 6, ("is not empty and holds no edgenas export",)),
])
def test_deploy_refuses_its_flags_before_it_opens_a_session(fresh, cli, tmp_path, flags, code, fragments):
    # the session came first: the agent's install, the device's work dir and the reference model were written
    # before the runtime or the --out folder was checked
    (fresh / "afile").write_text("x\n")
    (fresh / "full").mkdir()
    (fresh / "full" / "notes.txt").write_text("mine\n")
    before = tree(fresh)
    res = cli("deploy", "local", str(arch_file(tmp_path / "in")), *flags(fresh))
    one_line_error(res, *fragments)
    assert res.code == code
    assert tree(fresh) == sorted(before + ([Path("dangling")] if "dangling" in res.err else []))
    assert not (fresh / ".edgenas").exists()


def test_export_trt_on_a_device_without_tensorrt_says_what_to_do_and_creates_nothing(fresh, cli, tmp_path):
    # it wrote .edgenas/ (the agent, the device's work dir) and then said "TensorRT is missing on this device;
    # deploy will use onnxruntime instead", an odd thing for an export to say
    from exporters.tensorrt import tensorrt_available

    if tensorrt_available()[0]:
        pytest.skip("TensorRT is installed here: the engine is built")
    res = cli("export", str(arch_file(tmp_path / "in")), "--format", "trt", "--device", "local")
    one_line_error(res, "device 'local': cannot build a TensorRT engine", "not installed on this device",
                   "export ONNX instead with --format onnx", "a device that has TensorRT")
    assert "deploy will use" not in res.err and res.code == 3
    assert tree(fresh) == []


def test_export_refuses_a_device_without_trt_and_an_out_link_to_nothing(fresh, cli, tmp_path):
    arch = str(arch_file(tmp_path / "in"))
    res = cli("export", arch, "--device", "local")  # was silently ignored: an ONNX export, no engine
    one_line_error(res, "--device is only used with --format trt", "not with --format onnx")
    assert res.code == 2
    link = _dangling(fresh)
    loop = fresh / "loop"
    os.symlink(loop, loop)
    before = tree(fresh)
    for out, what in ((link, "--out"), (loop, "--out"), (link / "sub", "--out")):  # was "File exists"
        res = cli("export", arch, "--out", str(out))
        one_line_error(res, what, "is a symbolic link to a missing target or a link loop", "remove or fix the link")
        assert res.code == 6 and "File exists" not in res.err
    assert tree(fresh) == before


def test_inputs_of_exactly_the_limit_pass_the_hosts_check_and_one_element_more_does_not(tmp_path):
    from edgenas.errors import InputError
    from edgenas.fleet.deploy import MAX_INPUT_ELEMENTS, check_input_shapes, check_onnx_for_device

    assert MAX_INPUT_ELEMENTS == 2 ** 28
    check_input_shapes([[2 ** 14, 2 ** 14]], tmp_path / "m.pt")  # 2^28, 1 GiB as float32: at the limit
    check_input_shapes([[2 ** 27], [2 ** 26], [2 ** 25, 2]], tmp_path / "m.pt")  # together, too
    check_input_shapes([[1]] * 63 + [[1] * 8], tmp_path / "m.pt")  # 64 inputs, one of 8 sizes: the most it takes
    with pytest.raises(InputError, match="expected a list of 1 to 64 shapes"):
        check_input_shapes([[1]] * 65, tmp_path / "m.pt")
    with pytest.raises(InputError, match=r"2\.68e\+08 input elements, over the limit"):
        check_input_shapes([[2 ** 14, 2 ** 14], [1]], tmp_path / "m.pt")
    check_onnx_for_device(onnx_model(tmp_path / "at.onnx", [2 ** 14, 2 ** 14]))
    check_onnx_for_device(onnx_model(tmp_path / "dyn.onnx", ["batch", 1, 2 ** 28]))  # a dynamic size is drawn as 1
    with pytest.raises(InputError, match=r"its inputs hold 2\.68e\+08 elements"):
        check_onnx_for_device(onnx_model(tmp_path / "over.onnx", [2 ** 28 + 1]))


def test_measure_of_a_missing_torchscript_file_says_it_is_not_there(fresh, cli, tmp_path):
    res = cli("measure", "local", str(tmp_path / "in" / "gone.pt"), "--runtime", "torch")
    one_line_error(res, "model file not found", "gone.pt")  # not "is not a TorchScript file with its input shapes"
    assert res.code == 2
    assert tree(fresh) == []


def test_the_hosts_input_check_names_what_it_refuses(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgenas.errors import InputError
    from edgenas.fleet.deploy import check_onnx_for_device

    def model(name, inputs, inits=()):
        graph = helper.make_graph([helper.make_node("Identity", [inputs[-1].name], ["output"])], "g", inputs,
                                  [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], list(inits))
        path = tmp_path / name
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        return path

    # an initializer listed among the inputs (older exporters) is not drawn, and the inputs after it are checked
    w = numpy_helper.from_array(np.ones(3, np.float32), "w")
    wi = helper.make_tensor_value_info("w", TensorProto.FLOAT, [3])
    empty = helper.make_tensor_value_info("x", TensorProto.FLOAT, [0, 3])
    with pytest.raises(InputError, match=r"input 'x' has a size 0 \(shape \[0, 3\]\)"):
        check_onnx_for_device(model("init.onnx", [wi, empty], [w]))
    long = helper.make_tensor_value_info("y" * 70, TensorProto.FLOAT, [0])  # a name is cut to 60 characters
    with pytest.raises(InputError, match="input '" + "y" * 60 + "' has a size 0"):
        check_onnx_for_device(model("long.onnx", [long]))
    # the input named is the one of the most elements
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 2 ** 28])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [3, 1])
    with pytest.raises(InputError, match=r"its inputs hold 5\.37e\+08 elements per inference \(input 'a' has shape "
                                         r"\[2, 268435456\]\)"):
        check_onnx_for_device(model("two.onnx", [a, b]))
    # the name of a weights file and of a custom operator and its domain are cut to 80 and 60 characters
    from onnx.external_data_helper import set_external_data

    t = numpy_helper.from_array(np.ones(3, np.float32), "w")
    set_external_data(t, location="d" * 90)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    with pytest.raises(InputError, match=r"external data file \(" + "d" * 80 + r"\)"):
        check_onnx_for_device(model("ext.onnx", [wi, helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])], [t]))
    with pytest.raises(InputError, match="operator " + "F" * 60 + " of the custom domain '" + "c" * 60 + "'"):
        check_onnx_for_device(onnx_model(tmp_path / "op.onnx", [1, 3], op="F" * 70, domain="c" * 70))
    seq = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, [3])
    with pytest.raises(InputError, match="input 's' is a sequence_type of no tensor type; the device feeds tensors"):
        check_onnx_for_device(model("seq.onnx", [seq]))
    # a shape is shown whole up to 80 characters, then cut
    sizes = [0, 1, 1, 1] + [10] * 17
    shown = "[0, 1, 1, 1" + ", 10" * 17 + "]"
    assert len(shown) == 80
    with pytest.raises(InputError, match=r"\(shape " + shown.replace("[", r"\[").replace("]", r"\]") + r"\), so"):
        check_onnx_for_device(model("80.onnx", [helper.make_tensor_value_info("x", TensorProto.FLOAT, sizes)]))
    sizes, shown = [0, 1, 1] + [10] * 18, "[0, 1, 1" + ", 10" * 18 + "]"
    assert len(shown) == 81
    with pytest.raises(InputError, match=r"\(shape " + shown[:-1].replace("[", r"\[") + r"…\]\), so"):
        check_onnx_for_device(model("81.onnx", [helper.make_tensor_value_info("x", TensorProto.FLOAT, sizes)]))


def test_an_operator_of_a_custom_domain_inside_a_branch_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgenas.errors import InputError
    from edgenas.fleet.deploy import check_onnx_for_device

    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    custom = helper.make_graph([helper.make_node("Foo", ["x"], ["y"], domain="my.custom")], "then", [], [out])
    plain = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "else", [], [out])
    node = helper.make_node("If", ["c"], ["y"], then_branch=custom, else_branch=plain)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                                            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])], [out])
    path = tmp_path / "if.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("my.custom", 1)]), str(path))
    with pytest.raises(InputError, match="if.onnx uses operator Foo of the custom domain 'my.custom'"):
        check_onnx_for_device(path)
    check_onnx_for_device(path, "tensorrt")  # TensorRT may load it as a plugin
