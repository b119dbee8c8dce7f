"""Training data for mirage_ros: the episode format (simulated or imported from rosbag2) and its
readers. Importing this package needs numpy only; torch and rosbags are imported where used.

Modules: ``episodes`` (the format), ``generate`` (simulated datasets: drives
:mod:`mirage_ros.sim`, which never imports this package), ``bag_import`` (rosbag2 recordings,
decoded and paired by :mod:`mirage_ros.sensors` as the node does), ``world_model`` (training)
and ``evaluate``. A tool over the core: it never imports :mod:`mirage_ros.ros`.
"""

from mirage_ros.train.episodes import (
    FORMAT_VERSION,
    SPLITS,
    Episode,
    EpisodeReader,
    EpisodeRef,
    WindowDataset,
    depth_from_mm,
    depth_to_mm,
    read_shard_meta,
    split_of_seed,
    write_index,
    write_shard,
)

__all__ = [
    "FORMAT_VERSION",
    "SPLITS",
    "Episode",
    "EpisodeReader",
    "EpisodeRef",
    "WindowDataset",
    "depth_from_mm",
    "depth_to_mm",
    "read_shard_meta",
    "split_of_seed",
    "write_index",
    "write_shard",
]
