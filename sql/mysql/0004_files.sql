-- Files: content stored once per sha256 (blobs, reference-counted), user file references,
-- who else may read a file, and unfinished uploads (their bytes are in the parts directory).
CREATE TABLE blobs (
    sha256   CHAR(64) NOT NULL PRIMARY KEY,
    size     BIGINT   NOT NULL,
    refcount INT      NOT NULL,
    created  BIGINT   NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin;

CREATE TABLE files (
    id      BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    owner   BIGINT       NOT NULL,
    sha256  CHAR(64)     CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    name    VARCHAR(255) NOT NULL,
    mime    VARCHAR(127) NOT NULL,
    size    BIGINT       NOT NULL,
    created BIGINT       NOT NULL,
    KEY files_owner_blob (owner, sha256),
    KEY files_blob (sha256),
    CONSTRAINT files_owner_fk FOREIGN KEY (owner) REFERENCES users (id),
    CONSTRAINT files_blob_fk FOREIGN KEY (sha256) REFERENCES blobs (sha256)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE file_access (
    file_id  BIGINT NOT NULL,
    user_id  BIGINT NULL,
    group_id BIGINT NULL,
    UNIQUE KEY file_access_user (file_id, user_id),
    UNIQUE KEY file_access_group (file_id, group_id),
    KEY file_access_by_user (user_id),
    CONSTRAINT file_access_file_fk FOREIGN KEY (file_id) REFERENCES files (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE uploads (
    id      BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    owner   BIGINT       NOT NULL,
    sha256  CHAR(64)     CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    size    BIGINT       NOT NULL,
    name    VARCHAR(255) NOT NULL,
    mime    VARCHAR(127) NOT NULL,
    created BIGINT       NOT NULL,
    touched BIGINT       NOT NULL,
    KEY uploads_owner_content (owner, sha256, size),
    KEY uploads_touched (touched),
    CONSTRAINT uploads_owner_fk FOREIGN KEY (owner) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
