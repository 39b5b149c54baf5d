-- Groups, membership, group messages and events, and the chat square.
-- Group messages and group events take positions from stream_seq like 1:1 messages: each is
-- stored once and appears in the stream of every user whose membership span covers its position
-- (current members from joined_pos on; departed members in [joined_pos, left_pos]).
-- chat_groups.last_pos is the group's newest position, so sync skips groups with nothing new.
CREATE TABLE chat_groups (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         VARCHAR(64)   NOT NULL,
    announcement VARCHAR(1000) NOT NULL DEFAULT '',
    join_policy  VARCHAR(16)   NOT NULL DEFAULT 'approval',
    owner        INTEGER       NOT NULL REFERENCES users(id),
    seq          BIGINT        NOT NULL DEFAULT 0,
    last_pos     BIGINT        NOT NULL DEFAULT 0,
    created      BIGINT        NOT NULL,
    disbanded    INTEGER       NOT NULL DEFAULT 0
);

CREATE TABLE group_members (
    group_id   INTEGER     NOT NULL REFERENCES chat_groups(id),
    user_id    INTEGER     NOT NULL REFERENCES users(id),
    role       VARCHAR(16) NOT NULL,
    joined_pos BIGINT      NOT NULL,
    read_upto  BIGINT      NOT NULL,
    joined     BIGINT      NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE group_departures (
    group_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    joined_pos BIGINT  NOT NULL,
    left_pos   BIGINT  NOT NULL,
    PRIMARY KEY (user_id, group_id, left_pos)
);

CREATE TABLE group_requests (
    group_id INTEGER      NOT NULL REFERENCES chat_groups(id),
    user_id  INTEGER      NOT NULL REFERENCES users(id),
    inviter  INTEGER,
    greeting VARCHAR(255) NOT NULL DEFAULT '',
    created  BIGINT       NOT NULL,
    PRIMARY KEY (group_id, user_id)
);

CREATE TABLE group_messages (
    pos       BIGINT      NOT NULL PRIMARY KEY,
    group_id  INTEGER     NOT NULL,
    seq       BIGINT      NOT NULL,
    sender    INTEGER     NOT NULL,
    client_id VARCHAR(64) NOT NULL,
    body      TEXT        NOT NULL,
    mentions  TEXT,
    ts        BIGINT      NOT NULL
);
CREATE UNIQUE INDEX group_messages_client ON group_messages (sender, client_id);
CREATE UNIQUE INDEX group_messages_seq ON group_messages (group_id, seq);
CREATE INDEX group_messages_group ON group_messages (group_id, pos);

CREATE TABLE group_events (
    pos      BIGINT      NOT NULL PRIMARY KEY,
    group_id INTEGER     NOT NULL,
    type     VARCHAR(32) NOT NULL,
    data     TEXT        NOT NULL,
    ts       BIGINT      NOT NULL
);
CREATE INDEX group_events_group ON group_events (group_id, pos);

-- A user's groups with their role: what ``groups`` lists.
CREATE VIEW user_groups AS
    SELECT m.user_id, m.group_id, m.role, m.joined_pos, m.read_upto, g.name, g.announcement,
           g.join_policy, g.owner, g.seq
    FROM group_members m JOIN chat_groups g ON g.id = m.group_id;

CREATE TABLE square_posts (
    id     BIGINT  NOT NULL PRIMARY KEY,
    sender INTEGER NOT NULL,
    body   TEXT    NOT NULL,
    ts     BIGINT  NOT NULL
);
