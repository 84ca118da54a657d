"""Optional: a real Depth Anything V2 ONNX (``AXCL_ROS_DEPTH_MODEL``) scored against Middlebury ground truth.

No registry package ships DA-V2 weights (shared/reference/models.md §4.4), so this skips unless the variable points to
an exported checkpoint, e.g. ``AXCL_ROS_DEPTH_MODEL=/path/depth_anything_v2_vits.onnx``. DA-V2 relative models output
inverse depth, which is proportional to stereo disparity, so the rank correlation with the GT disparity of
``skimage.data.stereo_motorcycle()`` must be clearly positive.
"""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from axcl_ros.models.depth_anything import DepthAnythingAdapter

ENV = "AXCL_ROS_DEPTH_MODEL"


@pytest.mark.realweights
def test_real_depth_anything_ranks_like_stereo_ground_truth():
    path = os.environ.get(ENV, "")
    if not path:
        pytest.skip(f"no real Depth Anything V2 weights are reachable here; set {ENV} to a DA-V2 ONNX file")
    if not Path(path).is_file():
        pytest.fail(f"{ENV}={path!r} is not a file")
    from scipy.stats import spearmanr
    from skimage import data

    from axcl_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend

    left_rgb, _, disparity = data.stereo_motorcycle()
    sess = OnnxRuntimeBackend(intra_op_num_threads=2).load(path)
    adapter = DepthAnythingAdapter.from_session(sess, mode="inverse_relative")
    inv = adapter.infer(sess, cv2.cvtColor(left_rgb, cv2.COLOR_RGB2BGR))
    assert inv.shape == disparity.shape
    ok = np.isfinite(disparity) & np.isfinite(inv)
    assert ok.mean() > 0.9
    rho = spearmanr(inv[ok], disparity[ok]).statistic
    print(f"Spearman rho vs GT disparity: {rho:.3f} on {int(ok.sum())} pixels")
    assert rho > 0.7, f"real model output does not rank like inverse depth (rho={rho:.3f})"
