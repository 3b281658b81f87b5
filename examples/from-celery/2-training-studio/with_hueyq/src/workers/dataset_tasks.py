"""Datasets: validation on `datasets`, preprocessing on `processing`."""

from hueyq.celery import shared_task


@shared_task
def validate_dataset(rows):
    bad = [i for i, row in enumerate(rows) if not row.get("text")]
    return {"rows": len(rows), "invalid": bad}


@shared_task
def preprocess_dataset(rows):
    return [row["text"].strip().lower() for row in rows if row.get("text")]
