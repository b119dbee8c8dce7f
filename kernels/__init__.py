"""Custom GPU kernels for mirage_ros (Triton). Importing this package imports nothing heavy:
``mirage_ros.memory`` imports ``kernels.memory_read`` / ``kernels.memory_write`` lazily when it
runs on CUDA and Triton is installed. See NOTES.md for measurements."""
