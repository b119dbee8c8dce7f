"""Start the mirage node with its parameters.

    ros2 launch mirage_ros mirage.launch.py [namespace:=robot1] [use_sim_time:=true]
        [params_file:=/path/to/params.yaml] [log_level:=debug]
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
    use_sim_time = LaunchConfiguration("use_sim_time")
    params_file = LaunchConfiguration("params_file")
    log_level = LaunchConfiguration("log_level")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", description="use /clock (simulation, bags)"),
        DeclareLaunchArgument(
            "params_file",
            default_value=os.path.join(share, "config", "mirage.yaml"),
            description="parameters of the mirage node"),
        DeclareLaunchArgument("log_level", default_value="info", description="logger level"),
        Node(
            package="mirage_ros",
            executable="mirage_node",
            name="mirage",
            namespace=namespace,
            output="screen",
            emulate_tty=True,
            parameters=[
                params_file,
                {"use_sim_time": ParameterValue(use_sim_time, value_type=bool)},
            ],
            ros_arguments=["--log-level", log_level],
        ),
    ])
