"""What a device profile expects is checked where it matters: a runtime or provider the device lacks refuses a
profile before any block is exported or pushed, and a power mode other than the expected one (or none) is a
warning in ``profile``, ``deploy`` and ``fleet status``, not only in ``device info`` (a part-N audit finding,
5 December)."""

from __future__ import annotations


def _profile(root, name: str, **settings: str) -> None:
    lines = ["[device]", f'name = "{name}"', 'transport = "local"'] + [f'{k} = "{v}"' for k, v in settings.items()]
    (root / "profiles").mkdir(exist_ok=True)
    (root / "profiles" / f"{name}.toml").write_text("\n".join(lines) + "\n")


def test_a_provider_the_device_lacks_refuses_the_profile_before_any_block_is_exported(fresh, cli):
    _profile(fresh, "g", runtime="onnxruntime", provider="cuda")
    res = cli("profile", "g", "--space", "mbv3-tiny")
    assert res.code == 3 and len(res.err.strip().splitlines()) == 1, res.err
    assert "CUDAExecutionProvider is not available" in res.err
    state = fresh / ".edgenas"  # the agent's own folder only: no blocks, no lock, no fingerprint record
    assert not (state / "blocks").exists() and not (state / "fingerprints").exists()
    assert not list(state.rglob("*.lock")) and not (fresh / "luts").exists()


def test_an_expected_power_mode_the_device_does_not_report_is_a_warning(fresh, cli):
    _profile(fresh, "pc", power_mode="MAXN")  # this machine has no nvpmodel: the mode is unknown
    res = cli("profile", "pc", "--space", "mbv3-tiny", "--json")
    assert res.code == 0, res.err
    assert "reports none" in res.json()["power_mode_note"]
    res = cli("profile", "pc", "--space", "mbv3-tiny")  # reused: still said
    assert res.code == 0 and "warning: the profile expects power mode MAXN" in res.err and "power mode" not in res.out
    (fresh / "profiles" / "fleet.toml").write_text('[fleet]\ndevices = ["pc"]\n')
    status = cli("fleet", "status", "--json")
    assert status.code == 0, status.err
    assert [r["power_mode_note"] for r in status.json() if r["device"] == "pc"] == [
        "the profile expects power mode MAXN, and the device reports none (no nvpmodel answer)"]


def test_device_info_and_fleet_refresh_say_the_power_mode_too(fresh, cli):
    """device info warned only of another mode, not of none reported; fleet refresh rebuilt a table with no
    word of the mode it was timed in."""
    _profile(fresh, "pc", power_mode="MAXN")
    info = cli("device", "info", "pc", "--json")
    assert info.code == 0 and "reports none" in info.json()["power_mode_note"]
    assert info.json()["device"] == "pc"  # it named no device
    assert "the profile expects power mode MAXN" in cli("device", "info", "pc").out
    (fresh / "profiles" / "fleet.toml").write_text('[fleet]\ndevices = ["pc"]\n')
    res = cli("fleet", "refresh", "--space", "mbv3-tiny", "--json")  # no table yet: one is timed
    assert res.code == 0, res.err
    [row] = res.json()
    assert row["status"] == "refreshed" and "reports none" in row["power_mode_note"]
    # the table is kept now (the largest floor: a busy machine's drift does not rebuild it); its rows had no note
    res = cli("fleet", "refresh", "--space", "mbv3-tiny", "--drift-floor", "0.5")
    assert res.code == 0 and "pc: the profile expects power mode MAXN, and the device reports none (no nvpmodel " \
        "answer): its table was checked and timed in this mode" in " ".join(res.err.split()), res.err
    [row] = cli("fleet", "refresh", "--space", "mbv3-tiny", "--drift-floor", "0.5", "--json").json()
    assert row["status"] in ("verified", "rescaled") and "reports none" in row["power_mode_note"]


def test_deploy_with_a_provider_the_device_lacks_is_refused_before_the_export(fresh, cli):
    import json

    _profile(fresh, "g", runtime="onnxruntime", provider="cuda")
    arch = {"space": "mbv3-tiny", "schema": 1, "ks": [3] * 4, "e": [3] * 4, "d": [2, 2], "r": 16}
    (fresh / "arch.json").write_text(json.dumps(arch))
    res = cli("deploy", "g", "arch.json")
    assert res.code == 3 and "CUDAExecutionProvider is not available" in res.err, res.err
    assert len(res.err.strip().splitlines()) == 1 and not (fresh / "exports").exists()
