"""Rules for the demo workload (`herald demo`) and the quick start.

A rule receives the notification (type, recipient, data, priority, ...) and returns a Plan:
the channel, the providers in failover order, and the template.
"""

from herald import Plan, rule


@rule("otp")
def one_time_password(n):
    return Plan(channel="sms", providers=["sms-primary", "sms-backup"], template="Your code is {code}. It expires in 5 minutes.")


@rule("campaign")
def marketing_campaign(n):
    return Plan(channel="email", providers=["email-primary", "email-backup"], template="{headline|News from us}: {body|}")


@rule("order_update")
def order_update(n):
    return Plan(channel="push", providers=["push"], template="Order {order_id}: {status}")
