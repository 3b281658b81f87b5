"""The runtime: a supervisor process and one consumer process per queue.

``hueyq run`` starts :class:`hueyq.runtime.supervisor.Supervisor`, whose
tick loop keeps a fresh interpreter per queue (``python -m
hueyq.runtime.consumer``) running huey's Consumer with hueyq's leasing
worker, restarting dead ones (:mod:`hueyq.runtime.pool`), recovers leases of
dead workers (:mod:`hueyq.runtime.recovery`), samples their memory
(:mod:`hueyq.runtime.sampler`) for the watchdog
(:mod:`hueyq.runtime.watchdog`) and publishes its status into the backend.

Every child process the runtime starts (consumers, the web server, the
demo's runtime) is a fresh interpreter made by :func:`python_command`, which
imports the *installed* hueyq: ``python -m`` would put the current
directory first on ``sys.path``, and from the root of a clone the source
folder ``./hueyq`` (which lacks ``backends`` and ``webui``, mapped there by
``package_dir``) would shadow the installed package.
"""

import sys

#: /proc names (``ps -o comm``) of what a process consumer forks, so the
#: supervisor tells its workers from its scheduler.
WORKER_PROCESS_NAME = "hueyq-worker"
SCHEDULER_PROCESS_NAME = "hueyq-scheduler"

#: What a child interpreter runs first: drop the current directory that
#: ``-c`` put first on sys.path. The user's ``--app`` module is still found
#: from the working directory, which :func:`hueyq.app.load_app` adds once
#: hueyq itself is imported.
_PATH = ("import sys\n"
         "if sys.path and sys.path[0] == '':\n"
         "    del sys.path[0]\n")
#: ... then run a module as ``__main__``,
_RUN_MODULE = "import runpy\nrunpy.run_module(%r, run_name='__main__', " \
    "alter_sys=True)\n"
#: ... or call ``main(early_signals)`` of a module, with the SIGINT and
#: SIGTERM that arrived while it was still importing (the supervisor may
#: stop a consumer that has only just started).
_CALL_MAIN = ("import signal\n"
              "early = []\n"
              "for s in (signal.SIGINT, signal.SIGTERM):\n"
              "    signal.signal(s, lambda n, f: early.append(n))\n"
              "from %s import main\n"
              "sys.exit(main(early_signals=early))\n")


def python_command(module: str, *args: str) -> "list[str]":
    """argv of a fresh interpreter running ``module`` as ``python -m`` would,
    but importing the installed hueyq whatever the working directory."""
    return [sys.executable, "-c", _PATH + _RUN_MODULE % module, *args]


def main_command(module: str, *args: str) -> "list[str]":
    """argv of a fresh interpreter calling ``module.main(early_signals=...)``
    with ``args`` as its sys.argv[1:], signals buffered from the start."""
    return [sys.executable, "-c", _PATH + _CALL_MAIN % module, *args]
