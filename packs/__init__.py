"""The example packs' folder, importable only for their Python tools (:mod:`packs.tools`).

The pack folders themselves (``acme-shop/support``, ``brightwatt-energy/care``) are data read
through ``sinks.pack_files``, not Python packages: a tenant slug like ``acme-shop`` is not a
module name. The engine never imports this package; a worker imports a tool module only when
a pack names it and the operator's ``TURNSTREAM_TOOLS__PYTHON_ALLOWED_PREFIXES`` allows it.
"""
