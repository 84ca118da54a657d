"""ByteTrack on a real detector's output: two copies of the astronaut's head (skimage photo) cross in front of a
panning skimage 'coffee' scene; the nearer one hides the other completely for several frames. NudeNet's YOLOv8n
(real weights) finds the faces; the tracker must give each face one identity through the crossing (the lost-track
buffer and the Kalman motion model carry the hidden one), i.e. no ID switch and an identity F1 close to what the
detections allow (the "oracle": each detection labelled with its true face)."""

import numpy as np
import pytest

from axcl_ros.models.tracking import ByteTracker
from axcl_ros_testing.tracking_sequences import identity_metrics, real_photo_crossing

pytestmark = pytest.mark.realweights
def test_faces_keep_their_identity_through_a_full_occlusion():
    frames = real_photo_crossing()
    hidden_frames = sum(1 not in f.gt_ids for f in frames)
    assert hidden_frames >= 4  # the sequence really hides face 1
    tracker = ByteTracker()
    ids = [tracker.update(f.det_boxes, f.det_scores) for f in frames]
    m = identity_metrics(frames, ids)
    oracle = identity_metrics(frames, [np.where(f.det_gt > 0, f.det_gt, -1) for f in frames])
    print(m, "oracle", oracle.idf1, "hidden frames", hidden_frames)
    assert oracle.idr > 0.8  # the detector does find the faces
    assert m.id_switches == 0
    assert m.idf1 >= 0.9 * oracle.idf1
