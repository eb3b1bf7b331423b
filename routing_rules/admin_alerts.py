"""Alerts for the team, to a Slack channel (through a provider of kind "slack")."""

from herald import Plan, rule


@rule("admin_alert")
def admin_alert(n):
    return Plan("chat", ["slack"], ":rotating_light: {title}: {detail|no detail}")
