"""The whole demo: MuJoCo simulator, the mirage world-model node and the demo planner.

    ros2 launch mirage_ros sim_demo.launch.py [namespace:=robot1] [use_sim_time:=true]
        [params_file:=/path/to/params.yaml] [use_rviz:=true] [scene_seed:=0]
        [goal:='[6.5, 1.0, 0.0]'] [start_pose:='[1.5, 1.0, 0.0]'] [log_level:=debug]

The simulator ``mirage_sim`` follows the paths the planner sends; ``mirage`` watches its camera
and odometry and scores the planner's candidate paths; ``demo_planner`` drives to ``goal``, and
the launch ends when it exits. The simulator publishes /clock, so the other nodes use sim time
by default (the simulator itself keeps wall time). ``params_file`` is loaded by every node after
its shipped config file; address a node by name (``mirage_sim:``, ``mirage:``,
``demo_planner:``; ``/**/mirage:`` under a namespace) or all of them with ``/**:``. The default
goal and start suit scene 0.

The same graph runs without ROS 2's launch package: ``python -m mirage_ros.ros.launcher
sim_demo`` (both read mirage_ros.ros.graph).
"""

from mirage_ros.ros import graph

ARGUMENTS = (
    ("namespace", "", "namespace of every node"),
    ("use_sim_time", "true", "mirage and demo_planner use the simulator's /clock"),
    ("params_file", "", "ROS params file loaded after the shipped config files"),
    ("use_rviz", "false", "start RViz 2 with the shipped config/mirage.rviz"),
    ("scene_seed", "0", "procedural scene of the simulator"),
    ("goal", graph.pose_text(graph.DEMO_GOAL), "demo planner goal [x, y, yaw] in map"),
    ("start_pose", graph.pose_text(graph.DEMO_START),
     "robot start [x, y, yaw] in map; [] for a random free spot"),
    ("log_level", "info", "logger level"),
)


def nodes(values: dict[str, str], flag) -> list[graph.NodeSpec]:
    return graph.sim_demo_graph(
        scene_seed=values["scene_seed"],
        goal=graph.parse_pose(values["goal"]),
        start_pose=graph.parse_optional_pose(values["start_pose"]),
        use_sim_time=flag("use_sim_time"))


def generate_launch_description():
    return graph.launch_description(ARGUMENTS, nodes)
