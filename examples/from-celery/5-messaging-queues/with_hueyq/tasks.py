"""The messaging service's tasks, one per queue type."""

from celery_app import queue_task


class GatewayDown(Exception):
    """The push or SMS gateway did not answer."""


@queue_task("notifications", bind=True)
def send_notification(self, user_id, text, gateway_up=True):
    if not gateway_up:
        raise self.retry(exc=GatewayDown("gateway timeout"))
    return {"user_id": user_id, "sent": text}


@queue_task("default")
def deliver_message(conversation_id, text):
    return {"conversation_id": conversation_id, "delivered": len(text)}


@queue_task("reports")
def build_report(account_id, month):
    return {"account_id": account_id, "month": month, "messages": 0}


@queue_task("background")
def compact_history(days):
    return {"compacted_days": days}
