"""Reports for managers and auditors: figures and charts read from requests, approvals, history and the audit trail."""
