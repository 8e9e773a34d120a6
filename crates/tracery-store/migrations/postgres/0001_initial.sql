-- Times are unix nanoseconds (BIGINT): TIMESTAMPTZ keeps only microseconds, and the
-- SQLite store uses the same representation.
-- Bodies are JSON, not JSONB: JSON keeps the text exactly as stored and accepts \u0000,
-- which JSONB rejects (a captured C buffer can hold one).

CREATE TABLE breakpoints (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    spec JSON NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    deleted_at BIGINT
);

CREATE TABLE snapshots (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    breakpoint_id BIGINT NOT NULL,
    agent_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    pid BIGINT NOT NULL,
    tid BIGINT NOT NULL,
    time BIGINT NOT NULL,
    trace_id TEXT,
    body JSON NOT NULL,
    -- An agent resends a hit it is not sure was stored: it must land once.
    UNIQUE (agent_id, breakpoint_id, seq)
);

CREATE INDEX snapshots_by_breakpoint ON snapshots (breakpoint_id, id);
CREATE INDEX snapshots_by_trace ON snapshots (trace_id);

CREATE TABLE drops (
    agent_id TEXT NOT NULL,
    breakpoint_id BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (agent_id, breakpoint_id)
);
