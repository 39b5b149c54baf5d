-- Groups, membership, group messages and events, and the chat square.
-- Group messages and group events take positions from stream_seq like 1:1 messages: each is
-- stored once and appears in the stream of every user whose membership span covers its position
-- (current members from joined_pos on; departed members in [joined_pos, left_pos]).
-- chat_groups.last_pos is the group's newest position, so sync skips groups with nothing new.
CREATE TABLE chat_groups (
    id           BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name         VARCHAR(64)   NOT NULL,
    announcement VARCHAR(1000) NOT NULL DEFAULT '',
    join_policy  VARCHAR(16)   NOT NULL DEFAULT 'approval',
    owner        BIGINT        NOT NULL,
    seq          BIGINT        NOT NULL DEFAULT 0,
    last_pos     BIGINT        NOT NULL DEFAULT 0,
    created      BIGINT        NOT NULL,
    disbanded    TINYINT       NOT NULL DEFAULT 0,
    CONSTRAINT chat_groups_owner_fk FOREIGN KEY (owner) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE group_members (
    group_id   BIGINT      NOT NULL,
    user_id    BIGINT      NOT NULL,
    role       VARCHAR(16) NOT NULL,
    joined_pos BIGINT      NOT NULL,
    read_upto  BIGINT      NOT NULL,
    joined     BIGINT      NOT NULL,
    PRIMARY KEY (group_id, user_id),
    KEY group_members_user (user_id),
    CONSTRAINT group_members_group_fk FOREIGN KEY (group_id) REFERENCES chat_groups (id),
    CONSTRAINT group_members_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB;

CREATE TABLE group_departures (
    group_id   BIGINT NOT NULL,
    user_id    BIGINT NOT NULL,
    joined_pos BIGINT NOT NULL,
    left_pos   BIGINT NOT NULL,
    PRIMARY KEY (user_id, group_id, left_pos)
) ENGINE=InnoDB;

CREATE TABLE group_requests (
    group_id BIGINT       NOT NULL,
    user_id  BIGINT       NOT NULL,
    inviter  BIGINT       NULL,
    greeting VARCHAR(255) NOT NULL DEFAULT '',
    created  BIGINT       NOT NULL,
    PRIMARY KEY (group_id, user_id),
    CONSTRAINT group_requests_group_fk FOREIGN KEY (group_id) REFERENCES chat_groups (id),
    CONSTRAINT group_requests_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE group_messages (
    pos       BIGINT      NOT NULL PRIMARY KEY,
    group_id  BIGINT      NOT NULL,
    seq       BIGINT      NOT NULL,
    sender    BIGINT      NOT NULL,
    client_id VARCHAR(64) NOT NULL,
    body      TEXT        NOT NULL,
    mentions  TEXT        NULL,
    ts        BIGINT      NOT NULL,
    UNIQUE KEY group_messages_client (sender, client_id),
    UNIQUE KEY group_messages_seq (group_id, seq),
    KEY group_messages_group (group_id, pos)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE group_events (
    pos      BIGINT      NOT NULL PRIMARY KEY,
    group_id BIGINT      NOT NULL,
    type     VARCHAR(32) NOT NULL,
    data     TEXT        NOT NULL,
    ts       BIGINT      NOT NULL,
    KEY group_events_group (group_id, pos)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- A user's groups with their role: what ``groups`` lists.
CREATE VIEW user_groups AS
    SELECT m.user_id, m.group_id, m.role, m.joined_pos, m.read_upto, g.name, g.announcement,
           g.join_policy, g.owner, g.seq
    FROM group_members m JOIN chat_groups g ON g.id = m.group_id;

CREATE TABLE square_posts (
    id     BIGINT NOT NULL PRIMARY KEY,
    sender BIGINT NOT NULL,
    body   TEXT   NOT NULL,
    ts     BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
