"""The vision_msgs mapping, against stand-in types with vision_msgs 4.x field layout (vision_msgs is not installable
here; on a robot the real classes are used through the same code)."""

from types import SimpleNamespace

import numpy as np

from axcl_ros.io.detection_messages import (
    fill_detection_array,
    to_label_info,
    to_vision_detections,
    vision_msgs_types,
)


class _Msg(SimpleNamespace):
    pass


def _point2d():
    return _Msg(x=0.0, y=0.0)


def _types():
    def detection2d():
        return _Msg(header=None, results=[], id="",
                    bbox=_Msg(center=_Msg(position=_point2d(), theta=None), size_x=0.0, size_y=0.0))

    return SimpleNamespace(
        Detection2DArray=lambda: _Msg(header=None, detections=[]),
        Detection2D=detection2d,
        ObjectHypothesisWithPose=lambda: _Msg(hypothesis=_Msg(class_id="", score=0.0), pose=None),
        LabelInfo=lambda: _Msg(header=None, class_map=[], threshold=0.0),
        VisionClass=lambda: _Msg(class_id=0, class_name=""),
    )


BOXES = np.array([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 4.0, 2.0]])
SCORES = [0.9, 0.3]
IDS = [3, 0]


def test_detection2d_array_field_mapping():
    header = object()
    arr = to_vision_detections(_types(), header, BOXES, SCORES, IDS)
    assert arr.header is header and len(arr.detections) == 2
    d0 = arr.detections[0]
    assert d0.header is header
    assert (d0.bbox.center.position.x, d0.bbox.center.position.y) == (30.0, 50.0)
    assert (d0.bbox.size_x, d0.bbox.size_y) == (40.0, 60.0) and d0.bbox.center.theta == 0.0
    assert d0.results[0].hypothesis.class_id == "3" and d0.results[0].hypothesis.score == 0.9
    assert arr.detections[1].results[0].hypothesis.class_id == "0"


def test_label_info_maps_ids_to_names():
    info = to_label_info(_types(), "h", ["person", "cup"], 0.25)
    assert info.header == "h" and info.threshold == 0.25
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(0, "person"), (1, "cup")]


def test_axcl_detection_array_centre_size():
    class Det(SimpleNamespace):
        TRACK_NONE = -1

    out = fill_detection_array(_Msg(), Det, "hdr", BOXES, SCORES, IDS, ["cup", "person"], 640, 480)
    assert out.header == "hdr" and (out.image_width, out.image_height) == (640, 480)
    d = out.detections[0]
    assert (d.center_x, d.center_y, d.size_x, d.size_y) == (30.0, 50.0, 40.0, 60.0)
    assert d.class_id == 3 and d.class_name == "cup" and d.track_id == -1


def test_vision_msgs_absent_here_is_reported_as_none():
    try:
        import vision_msgs  # noqa: F401
    except ImportError:
        assert vision_msgs_types() is None
    else:
        assert vision_msgs_types() is not None
