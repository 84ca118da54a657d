"""Points → sensor_msgs/PointCloud2 (the field packing itself is ``models.depth_geometry.pack_pointcloud2_fields``)."""

from __future__ import annotations

import array
from typing import Optional

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField

from ..models.depth_geometry import pack_pointcloud2_fields


def pointcloud_msg(header, xyz: np.ndarray, rgb: Optional[np.ndarray]) -> PointCloud2:
    """Unorganised little-endian PointCloud2 (x, y, z float32 [+ PCL-packed rgb])."""
    packed = pack_pointcloud2_fields(xyz, rgb)
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = 1, int(xyz.shape[0])
    msg.fields = [PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
                  for f in packed.fields]
    msg.is_bigendian = False
    msg.point_step = packed.point_step
    msg.row_step = len(packed.data)
    msg.data = array.array("B", packed.data)
    msg.is_dense = True
    return msg
