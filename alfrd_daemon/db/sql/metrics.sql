-- Named queries of the metrics endpoint (same format as queries.sql, read by db/queries.py).
-- Each is a summary, run at most once per cache period however often the endpoint is scraped.

-- name: metrics_documents
SELECT status,
       count(*) FILTER (WHERE deleted_at IS NULL) AS n,
       count(*) FILTER (WHERE deleted_at IS NOT NULL) AS trashed
FROM documents
GROUP BY status
ORDER BY status;

-- name: metrics_job_last_success
-- job_state keeps the start of the last success when pruning has removed its job_runs row.
SELECT job, max(at) AS last_success
FROM (SELECT job, finished_at AS at FROM job_runs
      WHERE outcome = 'succeeded' AND finished_at IS NOT NULL
      UNION ALL
      SELECT job, last_success FROM job_state WHERE last_success IS NOT NULL) s
GROUP BY job
ORDER BY job;
