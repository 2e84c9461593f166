"""The simulation clock: exact event times, and a fixed order for simultaneous events.

At one instant the engine handles, in this order: iterations that end (their tokens and
completions), then arrivals (routed in trace order), then replicas that start their next
iteration. So a request arriving exactly when an iteration ends is seen by the router
after that iteration's completions and joins the very next iteration.

Events are scheduled at absolute times: SimPy computes `now + delay`, and in floating point
`now + (t - now)` is not always `t`, which would put an arrival an ulp before or after an
iteration that ends at `t` and make a run depend on rounding.
"""

from __future__ import annotations

from heapq import heappush

import simpy
from simpy.events import Event

ITERATION_END = 0
ARRIVAL = 1
ITERATION_START = 2


class Clock(simpy.Environment):
    def at(self, when: float, priority: int) -> Event:
        """An event that fires at time `when` (>= now), after simultaneous events of lower
        `priority` value."""
        assert when >= self._now, f"event at {when} is in the past (now {self._now})"
        event = Event(self)
        # A pre-triggered event, as simpy.Timeout is; pushed at its exact time. SimPy 4's
        # queue entries are (time, priority, insertion id, event).
        event._ok = True
        event._value = None
        heappush(self._queue, (when, priority, next(self._eid), event))
        return event
