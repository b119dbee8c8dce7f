"""ROS 2 side of mirage_ros: rclpy nodes, message conversions and the image bridge."""
