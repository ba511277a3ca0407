"""Where Terraform/OpenTofu S3-backend locks live and how to read them — no Slack, no SQL."""
