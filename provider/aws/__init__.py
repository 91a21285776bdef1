"""AWS for the ``ecr`` backend.

``hosts``: which image hosts are ECR registries (pure, cheap: runs before every cache lookup).
``api``: what the backend asks of AWS, as plain types and a protocol tests can fake.
``sdk``: that protocol over botocore; the only module that imports botocore, and only the
backend's ``get_credentials`` imports it.
"""
