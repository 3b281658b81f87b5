"""Task modules the tests run under real `hueyq run` processes.

Each module builds its App in ``make_app(profile)`` so a test can build one
for its own profile; ``app`` (what ``--app`` loads) is built on first use
from HUEYQ_PROFILE.
"""
