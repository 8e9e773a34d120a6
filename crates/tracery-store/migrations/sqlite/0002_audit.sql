-- Who set, deleted, froze, resumed or evaluated what, refused calls included.
-- Append-only: the triggers refuse any change to a row once written.
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time BIGINT NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    namespace TEXT NOT NULL,
    peer TEXT NOT NULL,
    result TEXT NOT NULL
);

CREATE INDEX audit_by_time ON audit (time);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
