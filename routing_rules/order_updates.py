"""Order updates: a push first; an email when the push was not read within 10 minutes.

Send them with ordering_key=<order id>, so the updates of one order go out in the order they
happened. The app calls engine.acknowledge(id, channel="push") when the user opens the push: that
cancels the email.
"""

from herald import Plan, Step, rule


@rule("order_update")
def order_update(n):
    return Plan.cascade(
        Step("push", ["push"], success="read",
             title="Order {order_id}", text="Your order is {status}.",
             data={"order_id": "{order_id}", "screen": "orders"}),
        Step("email", ["email-primary", "email-backup"], after="10m",
             subject="Your order {order_id} is {status}",
             text="Your order {order_id} is {status}.",
             html="<p>Your order <b>{order_id}</b> is {status}.</p>"),
    )
