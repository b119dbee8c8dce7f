"""Start the MuJoCo simulator node (camera, depth, odometry, /clock) and the mirage node on it.

    ros2 launch mirage_ros sim.launch.py [namespace:=robot1] [scene_seed:=3]
        [sim_params_file:=...] [params_file:=...] [log_level:=debug]

The simulator is the /clock source, so it runs on wall time; the mirage node uses sim time.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("mirage_ros")
    namespace = LaunchConfiguration("namespace")
    log_level = LaunchConfiguration("log_level")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="namespace of both"),
        DeclareLaunchArgument("scene_seed", default_value="0", description="procedural scene"),
        DeclareLaunchArgument(
            "sim_params_file", default_value=os.path.join(share, "config", "sim.yaml"),
            description="parameters of the simulator node"),
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, "config", "mirage.yaml"),
            description="parameters of the mirage node"),
        DeclareLaunchArgument("log_level", default_value="info", description="logger level"),
        Node(
            package="mirage_ros",
            executable="sim_node",
            name="mirage_sim",
            namespace=namespace,
            output="screen",
            parameters=[
                LaunchConfiguration("sim_params_file"),
                {"scene_seed": ParameterValue(LaunchConfiguration("scene_seed"), value_type=int)},
            ],
            ros_arguments=["--log-level", log_level],
        ),
        Node(
            package="mirage_ros",
            executable="mirage_node",
            name="mirage",
            namespace=namespace,
            output="screen",
            parameters=[LaunchConfiguration("params_file"), {"use_sim_time": True}],
            ros_arguments=["--log-level", log_level],
        ),
    ])
