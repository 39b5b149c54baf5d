-- Friends, blocks, 1:1 messages and each user's event stream.
-- Positions come from one counter (stream_seq): a message's id is its position, shared by the
-- streams of its sender and recipient; other events (friend requests, receipts) live in events.
CREATE TABLE stream_seq (
    id  INT    NOT NULL PRIMARY KEY,
    pos BIGINT NOT NULL
) ENGINE=InnoDB;
INSERT INTO stream_seq (id, pos) VALUES (1, 0);

CREATE TABLE friends (
    user_id   BIGINT      NOT NULL,
    friend_id BIGINT      NOT NULL,
    alias     VARCHAR(64) NOT NULL DEFAULT '',
    created   BIGINT      NOT NULL,
    PRIMARY KEY (user_id, friend_id),
    CONSTRAINT friends_user_fk FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT friends_friend_fk FOREIGN KEY (friend_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE friend_requests (
    from_user BIGINT       NOT NULL,
    to_user   BIGINT       NOT NULL,
    greeting  VARCHAR(255) NOT NULL DEFAULT '',
    created   BIGINT       NOT NULL,
    PRIMARY KEY (from_user, to_user),
    KEY friend_requests_to (to_user),
    CONSTRAINT friend_requests_from_fk FOREIGN KEY (from_user) REFERENCES users (id),
    CONSTRAINT friend_requests_to_fk FOREIGN KEY (to_user) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE blocks (
    user_id    BIGINT NOT NULL,
    blocked_id BIGINT NOT NULL,
    created    BIGINT NOT NULL,
    PRIMARY KEY (user_id, blocked_id),
    CONSTRAINT blocks_user_fk FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT blocks_blocked_fk FOREIGN KEY (blocked_id) REFERENCES users (id)
) ENGINE=InnoDB;

CREATE TABLE messages (
    pos       BIGINT      NOT NULL PRIMARY KEY,
    sender    BIGINT      NOT NULL,
    recipient BIGINT      NOT NULL,
    client_id VARCHAR(64) NOT NULL,
    kind      VARCHAR(16) NOT NULL DEFAULT 'text',
    body      TEXT        NOT NULL,
    extra     TEXT        NULL,
    ts        BIGINT      NOT NULL,
    UNIQUE KEY messages_client (sender, client_id),
    KEY messages_conversation (sender, recipient, pos),
    KEY messages_sent (sender, pos),
    KEY messages_received (recipient, pos)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE events (
    pos     BIGINT      NOT NULL PRIMARY KEY,
    user_id BIGINT      NOT NULL,
    type    VARCHAR(32) NOT NULL,
    data    TEXT        NOT NULL,
    ts      BIGINT      NOT NULL,
    KEY events_user (user_id, pos)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE receipts (
    user_id        BIGINT NOT NULL,
    peer_id        BIGINT NOT NULL,
    delivered_upto BIGINT NOT NULL DEFAULT 0,
    read_upto      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, peer_id)
) ENGINE=InnoDB;
