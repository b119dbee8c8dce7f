"""The pictures: preview grids, the top-down map, score colours and PNG writing (no ROS)."""

import cv2
import numpy as np
import pytest
import torch

from mirage_ros.rollout.figures import (
    MapView,
    auto_extent,
    preview_grid,
    save_png,
    score_colors,
    top_down_map,
)


def close(pixel, colour, tol=40) -> bool:
    return int(np.abs(pixel.astype(int) - np.asarray(colour, dtype=int)).max()) <= tol


# ---------------------------------------------------------------------------------- score_colors
def test_score_colors_best_green_worst_red_middle_yellow():
    c = score_colors([-3.0, 5.0, 1.0]).astype(int)
    assert c.shape == (3, 3) and score_colors([1.0]).dtype == np.uint8
    greenness = c[:, 1] - c[:, 0]
    assert np.argmax(greenness) == 1  # the highest score is the greenest
    assert np.argmax(c[:, 0] - c[:, 1]) == 0  # the lowest is the reddest
    assert c[0, 0] > 180 and c[0, 1] < 80  # red
    assert c[1, 1] > 150 and c[1, 0] < 80  # green
    assert c[2, 0] > 180 and c[2, 1] > 150 and c[2, 2] < 80  # half way: yellow


def test_score_colors_monotone_and_special_cases():
    c = score_colors(np.linspace(-1, 1, 11)).astype(int)
    assert np.all(np.diff(c[:, 1] - c[:, 0]) > 0)  # greener with every step up
    equal = score_colors([2.0, 2.0, 2.0])
    assert (equal == equal[0]).all() and equal[0, 1] > equal[0, 0]  # all green
    odd = score_colors([np.nan, 1.0, np.inf, 0.0, -np.inf])
    assert (odd[[0, 2, 4]] == 128).all()  # not a number: grey
    assert odd[1, 1] > odd[1, 0] and odd[3, 0] > odd[3, 1]  # finite ones still ordered
    assert score_colors(torch.tensor([0.0, 1.0])).shape == (2, 3)
    assert score_colors([]).shape == (0, 3)


# ---------------------------------------------------------------------------------- preview_grid
def test_preview_grid_float_tensor_shape_and_content():
    imgs = torch.zeros(3, 3, 16, 24)
    imgs[1, 0] = 1.0  # second view pure red
    out = preview_grid(imgs, ["#0 score -1.27", "#1", "#2"], scale=2)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape[1] >= 3 * 48 and out.shape[0] >= 32
    red = np.all(out == (255, 0, 0), axis=-1)
    assert red.sum() == 32 * 48  # the whole upscaled red tile is there, nearest-neighbour
    rows, cols = np.nonzero(red)
    assert cols.min() > 48 and cols.max() < out.shape[1] - 48  # in the middle column


def test_preview_grid_uint8_hwc_and_reference_row():
    imgs = np.zeros((2, 8, 8, 3), np.uint8)
    imgs[...] = (200, 10, 90)
    ref = np.zeros((2, 8, 8, 3), np.uint8)
    ref[..., 2] = 255  # blue truth
    one = preview_grid(imgs, ["a", "b"], scale=4)
    two = preview_grid(imgs, ["a", "b"], reference=ref, scale=4)
    assert two.shape[0] >= one.shape[0] + 32  # a second row of tiles
    blue = np.all(two == (0, 0, 255), axis=-1)
    grey = np.all(two == (200, 10, 90), axis=-1)
    assert blue.sum() == 2 * 32 * 32 and grey.sum() == 2 * 32 * 32
    assert np.nonzero(blue)[0].min() > np.nonzero(grey)[0].max()  # truth under imagined
    assert np.nonzero(grey)[1].min() > 4  # a row-label gutter on the left


def test_preview_grid_columns_wrap_and_label_colors():
    imgs = np.zeros((5, 3, 10, 10), np.float32)
    out = preview_grid(imgs, [str(i) for i in range(5)], columns=2, scale=1,
                       label_colors=score_colors(np.arange(5.0)))
    single = preview_grid(imgs, [str(i) for i in range(5)], scale=1)
    assert out.shape[0] > 2.5 * single.shape[0] and out.shape[1] < single.shape[1]
    assert np.all(out == score_colors([0.0, 4.0])[1], axis=-1).any()  # the best's stripe


def test_preview_grid_long_labels_and_errors():
    imgs = np.random.default_rng(0).random((2, 3, 128, 128))
    long = ["#12 score -1234567.891 " * 6, "\u00fcnicode label \u2713"]
    for scale in (1, 2):
        out = preview_grid(imgs, long, scale=scale)
        assert out.dtype == np.uint8
    assert preview_grid(np.zeros((1, 3, 4, 4)), ["x" * 50], scale=1).shape[1] >= 4
    with pytest.raises(ValueError):
        preview_grid(np.zeros((0, 3, 8, 8)), [])
    with pytest.raises(ValueError):
        preview_grid(np.zeros((2, 3, 8, 8)), ["only one"])
    with pytest.raises(ValueError):
        preview_grid(np.zeros((2, 3, 8, 8)), ["a", "b"], reference=np.zeros((3, 3, 8, 8)))
    with pytest.raises(ValueError):
        preview_grid(np.zeros((3, 8, 8)), ["a", "b", "c"])


# ---------------------------------------------------------------------------------- top_down_map
def straight_path(y=0.5, x0=0.0, x1=3.0, n=20):
    return np.column_stack([np.linspace(x0, x1, n), np.full(n, y), np.zeros(n)])


def test_map_path_colours_pixels_where_it_runs():
    extent = (-1.0, 4.0, -1.0, 2.0)
    paths = [straight_path(0.5), straight_path(-0.5, x1=1.0)]
    img, view = top_down_map(None, paths=paths, scores=[1.0, 0.0], extent=extent,
                             resolution=0.02, return_view=True)
    assert isinstance(view, MapView) and img.shape == (view.height, view.width, 3)
    best, worst = score_colors([1.0, 0.0])
    c, r = view.pixel((1.5, 0.5))
    assert close(img[r, c], best, tol=10)
    c, r = view.pixel((0.5, -0.5))
    assert close(img[r, c], worst, tol=10)
    c, r = view.pixel((2.5, -0.5))  # the worst path stops at x = 1
    assert not close(img[r, c], worst) and not close(img[r, c], best)
    c, r = view.pixel((1.5, 1.5))  # far from both: unknown space
    assert not close(img[r, c], best) and not close(img[r, c], worst)


def test_map_y_up_and_x_right():
    pos = np.array([[0.0, 0.0, 1.0], [0.0, 2.0, 1.0], [2.0, 0.0, 1.0]])
    cols = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    img = top_down_map(pos, colors=cols, resolution=0.05)
    where = [np.argwhere(np.all(img == c, axis=-1)).mean(axis=0) for c in cols]
    (r0, c0), (r1, c1), (r2, c2) = where
    assert r1 < r0 - 30 and abs(c1 - c0) < 1  # larger y: higher up in the image
    assert c2 > c0 + 30 and abs(r2 - r0) < 1  # larger x: further right


def test_map_height_colouring_and_ceiling_dropped():
    pos = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0], [2.0, 0.0, 2.8]])
    img, view = top_down_map(pos, extent=(-0.5, 2.5, -0.5, 0.5), resolution=0.01,
                             return_view=True)
    floor = img[tuple(view.pixel((0.0, 0.0))[::-1])].astype(int)
    wall = img[tuple(view.pixel((1.0, 0.0))[::-1])].astype(int)
    ceiling = img[tuple(view.pixel((2.0, 0.0))[::-1])].astype(int)
    unknown = img[tuple(view.pixel((0.5, 0.3))[::-1])].astype(int)
    assert floor.min() > 180 and np.ptp(floor) < 20  # light grey
    assert np.ptp(wall) > 100  # a saturated colour
    assert (ceiling == unknown).all()  # above max_z: not drawn
    assert unknown.max() < 100  # unknown space is dark


def test_map_highest_voxel_wins_a_pixel():
    low = np.array([[0.0, 0.0, 0.0]])
    high = np.array([[0.0, 0.0, 1.5]])
    a, view = top_down_map(np.concatenate([low, high]), extent=(-1, 1, -1, 1), return_view=True)
    b = top_down_map(np.concatenate([high, low]), extent=(-1, 1, -1, 1))
    assert (a == b).all()
    c, r = view.pixel((0.0, 0.0))
    assert a[r, c].max() - a[r, c].min() > 100  # the obstacle colour, not the floor grey


def test_map_extent_includes_every_input():
    rng = np.random.default_rng(3)
    pos = rng.normal(0, 2, (50, 3))
    pos[:, 2] = 0.0
    paths = [rng.normal(5, 1, (6, 2)), rng.normal(-4, 1, (6, 3))]
    driven = rng.normal((0, 7), 1, (10, 2))
    robot, goal = (-6.0, 1.0, 0.3), (8.0, -9.0)
    img, view = top_down_map(pos, paths=paths, scores=[0.0, 1.0], driven=driven, robot=robot,
                             goal=goal, margin=0.3, return_view=True)
    xmin, xmax, ymin, ymax = view.extent
    everything = np.concatenate([pos[:, :2], *(p[:, :2] for p in paths), driven,
                                 [robot[:2]], [goal]])
    assert (everything[:, 0] > xmin).all() and (everything[:, 0] < xmax).all()
    assert (everything[:, 1] > ymin).all() and (everything[:, 1] < ymax).all()
    px = view.pixel(everything)
    assert (px[:, 0] >= view.left).all() and (px[:, 0] < view.left + view.map_width).all()
    assert (px[:, 1] >= view.top).all() and (px[:, 1] < view.top + view.map_height).all()
    # the goal's star is drawn where the goal is
    c, r = view.pixel(goal)
    assert close(img[r, c], (255, 255, 255), tol=30)
    assert auto_extent(np.array([[1.0, 2.0]]), margin=1.0) == (0.0, 2.0, 1.0, 3.0)
    assert auto_extent() == (-1.0, 1.0, -1.0, 1.0)


def test_map_size_cap_determinism_and_inputs():
    paths = [straight_path(0.0, -50.0, 50.0)]
    img, view = top_down_map(None, paths=paths, resolution=0.01, max_size=500,
                             return_view=True)
    assert view.map_width <= 500 and view.resolution == pytest.approx(101.0 / 500)
    pos = torch.rand(200, 3) * 4
    kw = dict(paths=[straight_path()], scores=torch.tensor([0.5]), robot=(1.0, 1.0, 2.0),
              goal=(3.0, 3.0), driven=np.array([[0.0, 0.0], [1.0, 1.0]]), title="t")
    a, b = top_down_map(pos, **kw), top_down_map(pos.clone(), **kw)
    assert a.dtype == np.uint8 and a.ndim == 3 and (a == b).all()
    robot_px = view_of(pos, kw).pixel((1.0, 1.0))
    assert close(a[robot_px[1], robot_px[0]], (40, 110, 255), tol=30)  # the robot's arrowhead
    # nothing at all still gives a picture; bad inputs are refused
    assert top_down_map().dtype == np.uint8
    with pytest.raises(ValueError):
        top_down_map(np.zeros((3, 2)))
    with pytest.raises(ValueError):
        top_down_map(None, paths=[straight_path()], scores=[1.0, 2.0])
    with pytest.raises(ValueError):
        top_down_map(None, extent=(1.0, 0.0, 0.0, 1.0))


def view_of(pos, kw) -> MapView:
    return top_down_map(pos, **kw, return_view=True)[1]


def test_map_best_path_drawn_on_top_and_thicker():
    # Two paths over the same line: the best must be the one seen, whatever the order.
    paths = [straight_path(0.0), straight_path(0.0)]
    for scores in ([0.0, 1.0], [1.0, 0.0]):
        img, view = top_down_map(None, paths=paths, scores=scores, extent=(-1, 4, -1, 1),
                                 return_view=True)
        c, r = view.pixel((1.5, 0.0))
        assert close(img[r, c], score_colors([0.0, 1.0])[1], tol=10)
    # the best path is thicker than the others
    img, view = top_down_map(None, paths=[straight_path(0.5), straight_path(-0.5)],
                             scores=[1.0, 0.0], extent=(-1, 4, -1, 1), return_view=True)
    col = view.pixel((1.5, 0.0))[0]
    best, worst = score_colors([1.0, 0.0])
    width_best = sum(close(p, best, tol=10) for p in img[:, col])
    width_worst = sum(close(p, worst, tol=10) for p in img[:, col])
    assert width_best > width_worst >= 2


# ---------------------------------------------------------------------------------- save_png
def test_save_png_round_trip_keeps_rgb_order(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 250  # red
    rgb[0, 0] = (0, 0, 255)  # one blue pixel
    path = save_png(tmp_path / "deep" / "folder" / "x.png", rgb)
    assert path.exists()
    back = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR
    assert (back[..., ::-1] == rgb).all()
    assert back[1, 1, 2] == 250 and back[1, 1, 0] == 0  # red lands in cv2's last channel
    assert back[0, 0, 0] == 255
    with pytest.raises(ValueError):
        save_png(tmp_path / "f.png", rgb.astype(np.float32))
