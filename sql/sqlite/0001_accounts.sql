-- Accounts and login sessions.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      VARCHAR(32)  NOT NULL UNIQUE,
    phone         VARCHAR(32)  UNIQUE,
    password_hash VARCHAR(255) NOT NULL,
    nickname      VARCHAR(64)  NOT NULL DEFAULT '',
    age           INTEGER,
    email         VARCHAR(255) NOT NULL DEFAULT '',
    address       VARCHAR(255) NOT NULL DEFAULT '',
    remark        VARCHAR(255) NOT NULL DEFAULT '',
    avatar        VARCHAR(255) NOT NULL DEFAULT '',
    created       BIGINT       NOT NULL
);

CREATE TABLE sessions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER     NOT NULL REFERENCES users(id),
    token_hash CHAR(64)    NOT NULL UNIQUE,
    device     VARCHAR(64) NOT NULL,
    created    BIGINT      NOT NULL,
    last_seen  BIGINT      NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
