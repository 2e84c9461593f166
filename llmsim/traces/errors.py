"""The one error a trace loader raises for a file it cannot read as a workload.

`TraceError` subclasses `WorkloadError` (itself a `ValueError`), so callers that already
report bad workloads report bad trace files too. Its message is one line that names the
file and, for a bad row, the line (1-based, as an editor shows it) and the field, e.g.

    traces/azure.csv, line 17: field 'ContextTokens' must be >= 1, got -3

so that a user can open the file and fix it.
"""

from __future__ import annotations

from .workload import WorkloadError


class TraceError(WorkloadError):
    """A trace file that cannot be loaded; the message names file, line and field."""
