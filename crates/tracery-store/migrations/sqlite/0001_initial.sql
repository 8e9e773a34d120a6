-- Times are unix nanoseconds (INTEGER): lossless for the agent's clock, same on both backends.
-- AUTOINCREMENT so that an id shown to a user is never reused.

CREATE TABLE breakpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    spec TEXT NOT NULL CHECK (json_valid(spec)),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    deleted_at INTEGER
) STRICT;

CREATE TABLE snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    breakpoint_id INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    tid INTEGER NOT NULL,
    time INTEGER NOT NULL,
    trace_id TEXT,
    body TEXT NOT NULL CHECK (json_valid(body)),
    -- An agent resends a hit it is not sure was stored: it must land once.
    UNIQUE (agent_id, breakpoint_id, seq)
) STRICT;

CREATE INDEX snapshots_by_breakpoint ON snapshots (breakpoint_id, id);
CREATE INDEX snapshots_by_trace ON snapshots (trace_id);

CREATE TABLE drops (
    agent_id TEXT NOT NULL,
    breakpoint_id INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (agent_id, breakpoint_id)
) STRICT;
