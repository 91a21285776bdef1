"""Reusable end-to-end test infrastructure: a real registry, a real containerd, test images and TLS.

Every server binds 127.0.0.1 and is started and stopped by the code here (see ``fixtures.py``).
Secrets passed to child processes never appear in exception messages or in returned command lines.
"""
