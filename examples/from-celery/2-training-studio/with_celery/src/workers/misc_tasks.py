"""Notifications on `high_priority`, reports on `low_priority`."""

from celery import shared_task


@shared_task
def notify_user(user_id, text):
    return {"user_id": user_id, "delivered": text}


@shared_task
def weekly_report(week):
    return {"week": week, "runs": 0}
