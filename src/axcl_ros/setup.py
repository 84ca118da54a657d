from glob import glob

from setuptools import find_packages, setup

PACKAGE = "axcl_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    # the runtime package only: test helpers, the AXCL stub and the demo live in tools/ at the repository root and
    # are never installed (test/test_package_contents.py checks the built install tree)
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
        ("bin", ["scripts/axcl_ros"]),  # `axcl_ros` on PATH once install/setup.bash is sourced
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="axcl_ros maintainers",
    maintainer_email="axcl_ros@example.com",
    description="ROS 2 perception (detection, depth, speech) on the AXERA AX650N card or onnxruntime",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "detector = axcl_ros.nodes.detector:main",
            "depth = axcl_ros.nodes.depth:main",
            "speech = axcl_ros.nodes.speech:main",
            "describe = axcl_ros.nodes.describe:main",
            "device_monitor = axcl_ros.nodes.device_monitor:main",
            "audio_capture = axcl_ros.nodes.audio_capture:main",
            "wav_publisher = axcl_ros.nodes.wav_publisher:main",
            "perception_host = axcl_ros.bringup.host:main",
            "lifecycle_manager = axcl_ros.bringup.lifecycle_manager:main",
            "axcl_ros = axcl_ros.cli:main",
        ],
    },
)
