-- schema.sql: the task-manager's table, indexes and get_web_crawl_metrics(); every statement is idempotent, so it is applied at each start-up.

CREATE TABLE IF NOT EXISTS web_crawl_tasks (
	id           bigserial   PRIMARY KEY,
	url          text        NOT NULL,
	-- 'running' is reserved for workers that report progress; web-crawler
	-- reports only the outcome.
	status       text        NOT NULL DEFAULT 'pending'
	             CHECK (status IN ('pending', 'running', 'completed', 'error')),
	http_status  integer,
	size_bytes   bigint      CHECK (size_bytes >= 0),
	duration_ms  bigint      CHECK (duration_ms >= 0),
	error        text,
	created_at   timestamptz NOT NULL DEFAULT now(),
	-- completed_at minus the crawler's measured duration: the crawler sends
	-- no clock of its own, so two hosts' clocks never have to agree.
	started_at   timestamptz,
	completed_at timestamptz
);

-- The metrics window scans by creation time; the status index serves
-- "what is still pending" queries.
CREATE INDEX IF NOT EXISTS web_crawl_tasks_created_at_idx ON web_crawl_tasks (created_at);
CREATE INDEX IF NOT EXISTS web_crawl_tasks_status_idx ON web_crawl_tasks (status, created_at);

-- One row for the tasks created in the last `hours` hours: the count for each
-- status, the success rate among finished tasks (0 to 1, 4 decimals; NULL when
-- none has finished) and the average crawl duration of completed tasks (ms, 1
-- decimal; NULL when none).
-- CREATE OR REPLACE cannot change the result columns: a change to them needs
-- a DROP FUNCTION first.
CREATE OR REPLACE FUNCTION get_web_crawl_metrics(hours integer DEFAULT 24)
RETURNS TABLE (
	total           bigint,
	pending         bigint,
	running         bigint,
	completed       bigint,
	error           bigint,
	success_rate    double precision,
	avg_duration_ms double precision
)
LANGUAGE sql STABLE AS $$
	SELECT count(*),
	       count(*) FILTER (WHERE t.status = 'pending'),
	       count(*) FILTER (WHERE t.status = 'running'),
	       count(*) FILTER (WHERE t.status = 'completed'),
	       count(*) FILTER (WHERE t.status = 'error'),
	       round(count(*) FILTER (WHERE t.status = 'completed')::numeric
	             / nullif(count(*) FILTER (WHERE t.status IN ('completed', 'error')), 0), 4)::double precision,
	       round(avg(t.duration_ms) FILTER (WHERE t.status = 'completed'), 1)::double precision
	FROM web_crawl_tasks t
	WHERE t.created_at >= now() - make_interval(hours => $1)
$$;
