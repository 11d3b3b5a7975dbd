-- A purge also clears the origin's own shared tiers (L2 in Redis and every instance's L1),
-- recorded as one more delivery, provider 'tiers', that the CDN deliveries of the same purge
-- wait for (the CDN refetches from those tiers). A data write's change event for websocket
-- clients travels with it, so neither is lost when Redis or the instance fails after commit.
ALTER TABLE purges ADD COLUMN event TEXT;
