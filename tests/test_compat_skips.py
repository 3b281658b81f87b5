"""The skip list of huey's own test suite (tests/compat/skips.py) stays
honest: every entry names a test that exists in the installed huey, in a
configuration the runner has, with a one-line reason. The suite itself runs
in CI through tests/compat/run.py (it downloads huey's sdist)."""

import ast
import fnmatch
import importlib.util
import os

import huey

from conftest import HERE

COMPAT = HERE / "compat"


def _load(name):
    spec = importlib.util.spec_from_file_location(name,
                                                  COMPAT / (name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def huey_tests() -> "set[str]":
    """``module.Class.test`` of every test in the installed huey (classes
    inherit the tests of the mixins they list)."""
    root = os.path.join(os.path.dirname(huey.__file__), "tests")
    classes, bases = {}, {}
    for filename in sorted(os.listdir(root)):
        if not filename.startswith("test_") or not filename.endswith(".py"):
            continue
        with open(os.path.join(root, filename)) as fh:
            tree = ast.parse(fh.read())
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                key = (filename[:-3], node.name)
                classes[key] = {n.name for n in node.body
                                if isinstance(n, ast.FunctionDef)
                                and n.name.startswith("test_")}
                bases[key] = [b.id for b in node.bases
                              if isinstance(b, ast.Name)]
    by_name = {key[1]: key for key in classes}
    out = set()
    for key in classes:
        seen, todo = set(), [key]
        while todo:
            current = todo.pop()
            seen |= classes.get(current, set())
            todo += [by_name[b] for b in bases.get(current, ())
                     if b in by_name]
        out |= {"%s.%s.%s" % (key[0], key[1], test) for test in seen}
    return out


def test_every_skip_names_a_huey_test_a_configuration_and_a_reason():
    skips = _load("skips")
    run = _load("run")
    tests = huey_tests()
    assert len(tests) > 300
    for configs, pattern, reason in skips.SKIPS:
        configs = (configs,) if isinstance(configs, str) else configs
        assert set(configs) <= set(run.CONFIGS) - {"baseline"}, pattern
        assert fnmatch.filter(tests, pattern), "no huey test %s" % pattern
        assert reason and "\n" not in reason and len(reason) < 240, pattern
