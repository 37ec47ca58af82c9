-- The change feed's tables (`profilectl changes`, GET /v1/spaces/{space}/changes) and the
-- views that turn them into current state, in SQL that PostgreSQL and SQLite both run.
-- docs/changes.md explains each table and shows the load.
--
-- Every row has a `seq`, unique across the four tables and increasing in the order the
-- decisions were made; a loader resumes after the largest seq it stored. Times are UTC
-- ISO-8601 text ("2026-12-01T10:52:37.120Z").

CREATE TABLE IF NOT EXISTS id_graph_updates (
    seq BIGINT PRIMARY KEY,
    segment_id VARCHAR(64) NOT NULL,
    canonical_segment_id VARCHAR(64) NOT NULL,
    triggering_event_type VARCHAR(16),
    triggering_event_id VARCHAR(256),
    timestamp VARCHAR(32),
    received_at VARCHAR(32)
);

CREATE TABLE IF NOT EXISTS external_id_mapping_updates (
    seq BIGINT PRIMARY KEY,
    external_id_hash CHAR(40),
    external_id_type VARCHAR(128),
    external_id_value TEXT,
    segment_id VARCHAR(64),
    triggering_event_source_id VARCHAR(256),
    __operation VARCHAR(8) NOT NULL,
    triggering_event_type VARCHAR(16),
    triggering_event_id VARCHAR(256),
    timestamp VARCHAR(32),
    received_at VARCHAR(32)
);

-- One row per trait a message set; `value` is the trait's JSON text ('null': removed).
CREATE TABLE IF NOT EXISTS profile_traits_updates (
    seq BIGINT PRIMARY KEY,
    segment_id VARCHAR(64) NOT NULL,
    name VARCHAR(256) NOT NULL,
    value TEXT NOT NULL,
    triggering_event_type VARCHAR(16),
    triggering_event_id VARCHAR(256),
    timestamp VARCHAR(32),
    received_at VARCHAR(32)
);

CREATE TABLE IF NOT EXISTS violations (
    seq BIGINT PRIMARY KEY,
    reason VARCHAR(64) NOT NULL,
    segment_id VARCHAR(64),
    external_id_type VARCHAR(128),
    external_id_value TEXT,
    triggering_event_type VARCHAR(16),
    triggering_event_id VARCHAR(256),
    timestamp VARCHAR(32),
    received_at VARCHAR(32)
);

CREATE INDEX IF NOT EXISTS id_graph_updates_segment ON id_graph_updates (segment_id, seq);
CREATE INDEX IF NOT EXISTS external_id_mapping_updates_hash
    ON external_id_mapping_updates (external_id_hash, seq);
CREATE INDEX IF NOT EXISTS profile_traits_updates_segment
    ON profile_traits_updates (segment_id, name, seq);

-- Each segment_id and the profile it belongs to now: its latest id_graph_updates row. A merge
-- writes a row for every profile the merged-away one had absorbed, so the latest row always
-- names the current canonical profile.
CREATE VIEW id_graph AS
SELECT u.segment_id, u.canonical_segment_id, u.timestamp, u.seq
FROM id_graph_updates u
WHERE u.seq = (SELECT MAX(v.seq) FROM id_graph_updates v WHERE v.segment_id = u.segment_id);

-- Each identifier held now, with the canonical profile holding it: the latest row per
-- external_id_hash, unless it is a REMOVED one.
CREATE VIEW external_id_mapping AS
SELECT g.canonical_segment_id, m.external_id_type, m.external_id_value, m.external_id_hash,
       m.timestamp, m.seq
FROM external_id_mapping_updates m
JOIN id_graph g ON g.segment_id = m.segment_id
WHERE m.__operation = 'CREATED'
  AND m.seq = (SELECT MAX(x.seq) FROM external_id_mapping_updates x
               WHERE x.external_id_hash = m.external_id_hash);

-- Each trait of each canonical profile, one row per name (the narrow form: trait names are
-- data, not columns): across every profile merged into it, the latest write of the name
-- wins, and a latest write of null removes it.
CREATE VIEW profile_traits AS
SELECT g.canonical_segment_id, t.name, t.value, t.timestamp, t.seq
FROM profile_traits_updates t
JOIN id_graph g ON g.segment_id = t.segment_id
WHERE t.value <> 'null'
  AND t.seq = (SELECT MAX(t2.seq) FROM profile_traits_updates t2
               JOIN id_graph g2 ON g2.segment_id = t2.segment_id
               WHERE g2.canonical_segment_id = g.canonical_segment_id AND t2.name = t.name);
