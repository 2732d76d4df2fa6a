-- the lead: idempotency keys per installation, for updates sent as creates too;
-- the mirror option "batch"
-- (sync._claim, which now gives creates and updates their idempotency key,
-- is in 86_claimperf.sql, the last fragment that changes it)

-- (the mirror option "batch" is in sync._check_mirror_options, whose final
-- text is in 70_cdc.sql, the last fragment that changes it)

