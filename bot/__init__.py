"""tflock: Terraform/OpenTofu S3-backend state locks in Slack — status, two-person force-unlock, audit."""

__version__ = "0.1.0"
