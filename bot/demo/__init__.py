"""`tflock-bot demo`: try the whole story on one machine, no Slack or AWS needed."""
