-- Message events (sends and receives of traced requests) and the views `tracery-ctl query`
-- reads: `snapshots` and `messages` (the tables), `variables` and `traces` (views).
-- `lamport` is the event's Lamport timestamp within its trace, filled in by the controller
-- when it orders the trace (NULL until then).

CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id TEXT NOT NULL,
    node TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('send', 'recv')),
    local_addr TEXT NOT NULL,
    remote_addr TEXT NOT NULL,
    -- TCP sequence number of the first byte (sender's sequence space); NULL when unknown.
    seq INTEGER,
    bytes INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    tid INTEGER NOT NULL,
    task INTEGER NOT NULL,
    process_name TEXT NOT NULL,
    time INTEGER NOT NULL,
    held INTEGER NOT NULL CHECK (held IN (0, 1)),
    lamport INTEGER
) STRICT;

CREATE INDEX messages_by_trace ON messages (trace_id, id);

ALTER TABLE snapshots ADD COLUMN lamport INTEGER;

-- One row per value path of every captured variable: `order`, `order.total`,
-- `order.items[0].qty`. `value` is a leaf's value as text (NULL for objects, arrays and
-- null); `number` the same as a number when it is one; `json` the node as JSON.
CREATE VIEW variables AS
SELECT
    s.id AS snapshot_id,
    s.breakpoint_id AS breakpoint_id,
    s.trace_id AS trace_id,
    s.time AS time,
    s.lamport AS lamport,
    s.pid AS pid,
    s.tid AS tid,
    json_extract(v.value, '$.name') || substr(t.fullkey, length('$.value') + 1) AS path,
    CASE t.type
        WHEN 'integer' THEN 'number'
        WHEN 'real' THEN 'number'
        WHEN 'text' THEN 'string'
        WHEN 'true' THEN 'boolean'
        WHEN 'false' THEN 'boolean'
        ELSE t.type
    END AS type,
    CASE t.type
        WHEN 'object' THEN NULL
        WHEN 'array' THEN NULL
        WHEN 'true' THEN 'true'
        WHEN 'false' THEN 'false'
        ELSE CAST(t.atom AS TEXT)
    END AS value,
    CASE WHEN t.type IN ('integer', 'real') THEN CAST(t.atom AS REAL) END AS number,
    CASE
        WHEN t.type IN ('object', 'array') THEN t.value
        WHEN t.type IN ('true', 'false') THEN t.type
        ELSE json_quote(t.atom)
    END AS json
FROM snapshots s,
    json_each(s.body, '$.variables') v,
    json_tree(v.value, '$.value') t;

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
