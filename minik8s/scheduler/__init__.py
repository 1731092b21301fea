"""The scheduler: binds each unscheduled pod to a node.

`policy.schedule()` is one call over a read-only snapshot of cluster state that returns a
placement (Nomad's shape); filters and scorers are small plug-ins; `loop.Scheduler` feeds
it from informers and writes bindings through the API.
"""
