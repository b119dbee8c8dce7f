"""Every test run gets its own ROS 2 domain on loopback, set before rclpy is imported anywhere,
so parallel runs and other ROS graphs on the machine never see each other's topics."""

import os
import random

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# Domain ids 1..100 keep DDS's port arithmetic inside the range Linux leaves unreserved.
os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
os.environ.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "0")

# CI replays the same property-test examples every run (a failure there must be reproducible);
# local runs keep exploring new ones.
try:
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
    if os.environ.get("CI"):
        settings.load_profile("ci")
except ImportError:
    pass
