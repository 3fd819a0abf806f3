-- Device tokens issued (JWT `iat`) before this time no longer verify. A secret rotation sets it
-- to the whole second after the rotation, so tokens minted with the old secret die with it.
-- Nullable: NULL until the first rotation, and a service still running the previous version
-- neither reads nor writes it.
ALTER TABLE devices ADD COLUMN tokens_not_before timestamptz;
