"""Registry plumbing: built-in plug-in modules load when asked (a lookup only as far as its name), a class
states its name once."""

import sys
import textwrap

import pytest

from edgenas.errors import InputError
from edgenas.registry import Registry


@pytest.fixture()
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path where a test writes plug-in modules; they are unloaded afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_builtins_load_once_on_first_question(plugin_dir):
    reg = Registry("widget", builtins=("reg_plug_a", "reg_plug_missing"))
    (plugin_dir / "reg_plug_a.py").write_text(textwrap.dedent("""
        import test_registry_target as t
        LOADS = t.LOADS = getattr(t, "LOADS", 0) + 1
        @t.REG.register("alpha", aliases=("a",), help="first widget")
        class Alpha:
            pass
        @t.REG.register()
        class Beta:
            '''second widget'''
            name = "beta"
    """))
    target = type(sys)("test_registry_target")
    target.REG = reg
    sys.modules["test_registry_target"] = target
    assert reg._items == {}  # nothing imported at construction
    assert "a" in reg and reg.canonical("a") == "alpha"
    assert reg.names() == ["alpha", "beta"] and target.LOADS == 1
    assert reg.get("alpha").name == "alpha"  # the registry names the class
    assert reg.describe() == {"alpha": "first widget", "beta": "second widget"}
    reg.names()
    assert target.LOADS == 1  # once; the missing module was passed over
    with pytest.raises(InputError, match="unknown widget 'gamma'.*known: alpha, beta"):
        reg.get("gamma")


def test_a_lookup_imports_builtins_only_until_the_name_is_known(plugin_dir):
    """``search --table`` looks up ``tabular`` and must not pay for the torch of the modules after it."""
    reg = Registry("widget", builtins=("reg_lazy_a", "reg_lazy_b", "reg_lazy_c"))
    target = type(sys)("test_registry_lazy")
    target.REG = reg
    sys.modules["test_registry_lazy"] = target
    for mod, name, body in (("reg_lazy_a", "alpha", ""), ("reg_lazy_b", "beta", "t.REG.get('alpha')"),
                            ("reg_lazy_c", "gamma", "")):
        (plugin_dir / f"{mod}.py").write_text(textwrap.dedent(f"""
            import test_registry_lazy as t
            {body}
            t.REG.register("{name}", object(), aliases=("{name[0]}",))
        """))
    assert reg.get("alpha") is not None
    assert "reg_lazy_a" in sys.modules and "reg_lazy_b" not in sys.modules
    assert "b" in reg  # an alias is a name too; b asks the registry while it loads, which is fine
    assert "reg_lazy_b" in sys.modules and "reg_lazy_c" not in sys.modules
    with pytest.raises(InputError, match="unknown widget 'delta'.*known: alpha, beta, gamma"):
        reg.get("delta")  # an unknown name has looked everywhere
    assert 42 not in reg and reg.names() == ["alpha", "beta", "gamma"]


def test_broken_builtin_module_is_not_hidden(plugin_dir):
    (plugin_dir / "reg_plug_broken.py").write_text("import reg_no_such_dependency\n")
    reg = Registry("widget", builtins=("reg_plug_broken",))
    with pytest.raises(ModuleNotFoundError, match="reg_no_such_dependency"):
        reg.names()


def test_today_api_and_name_conflicts():
    reg: Registry = Registry("widget")

    @reg.register("same")
    class SaysItsName:
        name = "same"

    reg.register("obj", object(), help="an instance keeps its own attributes")
    assert reg.names() == ["obj", "same"]
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("same", object())
    with pytest.raises(ValueError, match="says its name is 'other'"):
        @reg.register("third")
        class Other:
            name = "other"
    with pytest.raises(ValueError, match="has no name"):
        reg.register()(object())
    with pytest.raises(ValueError, match="has no name"):
        reg.register("", object())

    @reg.register
    class Bare:   # ``@reg.register`` without brackets: the class's own name
        name = "bare"

    assert reg.get("bare") is Bare and list(reg) == ["bare", "obj", "same"]
    reg.register("first", object(), aliases=("f",))
    for name, aliases in (("second", ("same",)), ("second", ("f",)), ("f", ())):  # an alias is a name too
        with pytest.raises(ValueError, match="registered twice"):
            reg.register(name, object(), aliases=aliases)
    assert reg.names() == ["bare", "first", "obj", "same"] and reg.canonical("f") == "first"   # nothing half-added


def test_project_registries_need_no_loader_call():
    from edgenas.devices.runtimes import RUNTIMES
    from edgenas.evaluate.base import EVALUATORS
    from edgenas.search.base import STRATEGIES
    from edgenas.spaces import SPACES

    assert {"nb201", "mbv3-small"} <= set(SPACES.names())
    assert {"random", "nsga2", "ri-iwoa"} <= set(STRATEGIES.names())
    assert STRATEGIES.get("rea").name == "evolution" and STRATEGIES.get("riiwoa").name == "ri-iwoa"
    assert {"tabular", "synflow"} <= set(EVALUATORS.names())
    assert RUNTIMES.get("tensorrt").builds_engine and not RUNTIMES.get("onnxruntime").builds_engine


def test_host_runtimes_are_the_agents_runtimes():
    from device_agents.edgenas_agent import runtimes as agent_runtimes
    from edgenas.devices.profiles import RUNTIMES as PROFILE_RUNTIMES
    from edgenas.devices.runtimes import RUNTIMES

    assert tuple(RUNTIMES.names()) == agent_runtimes.NAMES == PROFILE_RUNTIMES


def test_a_module_another_thread_is_importing_is_waited_for(plugin_dir):
    """The API answers requests in threads: while one imported the first built-in module, another found every
    module taken and answered "unknown search space 'nb201' (known: none)" on a fresh server."""
    import threading

    reg = Registry("widget", builtins=("reg_slow_a", "reg_slow_b"))
    target = type(sys)("test_registry_slow")
    target.REG, target.STARTED = reg, threading.Event()
    sys.modules["test_registry_slow"] = target
    (plugin_dir / "reg_slow_a.py").write_text(textwrap.dedent("""
        import time
        import test_registry_slow as t
        t.STARTED.set()
        time.sleep(0.5)
        t.REG.register("alpha", object())
    """))
    (plugin_dir / "reg_slow_b.py").write_text("import test_registry_slow as t\nt.REG.register('beta', object())\n")
    first = threading.Thread(target=reg.get, args=("alpha",))
    first.start()
    assert target.STARTED.wait(10)
    try:
        assert reg.get("alpha") is not None  # while the first thread is still inside reg_slow_a
        assert reg.names() == ["alpha", "beta"]
    finally:
        first.join(10)
