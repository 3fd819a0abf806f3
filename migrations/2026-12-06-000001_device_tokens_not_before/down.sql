ALTER TABLE devices DROP COLUMN tokens_not_before;
