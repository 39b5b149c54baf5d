-- Files: content stored once per sha256 (blobs, reference-counted), user file references,
-- who else may read a file, and unfinished uploads (their bytes are in the parts directory).
CREATE TABLE blobs (
    sha256   CHAR(64) NOT NULL PRIMARY KEY,
    size     BIGINT   NOT NULL,
    refcount INTEGER  NOT NULL,
    created  BIGINT   NOT NULL
);

CREATE TABLE files (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    owner   INTEGER      NOT NULL REFERENCES users(id),
    sha256  CHAR(64)     NOT NULL REFERENCES blobs(sha256),
    name    VARCHAR(255) NOT NULL,
    mime    VARCHAR(127) NOT NULL,
    size    BIGINT       NOT NULL,
    created BIGINT       NOT NULL
);
CREATE INDEX files_owner_blob ON files (owner, sha256);
CREATE INDEX files_blob ON files (sha256);

CREATE TABLE file_access (
    file_id  INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    user_id  INTEGER,
    group_id INTEGER,
    CHECK ((user_id IS NULL) <> (group_id IS NULL))
);
CREATE UNIQUE INDEX file_access_user ON file_access (file_id, user_id);
CREATE UNIQUE INDEX file_access_group ON file_access (file_id, group_id);
CREATE INDEX file_access_by_user ON file_access (user_id);

CREATE TABLE uploads (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    owner   INTEGER      NOT NULL REFERENCES users(id),
    sha256  CHAR(64)     NOT NULL,
    size    BIGINT       NOT NULL,
    name    VARCHAR(255) NOT NULL,
    mime    VARCHAR(127) NOT NULL,
    created BIGINT       NOT NULL,
    touched BIGINT       NOT NULL
);
CREATE INDEX uploads_owner_content ON uploads (owner, sha256, size);
CREATE INDEX uploads_touched ON uploads (touched);
