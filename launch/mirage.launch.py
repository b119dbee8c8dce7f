"""Start the mirage world-model node on a robot's camera and odometry.

    ros2 launch mirage_ros mirage.launch.py [namespace:=robot1] [use_sim_time:=true]
        [params_file:=/path/to/params.yaml] [use_rviz:=true] [log_level:=debug]

The node reads ``camera/image_raw``, ``camera/depth``, ``camera/camera_info`` and ``odom`` in its
namespace (remap them on the command line if your robot names them differently).
``params_file`` is loaded after the shipped config/mirage.yaml, so it overrides what it names.
The node list comes from mirage_ros.ros.graph, which the bare-machine launcher reads too
(``python -m mirage_ros.ros.launcher mirage``).
"""

from mirage_ros.ros import graph

ARGUMENTS = (
    ("namespace", "", "namespace of the node"),
    ("use_sim_time", "false", "use /clock (simulation, bag replay)"),
    ("params_file", "", "ROS params file loaded after the shipped config/mirage.yaml"),
    ("use_rviz", "false", "start RViz 2 with the shipped config/mirage.rviz"),
    ("log_level", "info", "logger level"),
)


def nodes(values: dict[str, str], flag) -> list[graph.NodeSpec]:
    return graph.mirage_graph(use_sim_time=flag("use_sim_time"))


def generate_launch_description():
    return graph.launch_description(ARGUMENTS, nodes)
