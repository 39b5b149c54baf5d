"""The file-transfer engine: content-addressed blob store, resumable uploads, streamed downloads.

``FileEngine`` (``engine.py``) is what the server and the ``files`` handlers use; the other
modules each hold one mechanism (binary frame codec, blob files, upload sessions, download
producer, possession challenges).
"""
