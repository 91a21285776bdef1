"""Google helpers of the ``gar`` backend: the hosts it serves, the calls it makes (``api``) and
their implementation over google-auth (``sdk``, imported only when a lookup needs a token)."""
