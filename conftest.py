"""Repository-wide pytest setup: the test helpers in ``tools/`` (``axcl_ros_testing``; not part of the installed
package) are importable here through ``pytest.ini``'s ``pythonpath``; this puts the same folder on ``PYTHONPATH`` for
the processes the tests start (camera stand-ins, fuzz senders, hosts that load dummy nodes), also when
``scripts/env.sh`` was not sourced."""

import os
from pathlib import Path

TOOLS = str(Path(__file__).resolve().parent / "tools")

if TOOLS not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (TOOLS, os.environ.get("PYTHONPATH", "")) if p)
