-- Message events (sends and receives of traced requests) and the views `tracery-ctl query`
-- reads: `snapshots` and `messages` (the tables), `variables` and `traces` (views).
-- `lamport` is the event's Lamport timestamp within its trace, filled in by the controller
-- when it orders the trace (NULL until then).

CREATE TABLE messages (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id TEXT NOT NULL,
    node TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('send', 'recv')),
    local_addr TEXT NOT NULL,
    remote_addr TEXT NOT NULL,
    -- TCP sequence number of the first byte (sender's sequence space); NULL when unknown.
    seq BIGINT,
    bytes BIGINT NOT NULL,
    pid BIGINT NOT NULL,
    tid BIGINT NOT NULL,
    task BIGINT NOT NULL,
    process_name TEXT NOT NULL,
    time BIGINT NOT NULL,
    held BIGINT NOT NULL CHECK (held IN (0, 1)),
    lamport BIGINT
);

CREATE INDEX messages_by_trace ON messages (trace_id, id);

ALTER TABLE snapshots ADD COLUMN lamport BIGINT;

-- One row per value path of every captured variable: `order`, `order.total`,
-- `order.items[0].qty`. `value` is a leaf's value as text (NULL for objects, arrays and
-- null); `number` the same as a number when it is one; `json` the node as JSON.
-- PostgreSQL cannot turn \u0000 into text (a captured C buffer can hold one): the walk
-- reads it as U+FFFD.
CREATE VIEW variables AS
WITH RECURSIVE walk (snapshot_id, path, node) AS (
    SELECT s.id, v.value ->> 'name', v.value -> 'value'
    FROM snapshots s,
        json_array_elements(replace(s.body::text, '\u0000', '\ufffd')::json -> 'variables')
            AS v (value)
    UNION ALL
    SELECT w.snapshot_id, w.path || c.suffix, c.node
    FROM walk w
    CROSS JOIN LATERAL (
        SELECT '.' || e.key AS suffix, e.value AS node
        FROM json_each(CASE WHEN json_typeof(w.node) = 'object' THEN w.node ELSE '{}'::json END) AS e
        UNION ALL
        SELECT '[' || (a.ord - 1) || ']', a.value
        FROM json_array_elements(CASE WHEN json_typeof(w.node) = 'array' THEN w.node ELSE '[]'::json END)
            WITH ORDINALITY AS a (value, ord)
    ) AS c
)
SELECT
    s.id AS snapshot_id,
    s.breakpoint_id AS breakpoint_id,
    s.trace_id AS trace_id,
    s.time AS time,
    s.lamport AS lamport,
    s.pid AS pid,
    s.tid AS tid,
    w.path AS path,
    json_typeof(w.node) AS type,
    CASE json_typeof(w.node)
        WHEN 'object' THEN NULL
        WHEN 'array' THEN NULL
        WHEN 'null' THEN NULL
        ELSE w.node #>> '{}'
    END AS value,
    CASE WHEN json_typeof(w.node) = 'number' THEN (w.node #>> '{}')::double precision END AS number,
    w.node::text AS json
FROM walk w
JOIN snapshots s ON s.id = w.snapshot_id;

-- One row per trace with stored snapshots or messages.
CREATE VIEW traces AS
SELECT
    trace_id,
    MIN(time) AS first_time,
    MAX(time) AS last_time,
    SUM(is_snapshot) AS snapshots,
    SUM(1 - is_snapshot) AS messages
FROM (
    SELECT trace_id, time, 1 AS is_snapshot FROM snapshots WHERE trace_id IS NOT NULL
    UNION ALL
    SELECT trace_id, time, 0 AS is_snapshot FROM messages
) AS events
GROUP BY trace_id;
