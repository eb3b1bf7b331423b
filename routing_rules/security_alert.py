"""Security alerts (a new sign-in, a changed password): on every channel the user has, at once.

Plan.all starts every step together; a step whose provider needs an address the recipient lacks
is skipped, with the reason in the trace.
"""

from herald import Plan, Step, rule


@rule("security_alert")
def security_alert(n):
    text = "New sign-in to your account from {device|a new device}. Not you? Reset your password."
    return Plan.all(
        Step("push", ["push"], title="New sign-in", text=text),
        Step("sms", ["sms-primary", "sms-backup"], text=text),
        Step("email", ["email-primary", "email-backup"], subject="New sign-in to your account", text=text),
    )
