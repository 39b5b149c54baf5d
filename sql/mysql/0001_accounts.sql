-- Accounts and login sessions.
CREATE TABLE users (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username      VARCHAR(32)  NOT NULL,
    phone         VARCHAR(32)  NULL,
    password_hash VARCHAR(255) NOT NULL,
    nickname      VARCHAR(64)  NOT NULL DEFAULT '',
    age           INT          NULL,
    email         VARCHAR(255) NOT NULL DEFAULT '',
    address       VARCHAR(255) NOT NULL DEFAULT '',
    remark        VARCHAR(255) NOT NULL DEFAULT '',
    avatar        VARCHAR(255) NOT NULL DEFAULT '',
    created       BIGINT       NOT NULL,
    UNIQUE KEY users_username (username),
    UNIQUE KEY users_phone (phone)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE sessions (
    id         BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id    BIGINT      NOT NULL,
    token_hash CHAR(64)    NOT NULL,
    device     VARCHAR(64) NOT NULL,
    created    BIGINT      NOT NULL,
    last_seen  BIGINT      NOT NULL,
    UNIQUE KEY sessions_token (token_hash),
    KEY sessions_user (user_id),
    CONSTRAINT sessions_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
