-- Who set, deleted, froze, resumed or evaluated what, refused calls included.
-- Append-only: the trigger refuses any change to a row once written.
CREATE TABLE audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time BIGINT NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    namespace TEXT NOT NULL,
    peer TEXT NOT NULL,
    result TEXT NOT NULL
);

CREATE INDEX audit_by_time ON audit (time);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;

CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
