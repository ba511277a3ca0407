"""The stale-lock watchdog: scan every backend, alert once per stale lock, remind once, say when it went.

No Slack here: the Slack side implements `AlertNotifier` (bot/slack/alerts.py).
"""
