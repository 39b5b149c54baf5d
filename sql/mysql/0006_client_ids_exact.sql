-- Client ids compare byte for byte. With the utf8mb4_bin collation MariaDB (and MySQL) ignore
-- trailing spaces when comparing, so "k" and "k " were one key of the unique (sender,
-- client_id) indexes, and a new message with the second was taken for a resend of the first.
-- VARBINARY has no padding; 256 bytes hold the 64 characters the protocol allows in UTF-8.
ALTER TABLE messages MODIFY client_id VARBINARY(256) NOT NULL;
ALTER TABLE group_messages MODIFY client_id VARBINARY(256) NOT NULL;
