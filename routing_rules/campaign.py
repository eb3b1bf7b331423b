"""Marketing email, many recipients per request where the provider batches (SendGrid)."""

from herald import Plan, rule


@rule("campaign")
def marketing_campaign(n):
    return Plan("email", ["email-primary", "email-backup"], "{headline|News from us}: {body|}", batch=True,
                subject="{headline|News from us}")
