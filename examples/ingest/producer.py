"""Ingest a folder of documents and follow it to the last vector.

Enqueues ``ingest_directory`` for ``docs/`` (or the folder given), prints
its per-document progress, waits for every chunk's ``embed`` job, then
reports what is in the vector store: vectors, batches, the largest number of
documents one batch mixed, retried chunks and the throughput. ``--query``
prints the chunks nearest to a question, with the same model.

Needs torch. Run from this folder, with ``hueyq run --app tasks --queues
medium`` running: ``python producer.py --outage --query "cancel a job"``.
"""

import argparse
import importlib.util
import json
import os
import sys
import time

import hueyq
import tasks

HERE = os.path.dirname(os.path.abspath(__file__))
FINISHED = ("complete", "failed", "cancelled", "dead", "expired")


def follow(job_id: str, timeout: float) -> "hueyq.Job":
    """Print the job's progress messages until it has finished."""
    deadline = time.monotonic() + timeout
    shown = None
    while time.monotonic() < deadline:
        job = tasks.app.job(job_id, history=False)
        if job.message and job.message != shown:
            print("  %3.0f%%  %s" % (job.progress or 0, job.message))
            shown = job.message
        if job.state in FINISHED:
            return job
        time.sleep(0.1)
    raise TimeoutError("job %s unfinished after %.0fs" % (job_id, timeout))


def wait_all(job_ids: "list[str]", timeout: float) -> list:
    """Wait until every job has finished and the job store has its final
    record (a duration: the backend knows a job is done a moment before the
    store has its last attempt)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = [tasks.app.job(i, history=False) for i in job_ids]
        if all(j.state in FINISHED and j.duration is not None for j in jobs):
            return jobs
        time.sleep(0.1)
    raise TimeoutError("chunk jobs unfinished after %.0fs" % timeout)


def summarize(ingest: dict, jobs: list) -> dict:
    """What the vector store holds, and how fast it got there."""
    db = tasks.connect()
    try:
        vectors, dims = db.execute("select count(*), max(dim) from chunks")\
            .fetchone()
        batches = db.execute("select batch, count(*), count(distinct doc) "
                             "from chunks group by batch").fetchall()
    finally:
        db.close()
    took = max(j.finished_at for j in jobs) - min(j.started_at for j in jobs)
    return {"documents": ingest["documents"], "chunks": ingest["chunks"],
            "complete": sum(j.state == "complete" for j in jobs),
            "vectors": vectors, "dim": dims, "batches": len(batches),
            "largest_batch": max(n for _, n, _ in batches),
            "most_documents_in_a_batch": max(d for _, _, d in batches),
            "retried_chunks": sum(j.attempts > 1 for j in jobs),
            "embed_seconds": round(took, 3),
            "chunks_per_second": round(len(jobs) / took, 1) if took else None}


def nearest(question: str, count: int = 3) -> "list[tuple[float, str, str]]":
    """The stored chunks closest to ``question`` (cosine similarity)."""
    import embedder
    query = embedder.load().embed([question])[0].tolist()
    db = tasks.connect()
    try:
        rows = db.execute("select doc, text, vector from chunks").fetchall()
    finally:
        db.close()
    scored = [(sum(a * b for a, b in zip(query, tasks.unpack(blob))), doc,
               text) for doc, text, blob in rows]
    return sorted(scored, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", nargs="?",
                        default=os.path.join(HERE, "docs"))
    parser.add_argument("--outage", action="store_true",
                        help="Make the first batch fail once (retried).")
    parser.add_argument("--query", help="Show the chunks nearest to this.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if importlib.util.find_spec("torch") is None:
        sys.exit("this example needs torch: pip install torch (the CPU "
                 "build is enough), or pip install 'hueyq[gpu]'")
    result = tasks.ingest_directory(os.path.abspath(args.directory),
                                    outage=args.outage)
    print("ingest job %s" % result.id)
    job = follow(result.id, timeout=120)
    if job.state != "complete":
        sys.exit("ingest job %s: %s" % (job.state, job.error))
    ingest = result(blocking=True, timeout=30)
    summary = summarize(ingest, wait_all(ingest["jobs"], timeout=120))
    if args.json:
        print(json.dumps(dict(summary, ingest_job=result.id,
                              chunk_jobs=ingest["jobs"])))
    else:
        for key, value in summary.items():
            print("%-26s %s" % (key + ":", value))
    if args.query:
        print("nearest to %r:" % args.query)
        for score, doc, text in nearest(args.query):
            print("  %.3f  %-20s %s..." % (score, doc, text[:60]))


if __name__ == "__main__":
    main()
