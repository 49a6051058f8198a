"""The errors meant for users: each kind's exit code (README's table), one readable ``str`` with the hint, and
the structured data the callers read. Found by mutation testing: an exit code off by one for InfeasibleError,
ExportError, LLMError or a SIGTERM'd search, a lost hint or device name, passed every test run in-process."""

from __future__ import annotations

import pytest

from edgenas.errors import (AgentError, BadAnswerError, DeviceError, EdgenasError, ExportError, HostKeyError,
                            InfeasibleError, InputError, LLMError, LLMInputError, OutputError, RuntimeMissingError,
                            SearchInterrupted)


@pytest.mark.parametrize("cls, code", [(EdgenasError, 1), (InputError, 2), (LLMInputError, 2), (ExportError, 5),
                                       (OutputError, 6), (LLMError, 6), (SearchInterrupted, 130)])
def test_each_kind_exits_with_its_documented_code(cls, code):
    assert cls.exit_code == code and cls("x").exit_code == code


@pytest.mark.parametrize("cls", [DeviceError, BadAnswerError, RuntimeMissingError])
def test_a_device_error_names_the_device_and_exits_3(cls):
    e = cls("jetson-1", "unreachable", hint="check the cable")
    message = "device 'jetson-1': unreachable"
    assert (e.exit_code, e.device, e.message, e.hint) == (3, "jetson-1", message, "check the cable")
    assert str(e) == f"{message} (check the cable)" and e.args == (message,)


def test_str_is_the_message_and_the_hint_only_when_there_is_one():
    assert str(InputError("bad arch", hint="fix it")) == "bad arch (fix it)"
    assert str(InputError("bad arch")) == str(InputError("bad arch", hint="")) == "bad arch"
    assert InputError("bad arch").hint is None and InputError("bad arch").args == ("bad arch",)


def test_structured_data_of_host_key_agent_and_infeasible_errors():
    e = HostKeyError("pi", "changed key", host="[10.0.0.2]:2222", key_type="ssh-ed25519", fingerprint="SHA256:new",
                     known_fingerprints=("SHA256:old",), hint="check it")
    assert (e.exit_code, e.device, e.host, e.key_type, e.fingerprint, e.known_fingerprints) == \
        (3, "pi", "[10.0.0.2]:2222", "ssh-ed25519", "SHA256:new", ["SHA256:old"])
    assert str(e) == "device 'pi': changed key (check it)"
    a = AgentError("pi", "MemoryError", "out of memory", hint="smaller batch")
    assert (a.exit_code, a.type, a.agent_message) == (3, "MemoryError", "out of memory")
    assert str(a) == "device 'pi': agent error MemoryError: out of memory (smaller batch)"
    i = InfeasibleError("no network meets 1 ms", min_latency_ms=2.5, hint="raise the budget")
    assert (i.exit_code, i.min_latency_ms, str(i)) == (4, 2.5, "no network meets 1 ms (raise the budget)")
    assert isinstance(LLMInputError("x"), LLMError) and isinstance(BadAnswerError("d", "m"), DeviceError)
