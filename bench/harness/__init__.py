"""The benches' shared harness: a private pipeline (broker, topics, pack, worker processes,
group waits from the topic catalog), the load generators, the timed streaming ask and its
lost / unanswered counts, the records a run wrote, percentiles, the /proc watcher, the
py-spy profiler and the printers. The entry points (``bench/turns.py``,
``bench/chaos.py``, ``bench/turn_trace.py``) keep only what is their own.
"""
