"""Tool implementations shipped with the example packs, importable as ``module:function``.

Every tool has the signature documented in :mod:`schemas.pack.tools`:
``function(arguments, *, config, pack_dir) -> dict``.
"""
