"""Bring-up without DDS: node type registry, instance parsing, launch-input mapping, and the
shipped config files (keys known to the registry and declared by the node classes that exist)."""

import importlib
from pathlib import Path

import pytest
import yaml

from axcl_ros.bringup.node_registry import (
    DEFAULT_NODES,
    NODE_TYPES,
    NodeInstance,
    NodeTypeError,
    declared_parameters,
    input_overrides,
    load_node_class,
    parse_bool,
    parse_instances,
    parse_select,
    select_instances,
    split_list,
)

PKG = Path(__file__).resolve().parents[1]
CONFIGS = sorted((PKG / "config").glob("*.yaml"))
DUMMY = "axcl_ros_testing.dummy_nodes:DummyLifecycleNode"


# -- registry --------------------------------------------------------------------------------------------------------
def test_registry_names_the_six_node_classes():
    assert set(NODE_TYPES) == {"detector", "depth", "speech", "device_monitor", "wav_publisher", "audio_capture"}
    for short, target in NODE_TYPES.items():
        module, cls = target.split(":")
        assert module == f"axcl_ros.nodes.{short}" and cls.endswith("Node")
    assert set(DEFAULT_NODES) <= set(NODE_TYPES)


def test_load_node_class_module_colon_class():
    pytest.importorskip("rclpy")
    cls = load_node_class(DUMMY)
    assert cls.__name__ == "DummyLifecycleNode" and cls.__module__ == "axcl_ros_testing.dummy_nodes"


def test_load_node_class_by_short_name_when_the_module_exists():
    pytest.importorskip("rclpy")
    try:
        importlib.import_module("axcl_ros.nodes.detector")
    except ImportError as exc:
        pytest.skip(f"detector node not importable here: {exc}")
    assert load_node_class("detector").__name__ == "DetectorNode"


@pytest.mark.parametrize("name, words", [
    ("lidar", ["unknown node type 'lidar'", "detector", "module:ClassName"]),
    ("no_such_module_xyz:Thing", ["cannot import module 'no_such_module_xyz'"]),
    ("axcl_ros.bringup.node_registry:Nope", ["has no class 'Nope'"]),
    ("axcl_ros.bringup.node_registry:NODE_TYPES", ["not a class"]),
    ("", ["non-empty"]),
])
def test_load_node_class_errors_name_the_problem(name, words):
    with pytest.raises(NodeTypeError) as err:
        load_node_class(name)
    for w in words:
        assert w in str(err.value)
    assert isinstance(err.value, ValueError)


# -- instances, select, inputs ---------------------------------------------------------------------------------------
def test_parse_instances_forms():
    assert parse_instances(["detector", "depth"]) == [NodeInstance("detector", "detector"),
                                                       NodeInstance("depth", "depth")]
    assert parse_instances("detector, depth") == parse_instances(["detector", "depth"])
    assert parse_instances("[detector, depth]") == parse_instances(["detector", "depth"])
    assert parse_instances(["front", "rear"], ["detector", DUMMY]) == [NodeInstance("front", "detector"),
                                                                      NodeInstance("rear", DUMMY)]
    assert parse_instances([f"cam1:{DUMMY}", "cam0:detector"]) == [NodeInstance("cam1", DUMMY),
                                                                   NodeInstance("cam0", "detector")]


@pytest.mark.parametrize("nodes, types, words", [
    (["a", "b"], ["detector"], ["node_types has 1 entries but nodes has 2"]),
    (["detector", "detector"], (), ["appears twice"]),
    (["1cam"], ["detector"], ["invalid node name '1cam'"]),
    (["cam-0"], ["detector"], ["invalid node name 'cam-0'"]),
    (["cam"], ["lidar"], ["unknown node type 'lidar'"]),
])
def test_parse_instances_errors(nodes, types, words):
    with pytest.raises(NodeTypeError) as err:
        parse_instances(nodes, types)
    for w in words:
        assert w in str(err.value)


def test_split_list_rejects_non_lists():
    with pytest.raises(NodeTypeError, match="expected a list of names"):
        split_list(3)


def test_select_by_type_or_name():
    inst = parse_instances(["front:detector", "rear:detector", "depth", "speech"])
    sel = parse_select(["detector=true", "depth=false", "rear=0"])
    assert sel == {"detector": True, "depth": False, "rear": False}
    assert [i.name for i in select_instances(inst, sel)] == ["front", "speech"]
    assert parse_select("speech=off,depth=YES") == {"speech": False, "depth": True}
    with pytest.raises(ValueError, match="NAME=true"):
        parse_select(["depth"])
    with pytest.raises(ValueError, match="expected true or false, got 'maybe'"):
        parse_bool("maybe", "--select depth")


def test_input_overrides_map_launch_inputs_to_node_parameters():
    kw = dict(camera_topic="/oak/rgb/image_raw", camera_info_topic="/oak/rgb/camera_info", audio_topic="/mic",
              backend="axcl")
    assert input_overrides("detector", **kw) == {"image_topics": ["/oak/rgb/image_raw"], "backend": "axcl"}
    assert input_overrides("depth", **kw) == {"image_topic": "/oak/rgb/image_raw",
                                              "camera_info_topic": "/oak/rgb/camera_info", "backend": "axcl"}
    assert input_overrides("speech", **kw) == {"audio_topic": "/mic", "backend": "axcl"}
    assert input_overrides("device_monitor", **kw) == {}
    assert input_overrides("detector", camera_topic="", backend="") == {}  # empty = keep the file's value
    with pytest.raises(ValueError, match="backend='tpu' is not one of"):
        input_overrides("detector", backend="tpu")
    with pytest.raises(ValueError, match="unknown input"):
        input_overrides("detector", lidar_topic="/x")


# -- parameter files are rcl's ------------------------------------------------------------------------------------
def test_no_hand_written_parameter_file_or_remap_parsing():
    """Parameter files and remaps reach every node through rcl (tests in test_bringup_host.py); nothing here parses
    ``--params-file`` or ``-r`` again."""
    bringup = PKG / "axcl_ros" / "bringup"
    assert not (bringup / "params.py").exists()
    for path in bringup.glob("*.py"):
        text = path.read_text()
        assert '"--params-file"' not in text and "import yaml" not in text, f"{path.name} reads parameter files"


def _sections(path):
    """``[(key, flat parameters)]`` of a shipped parameter file (test-side reader; nodes get files through rcl)."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    doc = yaml.safe_load(Path(path).read_text())
    return [(key, flat(body["ros__parameters"])) for key, body in doc.items()]


def _node_of(key):
    """``/**/detector`` → ``detector`` (the sections' node name in any namespace); ``/**`` stays."""
    return key[4:] if key.startswith("/**/") else key


# -- shipped config files --------------------------------------------------------------------------------------------
def test_three_config_files_ship():
    assert {p.name for p in CONFIGS} == {"cpu.yaml", "pi5_axcl.yaml", "two_cameras.yaml"}


def _config_types(sections):
    host = dict(sections)["/**/perception_host"]
    instances = parse_instances(host["nodes"], host.get("node_types", ()))
    types = {i.name: i.type_name for i in instances}
    types.update(perception_host="perception_host", lifecycle_manager="lifecycle_manager")
    return instances, types


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_has_host_section_and_known_keys(path):
    pytest.importorskip("rclpy", reason="the declared parameters come from the node classes: run through `make test`")
    sections = _sections(path)
    instances, types = _config_types(sections)
    assert instances and all(i.type_name in NODE_TYPES for i in instances)
    host = dict(sections)["/**/perception_host"]
    assert host["autostart"] is True and set(host) <= set(declared_parameters("perception_host"))
    every_key = set().union(*(declared_parameters(t) for t in set(types.values())))
    for key, params in sections:
        if key == "/**":
            assert set(params) <= every_key, (path.name, key)
            continue
        assert key.startswith("/**/"), f"{path.name}: section {key!r} must be /**/<node> to reach any namespace"
        key = _node_of(key)
        assert key in types, f"{path.name}: section {key!r} is not a hosted node, the host or the manager"
        unknown = set(params) - set(declared_parameters(types[key]))
        assert not unknown, f"{path.name}: {key} sets unknown parameters {sorted(unknown)}"
        for value in params.values():  # every value is a valid ROS parameter type
            items = value if isinstance(value, list) else [value]
            assert len({type(v) for v in items}) <= 1 and all(isinstance(v, (bool, int, float, str)) for v in items)


def test_configs_differ_where_they_should():
    cpu, pi5, two = ({_node_of(k): v for k, v in _sections(PKG / "config" / name)}
                     for name in ("cpu.yaml", "pi5_axcl.yaml", "two_cameras.yaml"))
    for node in ("detector", "depth", "speech"):
        assert cpu[node]["backend"] == "onnxruntime" and pi5[node]["backend"] == "axcl"
    for node, key in (("detector", "model_path"), ("depth", "model_path"), ("speech", "model_dir")):
        assert pi5[node][key].startswith("/opt/axcl_models/")
    assert pi5["detector"]["model_path"].endswith(".axmodel") and cpu["detector"]["model_path"].endswith(".onnx")
    assert two["detector"]["image_topics"] == ["/cam0/image_raw", "/cam1/image_raw"]
    assert cpu["detector"]["image_topics"] == [cpu["depth"]["image_topic"]] == ["/camera/image_raw"]


@pytest.mark.parametrize("type_name", ["detector", "depth", "speech", "device_monitor"])
def test_config_keys_are_declared_by_the_node_class(type_name):
    """The config files and the nodes agree on parameter names (skipped while a node module does not exist)."""
    pytest.importorskip("rclpy")
    try:
        cls = load_node_class(type_name)
    except NodeTypeError as exc:
        pytest.skip(str(exc))
    declared = {p.name for p in getattr(cls, "PARAMS", ())} | {"diagnostics_period"}
    if len(declared) == 1:
        pytest.skip(f"{cls.__name__} has no PARAMS list")
    used = set()
    for path in CONFIGS:
        sections = _sections(path)
        _, types = _config_types(sections)
        for key, params in sections:
            if types.get(_node_of(key)) == type_name:
                used |= set(params)
    assert used <= declared, f"config files set {sorted(used - declared)} that {cls.__name__} does not declare"


def test_card_model_names_agree_between_config_readme_and_cli():
    """config/pi5_axcl.yaml, the README and `axcl_ros models` name the same AXERA files in the same layout, and the
    fetch command the CLI prints puts each file exactly where the config looks."""
    from axcl_ros.model_catalogue import CARD_MODELS, MODEL_ROOT

    pi5 = {_node_of(k): v for k, v in _sections(PKG / "config" / "pi5_axcl.yaml")}
    readme = (PKG.parents[1] / "README.md").read_text()
    for m in CARD_MODELS:
        assert pi5[m["task"]][m["parameter"]] == m["path"], m["task"]
        assert m["path"] in readme and m["get"] in readme, f"README lacks {m['path']} / its get command"
        local_dir = m["get"].split("--local-dir ")[1].split()[0]
        assert m["path"].startswith(local_dir) and local_dir.startswith(MODEL_ROOT)
        if m["task"] != "speech":  # the single file the command fetches lands at the configured path
            repo_file = m["get"].split()[3]
            assert f"{local_dir}/{repo_file}" == m["path"]

