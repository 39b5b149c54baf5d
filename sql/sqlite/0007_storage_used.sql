-- Bytes each user stores (files and unfinished uploads) as a counter: every statement that adds
-- or removes a files or uploads row moves it in the same transaction, so a quota check reads one
-- row instead of summing them. Filled from the rows already stored.
CREATE TABLE storage_used (
    user_id    INTEGER NOT NULL PRIMARY KEY REFERENCES users(id),
    used_bytes BIGINT  NOT NULL
);

INSERT INTO storage_used (user_id, used_bytes)
SELECT owner, SUM(size) FROM (SELECT owner, size FROM files
                              UNION ALL SELECT owner, size FROM uploads) AS held
GROUP BY owner;
