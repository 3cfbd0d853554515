"""Replay recorded turns against a pack and report what changed (``turnstream replay``).

Plain Python over the turn runner's ports: :mod:`.recording` groups what was recorded,
:mod:`.tools` answers tool calls from the recording, :mod:`.run` drives the turns,
:mod:`.diff` compares a replayed record with the recorded one, :mod:`.report` sums it up and
:mod:`.html` renders the page. Reading topics and files is :mod:`streams.replay_source`'s.
"""
