"""A plain function routed to the async ``io`` queue: ``hueyq run`` must
refuse it."""

from apps import aio


def make_app(profile=None, name=None):
    app = aio.make_app(profile, name)

    @app.task(queue="io")
    def blocking_call(value):
        return value

    return app


def __getattr__(name):
    if name == "app":
        globals()["app"] = make_app()
        return globals()["app"]
    raise AttributeError(name)
