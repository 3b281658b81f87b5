"""The basic app plus one task: a deploy that adds a task."""

from apps import basic


def make_app(profile=None, name=None):
    app = basic.make_app(profile, name)

    @app.task(queue="medium")
    def double(x):
        return 2 * x

    return basic.attach_tasks(app, locals())


def __getattr__(name):
    if name == "app":
        globals()["app"] = make_app()
        return globals()["app"]
    raise AttributeError(name)
