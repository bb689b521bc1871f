-- kray-watcher store, schema 3: when the operator was told about a finding (the alert was handed to the
-- alert sinks). A finding stored but not yet notified when the process died is notified after the
-- restart, once; NULL = not notified yet.
ALTER TABLE findings ADD COLUMN notified_at BIGINT;
