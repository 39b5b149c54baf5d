-- Group messages may carry a file reference (file, image, voice): kept as JSON in extra.
ALTER TABLE group_messages ADD COLUMN extra TEXT;
CREATE INDEX file_access_by_group ON file_access (group_id);
