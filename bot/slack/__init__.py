"""The Bolt app: thin listeners that parse, call one service and render with pure Block Kit functions."""
