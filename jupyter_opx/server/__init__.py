"""The REST surface: one handler set for ``opx serve`` and the Jupyter server extension.

* :mod:`.handlers` — thin tornado handlers (parse, delegate to the core, render)
  and the one place that turns an :class:`~jupyter_opx.exceptions.OpxError`
  into an HTTP status with a JSON ``{"code", "message", …}`` body;
* :mod:`.auth` — who may call a route: a pluggable object (tokens for
  ``opx serve``, Jupyter's own authentication inside Jupyter);
* :mod:`.stream` — the change feed behind ``GET …/stream`` (server-sent events);
* :mod:`.app` — the route table, :func:`~.app.make_app` and the ``opx serve`` loop;
* :mod:`.extension` — the Jupyter server extension.

Importing this package imports no tornado; its modules do.
"""
