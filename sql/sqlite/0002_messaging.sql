-- Friends, blocks, 1:1 messages and each user's event stream.
-- Positions come from one counter (stream_seq): a message's id is its position, shared by the
-- streams of its sender and recipient; other events (friend requests, receipts) live in events.
CREATE TABLE stream_seq (
    id  INTEGER PRIMARY KEY,
    pos BIGINT NOT NULL
);
INSERT INTO stream_seq (id, pos) VALUES (1, 0);

CREATE TABLE friends (
    user_id   INTEGER      NOT NULL REFERENCES users(id),
    friend_id INTEGER      NOT NULL REFERENCES users(id),
    alias     VARCHAR(64)  NOT NULL DEFAULT '',
    created   BIGINT       NOT NULL,
    PRIMARY KEY (user_id, friend_id)
);

CREATE TABLE friend_requests (
    from_user INTEGER      NOT NULL REFERENCES users(id),
    to_user   INTEGER      NOT NULL REFERENCES users(id),
    greeting  VARCHAR(255) NOT NULL DEFAULT '',
    created   BIGINT       NOT NULL,
    PRIMARY KEY (from_user, to_user)
);
CREATE INDEX friend_requests_to ON friend_requests (to_user);

CREATE TABLE blocks (
    user_id    INTEGER NOT NULL REFERENCES users(id),
    blocked_id INTEGER NOT NULL REFERENCES users(id),
    created    BIGINT  NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);

CREATE TABLE messages (
    pos       BIGINT      NOT NULL PRIMARY KEY,
    sender    INTEGER     NOT NULL,
    recipient INTEGER     NOT NULL,
    client_id VARCHAR(64) NOT NULL,
    kind      VARCHAR(16) NOT NULL DEFAULT 'text',
    body      TEXT        NOT NULL,
    extra     TEXT,
    ts        BIGINT      NOT NULL
);
CREATE UNIQUE INDEX messages_client ON messages (sender, client_id);
CREATE INDEX messages_conversation ON messages (sender, recipient, pos);
CREATE INDEX messages_sent ON messages (sender, pos);
CREATE INDEX messages_received ON messages (recipient, pos);

CREATE TABLE events (
    pos     BIGINT      NOT NULL PRIMARY KEY,
    user_id INTEGER     NOT NULL,
    type    VARCHAR(32) NOT NULL,
    data    TEXT        NOT NULL,
    ts      BIGINT      NOT NULL
);
CREATE INDEX events_user ON events (user_id, pos);

CREATE TABLE receipts (
    user_id        INTEGER NOT NULL,
    peer_id        INTEGER NOT NULL,
    delivered_upto BIGINT  NOT NULL DEFAULT 0,
    read_upto      BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, peer_id)
);
