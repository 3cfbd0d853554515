"""A turn's phases grouped into the stages the stream topology runs, as plain functions.

Each stage takes the turn's context (and the pack version it runs with) and returns the
context with its part filled in, so the Faust agents in ``streams/`` and the in-process
runner (:mod:`processors.turn.in_process`) call exactly the same code.
"""
