"""One-time passwords: by SMS, failing over between two SMS providers; by email when no SMS
provider accepted the code within 30 seconds (or both refused it).

A code that arrives late is worse than one that arrives by another channel, so the fallback does
not wait for a delivery receipt: "accepted by an SMS provider" is success here. Send OTPs with
priority="critical" and an expires_at: an expired code is never sent.
"""

from herald import Plan, Step, rule


@rule("otp")
def one_time_password(n):
    return Plan.cascade(
        Step("sms", ["sms-primary", "sms-backup"], text="Your code is {code}. It expires in 5 minutes."),
        Step("email", ["email-primary", "email-backup"], after="30s",
             subject="Your sign-in code",
             text="Your code is {code}. It expires in 5 minutes.",
             html="<p>Your code is <b>{code}</b>. It expires in 5 minutes.</p>"),
    )
