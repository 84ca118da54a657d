"""Device status: thresholds, host probe from a fake /proc, AXCL probe recovery logic, and the device_monitor node
through real DDS against the compiled AXCL stub (two cards, lowered thresholds, device lost and back, no library)."""

import math
import os
import time

import pytest

from axcl_ros import device_report as dr
from axcl_ros.runtime.axcl_abi import AxclError

STUB_IDS = "129,130"
# what the stub reports (axcl_ros_testing/axcl_stub/axcl_stub.c, axclrtGetDeviceProperties): 40 °C + id % 100 / 10,
# 945 MiB memory with 600 MiB free, 7040 MiB CMM, CPU load 12.34 %
STUB_TEMP = {129: 42.9, 130: 43.0}
STUB_MEM_TOTAL_KB, STUB_MEM_USED_KB, STUB_CMM_TOTAL_KB = 945 * 1024, 345 * 1024, 7040 * 1024
# ---------------------------------------------------------------------------------------------------------------------
# pure parts
# ---------------------------------------------------------------------------------------------------------------------
def test_thresholds_validation_names_the_parameter():
    assert dr.Thresholds().validate() == dr.Thresholds()
    with pytest.raises(dr.ThresholdError, match=r"temperature_warn_c=96.0 must be below temperature_error_c=95"):
        dr.Thresholds(temperature_warn_c=96.0).validate()
    with pytest.raises(dr.ThresholdError, match=r"memory_warn_percent=120.0 must be in \(0, 100\]"):
        dr.Thresholds(memory_warn_percent=120.0).validate()
    with pytest.raises(dr.ThresholdError, match="cmm_warn_percent=nan must be a finite number"):
        dr.Thresholds(cmm_warn_percent=math.nan).validate()


def _card(**kw):
    base = dict(index=0, device_id=129, available=True, name="AX650N", temperature_c=50.0, memory_used_kb=100,
                memory_total_kb=1000, cmm_used_kb=10, cmm_total_kb=1000)
    base.update(kw)
    return dr.DeviceSample(**base)


def test_evaluate_levels_and_messages():
    th = dr.Thresholds(temperature_warn_c=80, temperature_error_c=90, memory_warn_percent=80, cmm_warn_percent=50)
    ok = dr.evaluate(_card(), th)
    assert ok.level == dr.OK and "50.0 °C" in ok.message and "memory 10 %" in ok.message
    warm = dr.evaluate(_card(temperature_c=80.0), th)
    assert warm.level == dr.WARN and "temperature 80.0 °C ≥ warn limit 80 °C" in warm.message
    hot = dr.evaluate(_card(temperature_c=95.5, cmm_used_kb=600), th)
    assert hot.level == dr.ERROR and "error limit 90" in hot.message and "CMM 60.0 % used" in hot.message
    mem = dr.evaluate(_card(memory_used_kb=850), th)
    assert mem.level == dr.WARN and "memory 85.0 % used ≥ warn limit 80 %" in mem.message
    gone = dr.evaluate(_card(available=False, error="card not answering"), th)
    assert (gone.level, gone.message) == (dr.ERROR, "card not answering")
    blind = dr.evaluate(_card(telemetry=False, temperature_c=None, memory_total_kb=0, cmm_total_kb=0), th)
    assert blind.level == dr.WARN and "axclrtGetDeviceProperties" in blind.message


def test_properties_to_sample_and_whole_degree_guard():
    props = {"index": 1, "device_id": 130, "properties_available": True, "firmware": "V3.4.0", "temperature_raw": 51250,
             "temperature_c": 51.25, "mem_total_kb": 1000, "mem_used_kb": 250, "cmm_total_kb": 4000,
             "cmm_used_kb": 1000, "cpu_load_pct": 3.5, "npu_load_pct": 77.0}
    s = dr.sample_from_properties(props, "AX650N")
    assert (s.index, s.device_id, s.name, s.firmware, s.temperature_c) == (1, 130, "AX650N", "V3.4.0", 51.25)
    assert (s.memory_percent, s.cmm_percent, s.npu_load_percent) == (25.0, 25.0, 77.0)
    assert s.label == "card 1 (id 130 / 0x82)" and s.hardware_id == "axcl:130" and not s.notes
    # a card reporting whole degrees (unit undocumented on hardware) must not read as 0.045 °C
    s = dr.sample_from_properties({**props, "temperature_raw": 45, "temperature_c": 0.045})
    assert s.temperature_c == 45.0 and "whole °C" in s.notes[0]
    assert not dr.sample_from_properties({"index": 0, "device_id": 129}).telemetry


def _fake_proc(root, busy, idle, total_kb=8000000, avail_kb=6000000):
    root.mkdir(exist_ok=True)
    # user nice system idle iowait irq softirq steal guest guest_nice
    (root / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\n")
    (root / "meminfo").write_text(f"MemTotal:       {total_kb} kB\nMemFree:   100 kB\nMemAvailable:   {avail_kb} kB\n")
    (root / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Test CPU 9000\n")


def test_host_probe_reads_proc_deltas_and_thermal(tmp_path):
    proc, thermal = tmp_path / "proc", tmp_path / "thermal"
    _fake_proc(proc, busy=100, idle=300)
    for i, milli in enumerate((41000, 57500)):
        (thermal / f"thermal_zone{i}").mkdir(parents=True)
        (thermal / f"thermal_zone{i}" / "temp").write_text(f"{milli}\n")
    probe = dr.CpuProbe(str(proc), str(thermal))
    (s,) = probe.sample()
    assert s.available and s.kind == "host" and s.device_id == -1 and s.name.startswith("Test CPU 9000 x")
    assert s.cpu_load_percent == pytest.approx(25.0)  # since boot: 100 busy of 400
    assert (s.memory_total_kb, s.memory_used_kb, s.temperature_c) == (8000000, 2000000, 57.5)
    _fake_proc(proc, busy=100 + 150, idle=300 + 50, avail_kb=2000000)
    (s,) = probe.sample()
    assert s.cpu_load_percent == pytest.approx(75.0)  # delta: 150 busy of 200
    assert s.memory_used_kb == 6000000
    assert dr.evaluate(s, dr.Thresholds(memory_warn_percent=70)).level == dr.WARN
    (bad,) = dr.CpuProbe(str(tmp_path / "nope"), str(thermal)).sample()
    assert not bad.available and "cannot read host load" in bad.error


class _FakeRuntime:
    """Runtime double for the probe's recovery logic: fails device_properties while ``broken``."""

    def __init__(self):
        self.device_ids = [129]
        self.device_count = 1
        self.broken = False
        self.live_sessions = 0
        self.restarts = 0
        self.failures = []

    def device_properties(self, index):
        if self.broken:
            raise AxclError("axclrtGetDeviceProperties", 0x8030010A)
        return {"index": index, "device_id": 129, "name": "AX650N", "properties_available": True,
                "temperature_raw": 40000,
                "temperature_c": 40.0, "mem_total_kb": 100, "mem_used_kb": 10, "cmm_total_kb": 100,
                "cmm_used_kb": 0, "cpu_load_pct": 1.0, "npu_load_pct": 2.0, "firmware": "fw"}

    def note_failure(self, exc):
        self.failures.append(exc)

    def restart(self):
        self.restarts += 1


def test_axcl_probe_backs_off_and_restarts_only_without_sessions():
    rt, now = _FakeRuntime(), [0.0]
    probe = dr.AxclProbe(runtime_factory=lambda: rt, retry_initial_s=1.0, retry_max_s=4.0, clock=lambda: now[0])
    (s,) = probe.sample()
    assert s.available and s.name == "AX650N" and s.temperature_c == 40.0
    rt.broken = True
    (s,) = probe.sample()
    assert not s.available and "not answering" in s.error and "0x8030010A" in s.error and s.fix == dr.LOST_FIX
    assert len(rt.failures) == 1
    now[0] = 0.5  # inside the back-off: the runtime is not touched, the last error is repeated
    (s,) = probe.sample()
    assert not s.available and "next retry in 0.5 s" in s.notes[0] and len(rt.failures) == 1
    rt.live_sessions = 2
    now[0] = 1.0  # due, but sessions use the runtime: no restart by the monitor
    (s,) = probe.sample()
    assert rt.restarts == 0 and "2 model session(s)" in s.error
    now[0] = 2.5  # back-off doubled to 2 s → next try at 3.0
    probe.sample()
    assert rt.restarts == 0
    rt.live_sessions, rt.broken = 0, False
    now[0] = 3.0
    (s,) = probe.sample()
    assert rt.restarts == 1 and probe.restarts == 1 and s.available
    rt.broken = True
    probe.sample()
    now[0] = 4.0  # the back-off starts again at 1 s after a success
    rt.broken = False
    (s,) = probe.sample()
    assert s.available and rt.restarts == 2


def test_axcl_probe_without_library_reports_error_and_fix(stub_env):
    os.environ["AXCL_LIB_PATH"] = "/nonexistent/libaxcl_rt.so"
    (s,) = dr.AxclProbe().sample()
    assert not s.available and "cannot load libaxcl_rt.so" in s.error and "/nonexistent" in s.error
    assert "axclhost" in s.fix and "/dev/axcl_host" in s.fix
    samples = dr.AxclProbe([2, 3]).sample()
    assert [x.index for x in samples] == [2, 3] and not any(x.available for x in samples)


def test_axcl_probe_on_stub_two_cards_and_bad_index(stub_env):
    samples = dr.AxclProbe([1, 0, 4]).sample()
    assert [s.index for s in samples] == [1, 0, 4]
    for s in samples[:2]:
        assert s.available and s.name == "AX650N-STUB" and s.firmware == "V0.0.0-stub"
        assert s.temperature_c == pytest.approx(STUB_TEMP[s.device_id])
        assert (s.memory_total_kb, s.memory_used_kb, s.cmm_total_kb) == (STUB_MEM_TOTAL_KB, STUB_MEM_USED_KB,
                                                                        STUB_CMM_TOTAL_KB)
        assert s.cpu_load_percent == pytest.approx(12.34)
    assert [s.device_id for s in samples[:2]] == [130, 129]
    assert not samples[2].available and "card index 4 not found: 2 card(s) listed (ids [129, 130])" in \
        samples[2].error
    table = dr.format_smi_table(samples)
    assert "129 (0x81)" in table and "130 (0x82)" in table and "ERROR card index 4" in table
    assert "fix: set device_indices" in table


# ---------------------------------------------------------------------------------------------------------------------
# the node through real DDS
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ros():
    pytest.importorskip("rclpy", reason="ROS tests need the workspace: run through `make test`")
    pytest.importorskip("axcl_msgs.msg", reason="axcl_msgs not built: run through `make test`")
    from axcl_ros_testing.ros_graph import RosGraph

    with RosGraph() as g:
        yield g


class _Listener:
    """Latest /diagnostics status per name and DeviceStatus per device id, from one monitor node."""

    def __init__(self, graph, node_name):
        from axcl_msgs.msg import DeviceStatus
        from diagnostic_msgs.msg import DiagnosticArray

        self.prefix = f"/{node_name}: "
        self.diag, self.status, self.n_status = {}, {}, 0
        self.node = graph.node(f"{node_name}_listener")
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.node.create_subscription(DeviceStatus, f"/{node_name}/status", self._on_status, 50)

    def _on_diag(self, msg):
        for st in msg.status:
            if st.name.startswith(self.prefix):
                self.diag[st.name[len(self.prefix):]] = st

    def _on_status(self, msg):
        self.status[msg.device_id] = msg
        self.n_status += 1

    def level(self, name):
        st = self.diag.get(name)
        return None if st is None else st.level[0] if isinstance(st.level, bytes) else st.level

    def values(self, name):
        return {kv.key: kv.value for kv in self.diag[name].values}


def _set(graph, client_node, target, **params):
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    cli = client_node.create_client(SetParameters, f"/{target}/set_parameters")
    req = SetParameters.Request(parameters=[
        ParameterMsg(name=k, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(v)))
        for k, v in params.items()])
    results = graph.call(cli, req).results
    client_node.destroy_client(cli)
    return results


def _monitor(graph, name, **params):
    from rclpy.parameter import Parameter

    from axcl_ros.nodes.device_monitor import DeviceMonitorNode

    overrides = [Parameter("period_s", value=0.2)] + [Parameter(k, value=v) for k, v in params.items()]
    return graph.add(DeviceMonitorNode(name, context=graph.context, parameter_overrides=overrides))


@pytest.mark.ros
def test_monitor_ok_warn_lost_and_recovered(ros, stub_env):
    from axcl_ros_testing.lifecycle_client import LifecycleClient

    node = _monitor(ros, "mon_stub")
    ears = _Listener(ros, "mon_stub")
    lc = LifecycleClient(ros, ears.node)
    assert lc.change("/mon_stub", "configure") and lc.change("/mon_stub", "activate")
    ros.wait_for(lambda: ears.level("card 0") == dr.OK and ears.level("card 1") == dr.OK
                 and len(ears.status) == 2, 15, "OK diagnostics and a status for both cards")
    for dev_id, index in ((129, 0), (130, 1)):
        st = ears.status[dev_id]
        assert st.available and st.error == "" and st.index == index and st.name == "AX650N-STUB"
        assert st.firmware == "V0.0.0-stub" and st.header.frame_id == f"axcl:{dev_id}"
        assert st.temperature_c == pytest.approx(STUB_TEMP[dev_id], abs=1e-4)
        assert st.cpu_load_percent == pytest.approx(12.34, abs=1e-4)
        assert (st.memory_used_kb, st.memory_total_kb) == (STUB_MEM_USED_KB, STUB_MEM_TOTAL_KB)
        assert (st.cmm_used_kb, st.cmm_total_kb) == (0, STUB_CMM_TOTAL_KB)
    assert ears.diag["card 1"].hardware_id == "axcl:130" and ears.values("card 1")["device_id_hex"] == "0x82"

    # between the two cards' temperatures: only card 1 (43.0 °C) warns
    assert all(r.successful for r in _set(ros, ears.node, "mon_stub", temperature_warn_c=42.95))
    ros.wait_for(lambda: ears.level("card 1") == dr.WARN, 10, "temperature WARN on card 1")
    assert "temperature 43.0 °C ≥ warn limit 42.95 °C" in ears.diag["card 1"].message
    assert ears.level("card 0") == dr.OK
    # both limits moved in one call are checked together; an inconsistent pair is refused with the reason
    assert all(r.successful for r in _set(ros, ears.node, "mon_stub", temperature_warn_c=42.0,
                                          temperature_error_c=42.95))
    ros.wait_for(lambda: ears.level("card 0") == dr.WARN and ears.level("card 1") == dr.ERROR, 10,
                 "card 0 WARN, card 1 ERROR by temperature")
    (bad,) = _set(ros, ears.node, "mon_stub", temperature_warn_c=60.0)
    assert not bad.successful and "must be below temperature_error_c" in bad.reason
    assert all(r.successful for r in _set(ros, ears.node, "mon_stub", temperature_error_c=95.0,
                                          temperature_warn_c=85.0, memory_warn_percent=30.0))
    ros.wait_for(lambda: ears.level("card 0") == dr.WARN and ears.level("card 1") == dr.WARN
                 and "memory" in ears.diag["card 0"].message, 10, "memory WARN (36.5 % used ≥ 30 %)")
    assert "temperature" not in ears.diag["card 0"].message
    assert all(r.successful for r in _set(ros, ears.node, "mon_stub", memory_warn_percent=90.0))
    ros.wait_for(lambda: ears.level("card 0") == dr.OK, 10, "back to OK")

    # the card stops answering: ERROR with the reason, the node keeps running
    os.environ["AXCL_STUB_DEVICE_LOST_AFTER"] = "0"
    ros.wait_for(lambda: ears.level("card 0") == dr.ERROR and not ears.status[129].available, 10, "device lost")
    assert "not answering" in ears.diag["card 0"].message and "0x8030010A" in ears.status[129].error
    assert "dmesg" in ears.values("card 0")["fix"]
    assert math.isnan(ears.status[129].temperature_c)
    assert lc.state("/mon_stub") == "active"
    os.environ.pop("AXCL_STUB_DEVICE_LOST_AFTER")
    ros.wait_for(lambda: ears.level("card 0") == dr.OK and ears.status[129].available, 15,
                 "recovery after the card answers again")
    assert node.probe.restarts >= 1

    assert lc.change("/mon_stub", "deactivate")
    time.sleep(0.3)
    n = ears.n_status
    time.sleep(0.6)
    assert ears.n_status == n  # inactive: nothing published
    assert lc.change("/mon_stub", "cleanup") and node.probe is None
    ros.remove(node)


@pytest.mark.ros
def test_monitor_samples_on_its_own_thread_with_its_own_period(ros, stub_env, monkeypatch):
    """axclrtGetDeviceProperties is slow on the real card (shell commands on the card): sampling never runs on the
    ROS executor's threads (nor on a device's inference worker), only on the node's telemetry thread."""
    import threading

    from axcl_ros_testing.lifecycle_client import LifecycleClient

    monkeypatch.setenv("AXCL_STUB_PROPERTIES_US", "200000")
    node = _monitor(ros, "mon_thread", period_s=0.3)
    ears = _Listener(ros, "mon_thread")
    lc = LifecycleClient(ros, ears.node)
    assert lc.change("/mon_thread", "configure")
    threads = []
    real = node.probe.sample

    def sample():
        threads.append(threading.current_thread().name)
        return real()

    node.probe.sample = sample
    assert lc.change("/mon_thread", "activate")
    ros.wait_for(lambda: len(threads) >= 3 and len(ears.status) == 2, 20, "three samples of both cards")
    assert set(threads) == {"telemetry"}
    assert lc.change("/mon_thread", "deactivate")
    n = len(threads)
    time.sleep(0.8)
    assert len(threads) == n  # the telemetry thread stopped with the deactivation
    assert lc.change("/mon_thread", "cleanup")
    ros.remove(node)


@pytest.mark.ros
def test_monitor_without_library_configures_and_reports_error(ros, stub_env):
    from axcl_ros_testing.lifecycle_client import LifecycleClient

    os.environ["AXCL_LIB_PATH"] = "/nonexistent"
    node = _monitor(ros, "mon_nolib")
    ears = _Listener(ros, "mon_nolib")
    lc = LifecycleClient(ros, ears.node)
    assert lc.change("/mon_nolib", "configure"), node.last_error  # a missing card is not a configure failure
    assert lc.change("/mon_nolib", "activate")
    ros.wait_for(lambda: ears.level("card 0") == dr.ERROR and -1 in ears.status, 10, "ERROR diagnostics")
    assert "cannot load libaxcl_rt.so" in ears.diag["card 0"].message
    assert "axclhost" in ears.values("card 0")["fix"]
    st = ears.status[-1]
    assert not st.available and "/nonexistent" in st.error and st.memory_total_kb == 0
    assert lc.state("/mon_nolib") == "active"
    lc.change("/mon_nolib", "deactivate")
    lc.change("/mon_nolib", "cleanup")
    ros.remove(node)


@pytest.mark.ros
def test_monitor_configure_fails_only_for_bad_parameters(ros, stub_env):
    from axcl_ros_testing.lifecycle_client import LifecycleClient

    node = _monitor(ros, "mon_bad", temperature_warn_c=99.0, device_indices=[0, -1])
    lc = LifecycleClient(ros, ros.node("mon_bad_client"))
    assert not lc.change("/mon_bad", "configure")
    assert lc.state("/mon_bad") == "unconfigured"
    assert "temperature_warn_c=99.0 must be below temperature_error_c=95.0" in node.last_error
    assert "device_indices=[0, -1]" in node.last_error
    ros.remove(node)


@pytest.mark.ros
def test_monitor_selected_cards_and_host_backend(ros, stub_env):
    from axcl_ros_testing.lifecycle_client import LifecycleClient

    cards = _monitor(ros, "mon_sel", device_indices=[1, 5])
    host = _monitor(ros, "mon_host", backend="onnxruntime")
    ears_cards, ears_host = _Listener(ros, "mon_sel"), _Listener(ros, "mon_host")
    lc = LifecycleClient(ros, ears_cards.node)
    for name in ("/mon_sel", "/mon_host"):
        assert lc.change(name, "configure") and lc.change(name, "activate")
    ros.wait_for(lambda: ears_cards.level("card 1") is not None and ears_cards.level("card 5") is not None
                 and ears_host.level("host CPU") is not None and -1 in ears_host.status, 10, "statuses")
    assert ears_cards.level("card 1") == dr.OK and ears_cards.status[130].index == 1
    assert ears_cards.level("card 5") == dr.ERROR
    assert "card index 5 not found: 2 card(s) listed" in ears_cards.diag["card 5"].message
    assert 129 not in ears_cards.status
    st = ears_host.status[-1]
    meminfo = dict(line.split(":", 1) for line in open("/proc/meminfo").read().splitlines() if ":" in line)
    assert st.available and st.memory_total_kb == int(meminfo["MemTotal"].split()[0])
    assert 0 < st.memory_used_kb < st.memory_total_kb and 0.0 <= st.cpu_load_percent <= 100.0
    assert math.isnan(st.npu_load_percent) and st.cmm_total_kb == 0 and st.header.frame_id == "host"
    assert ears_host.diag["host CPU"].hardware_id == "host"
    for name in ("/mon_sel", "/mon_host"):
        lc.change(name, "deactivate")
        lc.change(name, "cleanup")
    ros.remove(cards)
    ros.remove(host)


@pytest.mark.ros
def test_monitor_executable_runs_and_stops_on_sigint(ros, stub_env, tmp_path):
    import sys

    from axcl_msgs.msg import DeviceStatus

    from axcl_ros_testing.lifecycle_client import LifecycleClient
    from axcl_ros_testing.ros_graph import RosProcess

    argv = [sys.executable, "-m", "axcl_ros.nodes.device_monitor", "--ros-args", "-r", "__node:=mon_proc",
            "-p", "period_s:=0.2", "-p", "device_indices:=[1]"]
    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with RosProcess(argv, env=env, log_path=str(tmp_path / "mon.log"), timeout=60) as proc:
        client = ros.node("mon_proc_client")
        got = []
        client.create_subscription(DeviceStatus, "/mon_proc/status", got.append, 10)
        lc = LifecycleClient(ros, client)
        assert lc.change("/mon_proc", "configure") and lc.change("/mon_proc", "activate")
        ros.wait_for(lambda: len(got) >= 2, 15, "DeviceStatus from the executable")
        assert {m.device_id for m in got} == {130} and got[-1].temperature_c == pytest.approx(43.0, abs=1e-4)
        assert proc.stop() == 0, proc.output()
    assert "monitoring AXCL cards [1] every 0.2 s" in proc.output()
