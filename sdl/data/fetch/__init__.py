"""Downloads: HTTP(S) and S3 fetches that retry, resume and verify; a parallel runner; a safe
archive extractor; and :class:`~sdl.data.fetch.sources.Sources`, what the dataset kinds use.

Every fetch streams into ``<dest>.partial`` and renames it over ``dest`` only once the bytes
are complete and verified, so ``dest`` existing means "finished": an interrupted run leaves a
``.partial`` to resume with a ``Range`` request, and a rerun skips finished files without
touching the network. Sources are named by *locations*: an ``http(s)://`` URL, an
``s3://bucket/key`` address, or a local path (``file://`` or plain), so local replicas and
already-downloaded folders stand in for the internet.

Modules: ``errors`` (what fails), ``locations`` (naming sources), ``verify`` (when a file is
finished), ``transfer`` (the retry loop), ``http``, ``s3``, ``jobs`` (many files at once),
``archives`` (safe extraction), ``sources`` (the facade the dataset kinds are given).
"""
