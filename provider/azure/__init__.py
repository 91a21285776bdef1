"""Azure for the ``acr`` backend.

``hosts``: which image hosts are ACR login servers, and the Azure clouds (pure, cheap: runs
before every cache lookup). ``cloudconfig``: the node's ``/etc/kubernetes/azure.json``.
``identities``: whose Entra identity a lookup uses (no I/O beyond that file). ``exchange``: the
registry's challenge and ``/oauth2/exchange`` (standard library HTTP). ``entra``: Entra ID
tokens through azure-identity; the only module that imports it, and only the backend's
``get_credentials`` imports it. ``dropin``: the ``acr-credential-provider`` command line.
"""
