"""The operator's side as a library: what the commands and the installer both compute.

Each module takes a typed options struct and returns a typed result; none of them parses
arguments, prints, or imports ``provider.commands`` (a test holds this). The commands turn
the results into text or JSON; the installer works with them directly.

    validation  would the kubelet start with this setup, and ask us for the right images?
    rendering   the kubelet's CredentialProviderConfig (and token mode's RBAC) from our rules

Nothing here is imported on the kubelet's path.
"""
