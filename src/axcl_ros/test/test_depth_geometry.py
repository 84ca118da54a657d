"""Depth geometry: camera_info scaling, back-projection, colourising and PointCloud2 packing (numeric checks)."""

import cv2
import numpy as np
import pytest

from axcl_ros.models.depth_geometry import (
    POINTFIELD_FLOAT32,
    GeometryInputError,
    apply_roi_binning,
    colorize,
    depth_to_points,
    pack_pointcloud2_fields,
    pointcloud2_dtype,
    scale_camera_info,
)

W, H = 640, 480
K = np.array([[525.0, 0.0, 319.3], [0.0, 531.0, 241.7], [0.0, 0.0, 1.0]])
P = np.hstack([K, np.array([[-0.06 * 525.0], [0.0], [0.0]])])  # right camera of a 6 cm stereo pair
NORMAL = np.array([0.2, -0.35, 1.0]) / np.linalg.norm([0.2, -0.35, 1.0])
DIST = 2.5  # plane n.X = DIST (metres)


def _inverse_depth_of_plane(k, width, height, u=None, v=None):
    """1/Z of the plane at pixel centres (or at given continuous pixel coordinates): linear in (u, v)."""
    if u is None:
        u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    yn = (v - k[1, 2]) / k[1, 1]
    xn = (u - k[0, 2] - k[0, 1] * yn) / k[0, 0]
    return (NORMAL[0] * xn + NORMAL[1] * yn + NORMAL[2]) / DIST


def _fit_plane(xyz):
    c = xyz.mean(axis=0)
    _, s, vt = np.linalg.svd(xyz - c, full_matrices=False)
    n = vt[2] * np.sign(vt[2][2])
    return n, float(n @ c), s[2] / np.sqrt(len(xyz))


def test_plane_back_projects_to_the_same_plane():
    depth = (1.0 / _inverse_depth_of_plane(K, W, H)).astype(np.float32)
    xyz, colours = depth_to_points(depth, K)
    assert colours is None and xyz.dtype == np.float32 and xyz.shape == (W * H, 3)
    n, d, rms = _fit_plane(xyz.astype(np.float64))
    assert rms < 1e-5
    np.testing.assert_allclose(n, NORMAL, atol=1e-5)
    assert abs(d - DIST) < 1e-5
    # pixel (u, v) -> ((u - cx) Z / fx, (v - cy) Z / fy, Z), row-major order
    u, v = 17, 301
    i = v * W + u
    z = depth[v, u]
    np.testing.assert_allclose(xyz[i], [(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], rtol=1e-6)


@pytest.mark.parametrize("new_w,new_h", [(320, 240), (518, 518), (1000, 700)])
def test_scaled_camera_info_keeps_points_of_a_resized_depth_map(new_w, new_h):
    inv = _inverse_depth_of_plane(K, W, H).astype(np.float32)
    small_inv = cv2.resize(inv, (new_w, new_h), interpolation=cv2.INTER_LINEAR)  # what the depth adapter does
    cam = scale_camera_info(K, P, W, H, new_w, new_h)
    assert (cam.width, cam.height, cam.K.shape, cam.P.shape) == (new_w, new_h, (3, 3), (3, 4))
    # drop the 1-pixel border, where cv2.resize replicates edges instead of interpolating
    k_crop, _ = apply_roi_binning(cam.K, cam.P, x_offset=1, y_offset=1)
    xyz, _ = depth_to_points(1.0 / small_inv[1:-1, 1:-1], k_crop)
    n, d, rms = _fit_plane(xyz.astype(np.float64))
    assert rms < 1e-6 and abs(d - DIST) < 1e-6
    np.testing.assert_allclose(n, NORMAL, atol=1e-6)
    # corresponding pixels: new pixel (u', v') <-> old continuous pixel ((u'+.5)/sx-.5, (v'+.5)/sy-.5)
    sx, sy = new_w / W, new_h / H
    up, vp = np.meshgrid(np.arange(2, new_w - 2, 7.0), np.arange(2, new_h - 2, 5.0))
    u, v = (up + 0.5) / sx - 0.5, (vp + 0.5) / sy - 0.5
    z_old = 1.0 / _inverse_depth_of_plane(K, W, H, u, v)
    old = np.stack([(u - K[0, 2]) / K[0, 0] * z_old, (v - K[1, 2]) / K[1, 1] * z_old, z_old], -1)
    full, _ = depth_to_points(1.0 / small_inv, cam.K)
    new = full.reshape(new_h, new_w, 3)[vp.astype(int), up.astype(int)]
    assert np.abs(new - old).max() < 5e-6  # metres (measured ~5e-7)
    # the plain u' = u * sx convention (image_proc) is off by 0.8 to 3.5 mm here
    plain = scale_camera_info(K, P, W, H, new_w, new_h, half_pixel=False)
    off, _ = depth_to_points(1.0 / small_inv, plain.K)
    assert np.abs(off.reshape(new_h, new_w, 3)[vp.astype(int), up.astype(int)] - old).max() > 5e-4


def test_scale_camera_info_matrices():
    cam = scale_camera_info(K.ravel().tolist(), P.ravel().tolist(), W, H, 320, 240)
    np.testing.assert_allclose(cam.K, [[262.5, 0, 319.3 / 2 - 0.25], [0, 265.5, 241.7 / 2 - 0.25], [0, 0, 1]])
    np.testing.assert_allclose(cam.P[:, :3], cam.K)
    # Tx = -fx * B scales with fx, so the 6 cm baseline is preserved
    assert cam.P[0, 3] / cam.P[0, 0] == pytest.approx(-0.06)
    plain = scale_camera_info(K, P, W, H, 1280, 960, half_pixel=False)
    np.testing.assert_allclose(plain.K[:2], 2 * K[:2])
    # an uncalibrated all-zero P stays zero; identity scaling changes nothing
    assert not scale_camera_info(K, np.zeros(12), W, H, 100, 50).P.any()
    same = scale_camera_info(K, P, W, H, W, H)
    np.testing.assert_allclose(same.K, K) and np.testing.assert_allclose(same.P, P)
    for bad in ((np.eye(2), P, W, H, 1, 1), (K, P[:, :3], W, H, 1, 1), (K, P, 0, H, 1, 1), (K, P, W, H, 1.5, 1),
                (np.full(9, np.nan), P, W, H, 1, 1)):
        with pytest.raises(GeometryInputError):
            scale_camera_info(*bad)


def test_binning_and_roi_follow_image_geometry():
    k2, p2 = apply_roi_binning(K, P, x_offset=40, y_offset=20, binning_x=2, binning_y=2)
    np.testing.assert_allclose(k2, [[262.5, 0, (319.3 - 40) / 2], [0, 265.5, (241.7 - 20) / 2], [0, 0, 1]])
    np.testing.assert_allclose(p2[0, 3], P[0, 3] / 2)
    k1, p1 = apply_roi_binning(K, P)  # binning 0 = 1, no ROI
    np.testing.assert_allclose(k1, K) and np.testing.assert_allclose(p1, P)
    with pytest.raises(GeometryInputError, match="binning_x"):
        apply_roi_binning(K, P, binning_x=-1)


def test_points_stride_colours_and_invalid_pixels():
    depth = np.full((6, 8), 2.0, np.float32)
    depth[0, 0], depth[0, 2], depth[2, 4], depth[4, 6] = np.nan, np.inf, 0.0, -1.0
    rgb = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    xyz, col = depth_to_points(depth, K, stride=2, rgb=rgb)
    # rows 0,2,4 x cols 0,2,4,6 = 12 samples, 4 of them invalid
    assert xyz.shape == (8, 3) and col.shape == (8, 3) and col.dtype == np.uint8
    keep = np.isfinite(depth[::2, ::2]) & (depth[::2, ::2] > 0)
    np.testing.assert_array_equal(col, rgb[::2, ::2][keep])
    vv, uu = np.nonzero(keep)
    np.testing.assert_allclose(xyz[:, 0], (uu * 2 - K[0, 2]) * 2.0 / K[0, 0], rtol=1e-6)
    np.testing.assert_allclose(xyz[:, 1], (vv * 2 - K[1, 2]) * 2.0 / K[1, 1], rtol=1e-6)
    with pytest.raises(GeometryInputError, match="rgb"):
        depth_to_points(depth, K, rgb=rgb[:, :4])
    with pytest.raises(GeometryInputError, match="stride"):
        depth_to_points(depth, K, stride=0)
    with pytest.raises(GeometryInputError, match="K"):
        depth_to_points(depth, np.zeros((3, 3)))
    with pytest.raises(GeometryInputError, match="depth"):
        depth_to_points(np.ones((6, 8), np.uint16), K)


def test_skew_is_honoured():
    ks = K.copy()
    ks[0, 1] = 3.0
    depth = (1.0 / _inverse_depth_of_plane(ks, W, H)).astype(np.float32)
    n, d, rms = _fit_plane(depth_to_points(depth, ks)[0].astype(np.float64))
    assert rms < 1e-5 and abs(d - DIST) < 1e-5


def test_pointcloud_bytes_decode_back():
    rng = np.random.default_rng(2)
    xyz = rng.normal(size=(257, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (257, 3), dtype=np.uint8)
    cloud = pack_pointcloud2_fields(xyz, rgb)
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ("x", 0, POINTFIELD_FLOAT32, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("rgb", 12, 7, 1)]
    assert cloud.point_step == 16 and len(cloud.data) == 257 * 16 and isinstance(cloud.data, bytes)
    rec = np.frombuffer(cloud.data, pointcloud2_dtype(cloud.fields, cloud.point_step))
    np.testing.assert_array_equal(np.stack([rec["x"], rec["y"], rec["z"]], 1), xyz)
    packed = rec["rgb"].view(np.uint32)  # PCL: float32 field holding 0x00RRGGBB
    back = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], 1).astype(np.uint8)
    np.testing.assert_array_equal(back, rgb)
    red = pack_pointcloud2_fields(np.zeros((1, 3), np.float32), np.array([[255, 0, 0]], np.uint8))
    assert red.data[12:16] == (0xFF0000).to_bytes(4, "little")
    plain = pack_pointcloud2_fields(xyz.astype(np.float64))
    assert plain.point_step == 12 and [f.name for f in plain.fields] == ["x", "y", "z"]
    np.testing.assert_array_equal(np.frombuffer(plain.data, "<f4").reshape(-1, 3), xyz)
    assert pack_pointcloud2_fields(np.zeros((0, 3), np.float32)).data == b""
    with pytest.raises(GeometryInputError):
        pack_pointcloud2_fields(xyz[:, :2])
    with pytest.raises(GeometryInputError):
        pack_pointcloud2_fields(xyz, rgb[:5])


def test_colorize_ramp_nan_inf_and_constant():
    ramp = np.tile(np.linspace(0.0, 10.0, 101, dtype=np.float32), (20, 1))
    ramp[5, 7], ramp[6, 8], ramp[7, 9] = np.nan, np.inf, -np.inf
    img = colorize(ramp, cv2.COLORMAP_INFERNO, percentiles=(0, 100))
    assert img.dtype == np.uint8 and img.shape == (20, 101, 3)
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_INFERNO)[:, 0]
    np.testing.assert_array_equal(img[0, 0], lut[0])
    np.testing.assert_array_equal(img[0, 100], lut[255])
    np.testing.assert_array_equal(img[0, 40], lut[102])  # 4.0 of 0..10 -> 102
    for v, u in ((5, 7), (6, 8), (7, 9)):
        assert not img[v, u].any()
    inv = colorize(ramp, cv2.COLORMAP_INFERNO, percentiles=(0, 100), invert=True)
    np.testing.assert_array_equal(inv[0, 0], lut[255])
    # percentiles clip outliers: a single huge value does not flatten the rest
    spike = ramp.copy()
    spike[0, 0] = 1e9
    clipped = colorize(spike, cv2.COLORMAP_INFERNO, percentiles=(2, 98))
    assert len({tuple(c) for c in clipped[1]}) > 50
    const = colorize(np.full((4, 5), 3.0), cv2.COLORMAP_TURBO)
    tlut = cv2.applyColorMap(np.array([[128]], np.uint8), cv2.COLORMAP_TURBO)[0, 0]
    assert (const == tlut).all()
    assert not colorize(np.full((4, 5), np.nan)).any()
    fixed = colorize(ramp, cv2.COLORMAP_INFERNO, value_range=(0.0, 5.0))
    np.testing.assert_array_equal(fixed[0, 60], lut[255])
    with pytest.raises(GeometryInputError):
        colorize(np.zeros((2, 2, 3)))
    with pytest.raises(GeometryInputError):
        colorize(ramp, percentiles=(90, 10))


@pytest.mark.parametrize("cmap", [cv2.COLORMAP_TURBO, cv2.COLORMAP_INFERNO, cv2.COLORMAP_JET])
def test_colorize_matches_opencv_applycolormap(cmap):
    levels = np.random.default_rng(4).integers(0, 256, (48, 64)).astype(np.uint8)
    ours = colorize(levels.astype(np.float32), cmap, value_range=(0.0, 255.0))
    np.testing.assert_array_equal(ours, cv2.applyColorMap(levels, cmap))
    with pytest.raises(GeometryInputError, match="colormap"):
        colorize(levels.astype(np.float32), 999)
