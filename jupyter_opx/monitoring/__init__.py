"""Production feedback: ingestion, storage, metrics (pure functions on DataFrames), alerts.

(Named ``monitoring`` rather than ``feedback``: ``jupyter_opx.feedback`` is the
public function ``opx.feedback(model)``, which a subpackage of the same name
would shadow once imported.)
"""
