"""The MuJoCo simulator on its scripted tour, and the mirage node building its memory from it.

    ros2 launch mirage_ros sim.launch.py [namespace:=robot1] [use_sim_time:=true]
        [params_file:=/path/to/params.yaml] [sim_params_file:=/path/to/sim_params.yaml]
        [use_rviz:=true] [scene_seed:=3] [start_pose:='[1.5, 1.0, 0.0]'] [log_level:=debug]

No planner: the robot drives the tour of config/sim.yaml (sim_demo.launch.py adds the planner).
``params_file`` is loaded by both nodes after their shipped config files (sections
``mirage_sim:``, ``mirage:`` or ``/**:``), ``sim_params_file`` by the simulator alone. The
simulator publishes /clock and keeps wall time; the mirage node uses sim time by default. The
bare-machine equivalent is ``python -m mirage_ros.ros.launcher sim``.
"""

from mirage_ros.ros import graph

ARGUMENTS = (
    ("namespace", "", "namespace of both nodes"),
    ("use_sim_time", "true", "the mirage node uses the simulator's /clock"),
    ("params_file", "", "ROS params file loaded after the shipped config files"),
    ("sim_params_file", "", "ROS params file for the simulator alone, after config/sim.yaml"),
    ("use_rviz", "false", "start RViz 2 with the shipped config/mirage.rviz"),
    ("scene_seed", "0", "procedural scene of the simulator"),
    ("start_pose", "", "robot start [x, y, yaw] in map; empty: config/sim.yaml's"),
    ("log_level", "info", "logger level"),
)


def nodes(values: dict[str, str], flag) -> list[graph.NodeSpec]:
    sim, mirage = graph.sim_graph(
        scene_seed=values["scene_seed"],
        start_pose=graph.parse_optional_pose(values["start_pose"]),
        use_sim_time=flag("use_sim_time"))
    if values["sim_params_file"]:
        sim = sim.with_params_file(values["sim_params_file"])
    return [sim, mirage]


def generate_launch_description():
    return graph.launch_description(ARGUMENTS, nodes)
