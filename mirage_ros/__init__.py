# Kept free of imports: rosidl installs its own __init__.py for the generated interfaces into
# the same package, and extend_path lets the source tree and the installed copy act as one.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
