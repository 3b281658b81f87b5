"""The profiles shipped with hueyq: ``dev``, ``jetson`` and ``server``.

Each is a TOML file read with importlib.resources; see hueyq.profile.
"""
