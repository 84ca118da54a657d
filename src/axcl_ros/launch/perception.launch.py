"""axcl_ros perception: detector, depth, speech and device monitor, composed in one process or one process each.

    ros2 launch axcl_ros perception.launch.py
    ros2 launch axcl_ros perception.launch.py params_file:=/path/pi5_axcl.yaml camera_topic:=/oak/rgb/image_raw
    ros2 launch axcl_ros perception.launch.py use_composition:=false speech:=false

Valid for Humble, Jazzy and Kilted: it imports only launch and launch_ros. All logic (which
nodes, topic and backend overrides, bring-up order and retries) lives in the tested ``perception_host`` and
``lifecycle_manager`` executables; this file only passes the arguments on.

use_composition:=true starts one ``perception_host`` process hosting every selected node on one executor (sharing
one device per card) with its in-process lifecycle manager. use_composition:=false starts every node in its own
process (its own executable, named after the node) and one ``lifecycle_manager`` that brings them up through their
lifecycle services, notices a node process that dies and brings a restarted one back (``respawn:=true`` restarts
it); Nav2's composition switch. rviz2 starts only when it is installed (otherwise one line says so).

Arguments:

``params_file`` (default: share/axcl_ros/config/cpu.yaml): the one ROS parameter file for every node.
``use_composition`` (default: true): one process for all nodes (true) or one process per node (false).
``autostart`` (default: true): configure and activate the nodes at start (lifecycle manager).
``namespace`` (default: empty): namespace of every node.
``respawn`` (default: false): restart a node process that died (use_composition:=false).
``device_monitor`` (default: true): run the card/CPU monitor (brought up first).
``detector`` (default: true): run the object detector.
``depth`` (default: true): run the depth estimator.
``speech`` (default: true): run speech recognition.
``camera_topic`` (default: empty = params file): camera image topic (detector and depth input).
``camera_info_topic`` (default: empty = params file): camera_info topic (depth point cloud).
``audio_topic`` (default: empty = params file): audio topic (speech input, axcl_msgs/AudioChunk).
``backend`` (default: empty = params file): inference backend, auto, axcl or onnxruntime.
``detector_model`` (default: empty = params file): detector model file (.axmodel or .onnx).
``depth_model`` (default: empty = params file): depth model file (.axmodel or .onnx).
``whisper_model`` (default: empty = params file): Whisper model folder (speech model_dir).
``log_level`` (default: info): ROS log level of every process.
``use_rviz`` (default: false): start rviz2 with the perception view (when rviz2 is installed).
``rviz_config`` (default: share/axcl_ros/rviz/perception.rviz): rviz2 configuration.
``camera_frame`` (default: camera_link): rviz2's fixed frame: the camera's frame_id (images and clouds render in it).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, LogInfo, OpaqueFunction
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackagePrefix, FindPackageShare

NODES = ["device_monitor", "detector", "depth", "speech"]  # bring-up order: the monitor explains a missing card
INPUTS = ["camera_topic", "camera_info_topic", "audio_topic", "backend", "detector_model", "depth_model",
          "whisper_model"]


def _rviz(context, cfg):
    """rviz2 when asked for and installed; a missing rviz2 must not abort the launch (and orphan the nodes)."""
    if cfg["use_rviz"].perform(context).lower() not in ("true", "1", "yes"):
        return []
    try:
        FindPackagePrefix("rviz2").perform(context)
    except Exception:  # noqa: BLE001 - PackageNotFoundError: rviz2 is not installed
        return [LogInfo(msg="use_rviz:=true but rviz2 is not installed (apt install ros-$ROS_DISTRO-rviz2); "
                            "the nodes run without it")]
    return [Node(package="rviz2", executable="rviz2", output="screen",
                 arguments=["-d", cfg["rviz_config"], "-f", cfg["camera_frame"]])]


def generate_launch_description():
    share = FindPackageShare("axcl_ros")
    cfg = {name: LaunchConfiguration(name) for name in (
        "params_file", "use_composition", "autostart", "namespace", "respawn", *NODES, *INPUTS, "log_level",
        "use_rviz", "rviz_config", "camera_frame")}

    arguments = [
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "cpu.yaml"]),
                              description="The one ROS parameter file for every node"),
        DeclareLaunchArgument("use_composition", default_value="true",
                              description="One perception_host process for all nodes (true) or one per node"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="Configure and activate the nodes at start"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of every node"),
        DeclareLaunchArgument("respawn", default_value="false",
                              description="Restart a node process that died (use_composition:=false)"),
        DeclareLaunchArgument("device_monitor", default_value="true", description="Run the device monitor"),
        DeclareLaunchArgument("detector", default_value="true", description="Run the object detector"),
        DeclareLaunchArgument("depth", default_value="true", description="Run the depth estimator"),
        DeclareLaunchArgument("speech", default_value="true", description="Run speech recognition"),
        DeclareLaunchArgument("camera_topic", default_value="",
                              description="Camera image topic; empty = from params_file"),
        DeclareLaunchArgument("camera_info_topic", default_value="",
                              description="camera_info topic; empty = from params_file"),
        DeclareLaunchArgument("audio_topic", default_value="", description="Audio topic; empty = from params_file"),
        DeclareLaunchArgument("backend", default_value="", choices=["", "auto", "axcl", "onnxruntime"],
                              description="Inference backend; empty = from params_file"),
        DeclareLaunchArgument("detector_model", default_value="",
                              description="Detector model file; empty = from params_file"),
        DeclareLaunchArgument("depth_model", default_value="",
                              description="Depth model file; empty = from params_file"),
        DeclareLaunchArgument("whisper_model", default_value="",
                              description="Whisper model folder; empty = from params_file"),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
        DeclareLaunchArgument("use_rviz", default_value="false", description="Start rviz2 (when installed)"),
        DeclareLaunchArgument("rviz_config", default_value=PathJoinSubstitution([share, "rviz", "perception.rviz"]),
                              description="rviz2 configuration file"),
        DeclareLaunchArgument("camera_frame", default_value="camera_link",
                              description="rviz2 fixed frame: the camera's frame_id"),
    ]

    select = ["--select"] + [[name, "=", cfg[name]] for name in NODES]
    inputs = [["--" + name.replace("_", "-") + "=", cfg[name]] for name in INPUTS]
    ros_args = ["--ros-args", "--log-level", cfg["log_level"]]

    composed = Node(
        package="axcl_ros", executable="perception_host", namespace=cfg["namespace"], output="screen",
        parameters=[cfg["params_file"]], condition=IfCondition(cfg["use_composition"]),
        arguments=select + [["--autostart=", cfg["autostart"]]] + inputs + ros_args)

    separate = GroupAction(condition=UnlessCondition(cfg["use_composition"]), actions=[
        *[Node(package="axcl_ros", executable=name, name=name, namespace=cfg["namespace"], output="screen",
               parameters=[cfg["params_file"]], condition=IfCondition(cfg[name]), respawn=cfg["respawn"],
               respawn_delay=2.0, arguments=inputs + ros_args)
          for name in NODES],
        Node(package="axcl_ros", executable="lifecycle_manager", name="lifecycle_manager",
             namespace=cfg["namespace"], output="screen",
             parameters=[cfg["params_file"], {"node_names": NODES, "autostart": cfg["autostart"]}],
             arguments=select + ros_args),
    ])

    return LaunchDescription(arguments + [composed, separate, OpaqueFunction(function=_rviz, args=[cfg])])
