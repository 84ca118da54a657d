"""The launch file without launch_ros (not installable from PyPI): its imports, its documented arguments, and the
actions it builds (run against recording stand-ins of launch/launch_ros), including that the command lines it
gives ``perception_host`` and ``lifecycle_manager`` parse; and the rviz config."""

import ast
import re
import sys
import types
from pathlib import Path

import pytest
import yaml

from axcl_ros.bringup.host import build_parser
from axcl_ros.bringup.node_registry import DEFAULT_NODES, INPUT_OPTIONS, input_overrides, input_parser, parse_select
from axcl_ros.runtime.registry import BACKEND_CHOICES

PKG = Path(__file__).resolve().parents[1]
LAUNCH = PKG / "launch" / "perception.launch.py"
RVIZ = PKG / "rviz" / "perception.rviz"
ALLOWED = {"launch", "launch_ros"}


def _tree():
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


def _declared(tree):
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument":
            assert isinstance(node.args[0], ast.Constant), "argument names must be literal strings"
            names.append(node.args[0].value)
    return names


def _documented():
    doc = ast.get_docstring(_tree())
    return re.findall(r"^``(\w+)`` \(default: ", doc, flags=re.M)


def test_imports_only_launch_and_launch_ros():
    tops = set()
    for node in ast.walk(_tree()):
        if isinstance(node, ast.Import):
            tops |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports in a launch file"
            tops.add(node.module.split(".")[0])
    assert tops <= ALLOWED, f"launch file imports {sorted(tops - ALLOWED)}"
    assert {"launch", "launch_ros"} <= tops


def test_defines_generate_launch_description():
    funcs = [n for n in _tree().body if isinstance(n, ast.FunctionDef)]
    assert [f.name for f in funcs if f.name == "generate_launch_description"]
    gld = next(f for f in funcs if f.name == "generate_launch_description")
    assert not gld.args.args, "generate_launch_description takes no arguments"


def test_arguments_match_the_documented_table():
    declared = _declared(_tree())
    assert len(declared) == len(set(declared))
    assert declared == _documented()
    for name in DEFAULT_NODES:
        assert name in declared
    assert {"params_file", "use_composition", "autostart", "namespace", "camera_topic", "camera_info_topic",
            "audio_topic", "backend"} <= set(declared)


def test_launch_lists_are_the_registrys():
    """The launch file imports only launch/launch_ros (all logic lives in the tested executables), so its node and
    input lists are copies: they must equal the node registry's, and its backend choices the runtime's."""
    tree = _tree()
    lists = {t.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
             for t in n.targets if isinstance(t, ast.Name) and t.id in ("NODES", "INPUTS")}
    assert lists["NODES"] == list(DEFAULT_NODES)
    assert lists["INPUTS"] == list(INPUT_OPTIONS)
    backend = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") ==
                   "DeclareLaunchArgument" and n.args[0].value == "backend")
    choices = next(k.value for k in backend.keywords if k.arg == "choices")
    assert ast.literal_eval(choices) == ["", *BACKEND_CHOICES]


# -- run the launch file against recording stand-ins ------------------------------------------------------------------
class _Rec:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(_Rec):
    created: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        LaunchConfiguration.created.append(args[0])

    @property
    def name(self):
        return self.args[0]


class IfCondition(_Rec):
    pass


class FindPackagePrefix(_Rec):
    installed: set = set()

    def perform(self, context):
        if self.args[0] not in FindPackagePrefix.installed:
            raise LookupError(f"package '{self.args[0]}' not found")  # PackageNotFoundError in real launch_ros
        return f"/opt/ros/x/{self.args[0]}"


class UnlessCondition(_Rec):
    pass


@pytest.fixture()
def launch_description(monkeypatch):
    fakes = {
        "launch": {"LaunchDescription": type("LaunchDescription", (_Rec,), {})},
        "launch.actions": {"DeclareLaunchArgument": type("DeclareLaunchArgument", (_Rec,), {}),
                           "GroupAction": type("GroupAction", (_Rec,), {}), "LogInfo": type("LogInfo", (_Rec,), {}),
                           "OpaqueFunction": type("OpaqueFunction", (_Rec,), {})},
        "launch.conditions": {"IfCondition": IfCondition, "UnlessCondition": UnlessCondition},
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration,
                                 "PathJoinSubstitution": type("PathJoinSubstitution", (_Rec,), {})},
        "launch_ros": {}, "launch_ros.actions": {"Node": type("Node", (_Rec,), {})},
        "launch_ros.substitutions": {"FindPackageShare": type("FindPackageShare", (_Rec,), {}),
                                     "FindPackagePrefix": FindPackagePrefix},
    }
    for name, attrs in fakes.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(LaunchConfiguration, "created", [])
    scope = {"__name__": "perception_launch", "__file__": str(LAUNCH)}
    exec(compile(LAUNCH.read_text(), str(LAUNCH), "exec"), scope)  # noqa: S102 - our own launch file
    return scope["generate_launch_description"]()


def _render(value, config):
    """Evaluate a launch argument element: strings, LaunchConfigurations and lists of them."""
    if isinstance(value, str):
        return value
    if isinstance(value, LaunchConfiguration):
        return config[value.name]
    return "".join(_render(v, config) for v in value)


def _cond(action):
    c = action.kwargs.get("condition")
    return (type(c).__name__, c.args[0].name) if c is not None else None


CONFIG = {"detector": "true", "depth": "false", "speech": "true", "device_monitor": "true", "autostart": "true",
          "camera_topic": "/oak/rgb/image_raw", "camera_info_topic": "", "audio_topic": "/mic", "backend": "axcl",
          "detector_model": "/m/yolo11s.axmodel", "depth_model": "", "whisper_model": "/m/whisper/tiny",
          "log_level": "debug", "use_rviz": "true"}


def _split(argv):
    i = argv.index("--ros-args")
    return argv[:i], argv[i:]


def test_composed_and_separate_process_actions(launch_description):
    actions = launch_description.args[0]
    declared = {a.args[0]: a.kwargs["default_value"] for a in actions if type(a).__name__ == "DeclareLaunchArgument"}
    for name, parts in (("params_file", ["config", "cpu.yaml"]), ("rviz_config", ["rviz", "perception.rviz"])):
        share, *rest = declared[name].args[0]  # PathJoinSubstitution([FindPackageShare("axcl_ros"), ...])
        assert type(share).__name__ == "FindPackageShare" and share.args == ("axcl_ros",) and rest == parts
    assert (PKG / "config" / "cpu.yaml").is_file() and RVIZ.is_file()
    assert set(LaunchConfiguration.created) == set(declared), "every argument is used, nothing undeclared is read"
    nodes = [a for a in actions if type(a).__name__ == "Node"]
    groups = [a for a in actions if type(a).__name__ == "GroupAction"]

    composed = [n for n in nodes if n.kwargs["executable"] == "perception_host"]
    assert len(composed) == 1 and _cond(composed[0]) == ("IfCondition", "use_composition")
    host = composed[0]
    assert "name" not in host.kwargs, "name= would rename every node of the process"
    assert [p.name for p in host.kwargs["parameters"]] == ["params_file"]
    own, ros = _split([_render(a, CONFIG) for a in host.kwargs["arguments"]])
    assert ros == ["--ros-args", "--log-level", "debug"]
    opts = build_parser().parse_args(own)
    assert parse_select(opts.select) == {"detector": True, "depth": False, "speech": True, "device_monitor": True}
    assert (opts.autostart, opts.camera_topic, opts.camera_info_topic, opts.audio_topic, opts.backend) == (
        "true", "/oak/rgb/image_raw", "", "/mic", "axcl")
    assert (opts.detector_model, opts.depth_model, opts.whisper_model) == ("/m/yolo11s.axmodel", "", "/m/whisper/tiny")

    assert len(groups) == 1 and _cond(groups[0]) == ("UnlessCondition", "use_composition")
    inner = groups[0].kwargs["actions"]
    procs = [n for n in inner if n.kwargs["executable"] != "lifecycle_manager"]
    # one process per node, its own executable, named after the node (launch labels it so)
    assert [(n.kwargs["executable"], n.kwargs["name"]) for n in procs] == [(t, t) for t in DEFAULT_NODES]
    assert DEFAULT_NODES[0] == "device_monitor"
    assert [_cond(n) for n in procs] == [("IfCondition", t) for t in DEFAULT_NODES]
    for node_type, proc in zip(DEFAULT_NODES, procs):
        assert proc.kwargs["respawn"].name == "respawn" and [p.name for p in proc.kwargs["parameters"]] == [
            "params_file"]
        own, _ = _split([_render(a, CONFIG) for a in proc.kwargs["arguments"]])
        opts = input_parser(node_type).parse_args(own)  # what the node executable's main parses
        assert opts.camera_topic == "/oak/rgb/image_raw" and opts.detector_model == "/m/yolo11s.axmodel"
        if node_type == "detector":
            assert input_overrides(node_type, **vars(opts)) == {"image_topics": ["/oak/rgb/image_raw"],
                                                                "backend": "axcl", "model_path": "/m/yolo11s.axmodel"}
    (manager,) = [n for n in inner if n.kwargs["executable"] == "lifecycle_manager"]
    assert manager.kwargs["name"] == "lifecycle_manager"
    file_param, overrides = manager.kwargs["parameters"]
    assert file_param.name == "params_file"
    assert overrides["node_names"] == list(DEFAULT_NODES) and overrides["autostart"].name == "autostart"
    own, _ = _split([_render(a, CONFIG) for a in manager.kwargs["arguments"]])
    assert own[0] == "--select" and parse_select(own[1:])["depth"] is False

    (rviz,) = [a for a in actions if type(a).__name__ == "OpaqueFunction"]
    context = object()
    cfg = {k: type("Sub", (), {"perform": lambda self, ctx, v=v: v})() for k, v in CONFIG.items()}
    cfg.update(rviz_config="perception.rviz", camera_frame="oak_rgb_optical")
    FindPackagePrefix.installed = set()
    (missing,) = rviz.kwargs["function"](context, cfg)  # no rviz2: one line, nothing started, launch goes on
    assert type(missing).__name__ == "LogInfo" and "rviz2 is not installed" in missing.kwargs["msg"]
    FindPackagePrefix.installed = {"rviz2"}
    (started,) = rviz.kwargs["function"](context, cfg)
    assert started.kwargs["executable"] == "rviz2" and started.kwargs["arguments"][-2:] == ["-f", "oak_rgb_optical"]
    cfg["use_rviz"] = type("Sub", (), {"perform": lambda self, ctx: "false"})()
    assert rviz.kwargs["function"](context, cfg) == []


# -- rviz ------------------------------------------------------------------------------------------------------------
def test_rviz_config_shows_annotated_image_depth_and_cloud():
    cfg = yaml.safe_load(RVIZ.read_text())
    vm = cfg["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == "camera_link"  # the launch file sets it: camera_frame:=...
    displays = {d["Name"]: d for d in vm["Displays"]}
    by_class = {}
    for d in vm["Displays"]:
        by_class.setdefault(d["Class"], []).append(d["Topic"]["Value"] if "Topic" in d else None)
    # the topics the nodes publish for the shipped configs' camera topic
    cpu = yaml.safe_load((PKG / "config" / "cpu.yaml").read_text())
    camera_ns = cpu["/**/detector"]["ros__parameters"]["image_topics"][0].rsplit("/", 1)[0]
    assert camera_ns == "/camera"
    assert sorted(by_class["rviz_default_plugins/Image"]) == sorted(
        [f"{camera_ns}/detections_image", f"{camera_ns}/inverse_depth_relative/colored"])
    assert by_class["rviz_default_plugins/PointCloud2"] == [f"{camera_ns}/points_relative"]
    assert cpu["/**/depth"]["ros__parameters"]["relative_points"] is True
    for d in displays.values():
        assert d["Enabled"] is True
    assert set(cfg["Window Geometry"]) >= {n for n, d in displays.items() if d["Class"].endswith("/Image")}
