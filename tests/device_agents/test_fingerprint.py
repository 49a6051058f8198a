"""Fingerprint collection on a file tree laid out like a Jetson's (real samples), and on this machine.

The Jetson tools are absent here, so ``run`` replays their real output from samples/ (see SOURCES.md).
"""

from pathlib import Path

import pytest

from device_agents.edgenas_agent import fingerprint

S = Path(__file__).parent / "samples"
TOOLS = {"nvpmodel": "nvpmodel_q_orin_nano.txt", "jetson_clocks": "jetson_clocks_show_orin_nano.txt"}


def replay(argv, timeout_s):
    name = TOOLS.get(argv[0])
    return (S / name).read_text() if name else None


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


@pytest.fixture()
def jetson_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    write(root, "etc/nv_tegra_release", (S / "nv_tegra_release_r35_4_1.txt").read_text())
    write(root, "proc/device-tree/model", "NVIDIA Jetson Orin Nano Developer Kit\x00")
    write(root, "proc/device-tree/compatible", "nvidia,p3768-0000+p3767-0005\x00nvidia,tegra234\x00")
    write(root, "proc/meminfo", "MemTotal:        7802136 kB\nMemFree:  100 kB\n")
    for i in range(2):
        base = f"sys/devices/system/cpu/cpu{i}/cpufreq/"
        write(root, base + "scaling_governor", "schedutil\n")
        write(root, base + "scaling_min_freq", "729600\n")
        write(root, base + "scaling_max_freq", "1510400\n")
        write(root, base + "scaling_cur_freq", "960000\n")
    write(root, "sys/class/devfreq/17000000.ga10b/governor", "nvhost_podgov\n")
    write(root, "sys/class/devfreq/17000000.ga10b/max_freq", "624750000\n")
    write(root, "sys/class/devfreq/17000000.ga10b/min_freq", "306000000\n")
    write(root, "sys/class/devfreq/17000000.ga10b/cur_freq", "306000000\n")
    write(root, "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
    write(root, "sys/class/thermal/thermal_zone0/temp", "45968\n")
    return root


def test_jetson_tree_fields(jetson_root):
    fp, digest, state = fingerprint.collect({"runtime": "onnxruntime", "threads": 1}, root=str(jetson_root),
                                            run=replay)
    assert fp["identity"]["model"] == "NVIDIA Jetson Orin Nano Developer Kit"
    assert fp["identity"]["soc"] == "nvidia,tegra234" and fp["identity"]["ram_mb"] == 7619
    assert fp["software"]["l4t"] == "35.4.1"
    perf = fp["performance"]
    assert perf["nvpmodel"] == {"mode": "15W", "id": 0}
    assert perf["jetson_clocks"]["locked"] is False
    assert "cur_freq" not in perf["jetson_clocks"]["gpu"]  # changing readings are not hashed
    assert perf["cpufreq"]["cpu1"] == {"scaling_governor": "schedutil", "scaling_min_freq": 729600,
                                       "scaling_max_freq": 1510400}
    assert perf["devfreq"]["17000000.ga10b"]["max_freq"] == 624750000
    assert state["temps_c"] == {"cpu-thermal": pytest.approx(45.968)}
    assert state["cpu_cur_khz"]["cpu0"] == 960000
    assert len(digest) == 64


def test_missing_tools_and_files_leave_fields_absent(tmp_path):
    fp, _, state = fingerprint.collect(None, root=str(tmp_path), run=lambda argv, t: None)
    assert "nvpmodel" not in fp["performance"] and "jetson_clocks" not in fp["performance"]
    assert "l4t" not in fp["software"] and "model" not in fp["identity"] and "gpus" not in fp["identity"]
    assert "temps_c" not in state


def test_state_is_not_hashed_but_settings_and_power_mode_are(jetson_root):
    _, h1, s1 = fingerprint.collect({"threads": 1}, root=str(jetson_root), run=replay)
    (jetson_root / "sys/class/thermal/thermal_zone0/temp").write_text("71000\n")
    (jetson_root / "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq").write_text("1510400\n")
    _, h2, s2 = fingerprint.collect({"threads": 1}, root=str(jetson_root), run=replay)
    assert s1 != s2 and h1 == h2
    _, h3, _ = fingerprint.collect({"threads": 2}, root=str(jetson_root), run=replay)
    assert h3 != h1
    maxn = lambda argv, t: "NV Power Mode: MAXN\n0\n" if argv[0] == "nvpmodel" else replay(argv, t)
    _, h4, _ = fingerprint.collect({"threads": 1}, root=str(jetson_root), run=maxn)
    assert h4 != h1
    (jetson_root / "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor").write_text("performance\n")
    _, h5, _ = fingerprint.collect({"threads": 1}, root=str(jetson_root), run=replay)
    assert h5 != h1


def test_this_machine_is_stable_across_calls_and_threads_change_the_hash():
    fp1, h1, _ = fingerprint.collect({"runtime": "onnxruntime", "threads": 1})
    fp2, h2, _ = fingerprint.collect({"runtime": "onnxruntime", "threads": 1})
    _, h3, _ = fingerprint.collect({"runtime": "onnxruntime", "threads": 2})
    assert h1 == h2 and fp1 == fp2
    assert h3 != h1
    assert fp1["software"]["runtimes"]["onnxruntime"]["providers"]
    assert fp1["identity"]["cpu_count"] >= 1


def test_thor_gpu_units_are_settings_without_their_current_clock(jetson_root):
    """Thor's GPU units are nested (gpu-gpc-0, ...): their current clock must stay out of the hash, as the
    single GPU line's does, or the fingerprint moved with every reading."""
    def thor(cur):
        def run(argv, timeout_s):
            if argv[0] == "jetson_clocks":
                text = (S / "jetson_clocks_show_thor.txt").read_text()
                return text.replace("CurrentFreq=1575000000", f"CurrentFreq={cur}")
            return replay(argv, timeout_s)
        return run

    fp, h1, _ = fingerprint.collect({"threads": 1}, root=str(jetson_root), run=thor(1575000000))
    _, h2, _ = fingerprint.collect({"threads": 1}, root=str(jetson_root), run=thor(600000000))
    jc = fp["performance"]["jetson_clocks"]
    assert jc["gpu"]["gpu-gpc-0"] == {"min_freq": 1575000000, "max_freq": 1575000000} and jc["locked"] is True
    assert h1 == h2
