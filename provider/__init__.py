"""registry-credential-provider: one kubelet image credential provider for every registry.

The kubelet executes this package (as a zipapp) once per image pull it cannot answer from
its own cache; see ``provider.__main__`` for the process edge and ``provider.fullpath`` for
the pure request-to-response core.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
