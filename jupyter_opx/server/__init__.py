"""The REST surface: one handler set for ``opx serve`` and the Jupyter server extension.

* :mod:`.handlers` — the base handler (auth first, core calls on worker threads)
  and the one place that turns an :class:`~jupyter_opx.exceptions.OpxError`
  into an HTTP status with a JSON ``{"code", "message", …}`` body;
* :mod:`.snapshots`, :mod:`.jobs`, :mod:`.runs`, :mod:`.feedback` — the
  resources' handlers: parse, delegate to the core, render;
* :mod:`.stream` — ``GET …/stream`` (server-sent events) and the change feed behind it;
* :mod:`.models` — request and response models (mirrored by ``api/openapi.yaml``),
  read by :mod:`.parsing`;
* :mod:`.auth` — who may call a route: a pluggable object (store tokens for
  ``opx serve``, Jupyter's own authentication inside Jupyter);
* :mod:`.app` — the route table, :func:`~.app.make_app` and the ``opx serve`` loop;
* :mod:`.extension` — the Jupyter server extension (mounts the routes under ``/opx/api``).

Importing this package imports no tornado; its modules do.
"""
