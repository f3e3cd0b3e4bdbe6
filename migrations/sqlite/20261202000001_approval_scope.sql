-- What a held request acts on, resolved when it was asked for (the
-- catalog's fingerprint of its scope): at approval it runs only if the same
-- objects are meant. NULL for requests held before this column existed,
-- which then can't run and must be asked again.
ALTER TABLE approvals ADD COLUMN scope TEXT;
