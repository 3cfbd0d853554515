"""The example packs' tools, one module per pack (``packs.tools.<pack>:function``), allowed
by the default ``TURNSTREAM_TOOLS__PYTHON_ALLOWED_PREFIXES``.

Every tool has the signature documented in :mod:`schemas.pack.tools`:
``function(arguments, *, config, pack_dir) -> dict``. They are tenant code kept in this
repository as examples, outside the engine's packages; a real tenant's tools go in a package
of its own, installed next to turnstream, with its prefix allowed.
"""
