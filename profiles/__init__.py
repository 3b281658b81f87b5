"""The profiles shipped with hueyq: ``dev``, ``jetson``, ``server`` and
``server-pg``.

Each is a TOML file read with importlib.resources; see hueyq.profile.
"""
