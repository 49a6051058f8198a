"""Parsers on real tool output (see samples/SOURCES.md for where each sample comes from)."""

from pathlib import Path

import pytest

from device_agents.edgenas_agent import parsers

S = Path(__file__).parent / "samples"


def read(name: str) -> str:
    return (S / name).read_text()


def test_nvpmodel_q():
    assert parsers.parse_nvpmodel_q(read("nvpmodel_q_orin_nano.txt")) == {"mode": "15W", "id": 0}
    assert parsers.parse_nvpmodel_q(read("nvpmodel_q_maxn.txt")) == {"mode": "MAXN", "id": 0}
    assert parsers.parse_nvpmodel_q("nvpmodel: command failed\n") == {}
    verbose = ("NVPM VERB: Config file: /etc/nvpmodel.conf\nNVPM VERB: parsing done for /etc/nvpmodel.conf\n"
               "NVPM VERB: Current mode: NV Power Mode: 15W\n0\n"
               "NVPM VERB: PARAM CPU_ONLINE: ARG CORE_0: PATH /sys/devices/system/cpu/cpu0/online: "
               "REAL_VAL: 1 CONF_VAL: 1\n")
    assert parsers.parse_nvpmodel_q(verbose) == {"mode": "15W", "id": 0}  # -q --verbose


def test_jetson_clocks_show_orin_nano_not_locked():
    jc = parsers.parse_jetson_clocks_show(read("jetson_clocks_show_orin_nano.txt"))
    assert jc["soc_family"] == "tegra234"
    assert jc["machine"] == "NVIDIA Jetson Orin Nano Developer Kit"
    assert jc["online_cpus"] == "0-5"
    assert sorted(jc["cpus"]) == [f"cpu{i}" for i in range(6)]
    assert jc["cpus"]["cpu0"] == {"online": 1, "governor": "ondemand", "min_freq": 729600,
                                  "max_freq": 1510400, "cur_freq": 960000}
    assert jc["gpu"] == {"min_freq": 306000000, "max_freq": 624750000, "cur_freq": 306000000}
    assert jc["emc"]["max_freq"] == 2133000000 and jc["emc"]["freq_override"] == 0
    assert jc["active_gpu_tpcs"] == 4
    assert jc["locked"] is False


def test_jetson_clocks_show_nano_cpus_locked_but_gpu_not():
    jc = parsers.parse_jetson_clocks_show(read("jetson_clocks_show_nano_locked.txt"))
    assert jc["cpus"]["cpu2"]["online"] == 0
    assert all(c["min_freq"] == c["max_freq"] == 921600 for c in jc["cpus"].values())
    assert jc["gpu"]["min_freq"] != jc["gpu"]["max_freq"]
    assert jc["locked"] is False  # GPU still scales
    cpus_only = "\n".join(l for l in read("jetson_clocks_show_nano_locked.txt").splitlines()
                          if not l.startswith("GPU"))
    assert parsers.parse_jetson_clocks_show(cpus_only)["locked"] is True


@pytest.mark.parametrize("name,l4t,revision", [("nv_tegra_release_r35_4_1.txt", "35.4.1", "4.1"),
                                               ("nv_tegra_release_r32_6_1.txt", "32.6.1", "6.1")])
def test_nv_tegra_release(name, l4t, revision):
    r = parsers.parse_nv_tegra_release(read(name))
    assert r["l4t"] == l4t and r["revision"] == revision
    assert r["board"] == "t186ref" and r["eabi"] == "aarch64"
    assert r["gcid"].isdigit() and "UTC" in r["date"]
    assert parsers.parse_nv_tegra_release("garbage") == {}


def test_tegrastats_agx_orin():
    t = parsers.parse_tegrastats(read("tegrastats_agx_orin.txt"))
    assert (t["ram_used_mb"], t["ram_total_mb"]) == (4321, 62801)
    assert (t["swap_used_mb"], t["swap_total_mb"]) == (19, 31400)
    assert len(t["cpu"]) == 12 and t["cpu"][0] == {"load": 0, "freq_mhz": 729}
    assert t["emc"] == {"load": 0, "freq_mhz": 2133}
    assert t["gr3d"] == {"load": 0, "freq_mhz": [0, 0]}
    assert t["temps_c"]["CPU"] == pytest.approx(44.562) and t["temps_c"]["tj"] == pytest.approx(44.343)
    assert "GPU" not in t["temps_c"] and "CV0" not in t["temps_c"]  # -256C = sensor off
    assert t["power"]["VDD_GPU_SOC"] == {"cur_mw": 2340, "avg_mw": 2340}
    assert t["power"]["VIN_SYS_5V0"]["cur_mw"] == 4025 and "NC" not in t["power"]


def test_tegrastats_orin_nano_and_old_tx2():
    t = parsers.parse_tegrastats(read("tegrastats_orin_nano.txt"))
    assert [c["freq_mhz"] for c in t["cpu"]] == [1728, 1728, 1728, 1728, 729, 729]
    assert t["cpu"][0]["load"] == 66
    assert t["gr3d"] == {"load": 0} and "emc" not in t
    assert t["power"]["VDD_IN"] == {"cur_mw": 4046, "avg_mw": 4236}
    assert t["temps_c"]["gpu"] == pytest.approx(45.437)
    old = parsers.parse_tegrastats(read("tegrastats_tx2_old.txt"))
    assert old["power"]["VDD_IN"] == {"cur_mw": 1649, "avg_mw": 1649}
    assert old["temps_c"]["PMIC"] == 100.0 and old["emc"] == {"load": 0}


def test_tegrastats_off_cores():
    t = parsers.parse_tegrastats("RAM 3149/31920MB (lfb 5889x4MB) CPU [57%@2188,off,off] EMC_FREQ 0% GR3D_FREQ 39%")
    assert t["cpu"] == [{"load": 57, "freq_mhz": 2188}, None, None] and t["gr3d"] == {"load": 39}


def test_nvidia_smi_csv():
    l4 = parsers.parse_nvidia_smi_csv(read("nvidia_smi_l4.csv"))
    assert l4 == [{"name": "NVIDIA L4", "driver_version": "550.90.07", "memory.total": 24564,
                   "power.limit": 72.0, "temperature.gpu": 33}]
    l40s = parsers.parse_nvidia_smi_csv(read("nvidia_smi_l40s_clocks.csv"))
    assert [g["index"] for g in l40s] == [0, 1]
    assert l40s[1]["clocks.max.sm"] == 2520 and l40s[1]["clocks.max.memory"] == 9001
    na = parsers.parse_nvidia_smi_csv("name, power.limit [W]\nOrin (nvgpu), [N/A]\n")
    assert na == [{"name": "Orin (nvgpu)"}]


def test_jetson_clocks_show_thor_gpu_units():
    """Thor (L4T R38) prints one line per GPU unit (gpu-gpc-0, gpu-nvd-0) instead of one GPU line: they were
    not read, and `locked` was judged on the CPUs alone."""
    text = read("jetson_clocks_show_thor.txt")
    jc = parsers.parse_jetson_clocks_show(text)
    assert jc["gpu"] == {"gpu-gpc-0": {"min_freq": 1575000000, "max_freq": 1575000000, "cur_freq": 1575000000},
                         "gpu-nvd-0": {"min_freq": 1692000000, "max_freq": 1692000000, "cur_freq": 1692000000}}
    assert jc["locked"] is True and jc["nv_power_mode"] == "MAXN"
    scaling = text.replace("gpu-nvd-0 MinFreq=1692000000", "gpu-nvd-0 MinFreq=600000000")
    assert parsers.parse_jetson_clocks_show(scaling)["locked"] is False


def test_odd_tool_output_leaves_a_field_out_instead_of_failing_the_agent():
    """Each was an exception in the agent's `info` call, so the device answered nothing and every command
    on it failed: `Online=on`, a GPU line without MaxFreq, a temperature `1.2.3C`."""
    base = read("jetson_clocks_show_orin_nano.txt")
    odd = parsers.parse_jetson_clocks_show(base.replace("Online=1", "Online=on", 1))
    assert "online" not in odd["cpus"]["cpu0"] and odd["cpus"]["cpu1"]["online"] == 1
    no_max = parsers.parse_jetson_clocks_show(base.replace("MaxFreq=624750000", "", 1))
    assert no_max["gpu"] == {"min_freq": 306000000, "cur_freq": 306000000} and no_max["locked"] is False
    line = read("tegrastats_agx_orin.txt").strip().replace("CPU@44.562C", "cpu@1.2.3C CPU@44.562C", 1)
    ts = parsers.parse_tegrastats(line)
    assert "cpu" not in ts["temps_c"] and ts["temps_c"]["CPU"] == pytest.approx(44.562) and ts["ram_total_mb"] > 0
    # whatever else a parser trips on gives its empty result (the field is absent), never an exception
    for parse in (parsers.parse_nvpmodel_q, parsers.parse_jetson_clocks_show, parsers.parse_tegrastats,
                  parsers.parse_nv_tegra_release, parsers.parse_nvidia_smi_csv, parsers.parse_os_release):
        for text in ("", "\x00\xff" * 50, "GPU MinFreq=\nEMC MinFreq=x MaxFreq\ncpu0: Online= MinFreq=1", "a,b\n1"):
            parse(text)
