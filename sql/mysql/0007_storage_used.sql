-- Bytes each user stores (files and unfinished uploads) as a counter: every statement that adds
-- or removes a files or uploads row moves it in the same transaction, so a quota check reads one
-- row (and locks it) instead of summing them. Filled from the rows already stored.
CREATE TABLE storage_used (
    user_id    BIGINT NOT NULL PRIMARY KEY,
    used_bytes BIGINT NOT NULL,
    CONSTRAINT storage_used_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

INSERT INTO storage_used (user_id, used_bytes)
SELECT owner, SUM(size) FROM (SELECT owner, size FROM files
                              UNION ALL SELECT owner, size FROM uploads) AS held
GROUP BY owner;
