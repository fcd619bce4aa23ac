"""lakelens core: configuration, the Spark session, lake table schemas and I/O, files and image decoding.

Nothing here imports torch; ``jobs``, ``udfs`` and ``models`` build on it.
"""
