"""The turn pipeline as a Faust app: topics, tables, and the agents that run the stages of
``processors.turn`` between them. ``streams.worker`` starts it."""
